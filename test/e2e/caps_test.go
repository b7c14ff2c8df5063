package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// keptCaps is the capability set `sluice run` keeps after start-up (docs/operating.md,
// "Privileges"): CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_BPF 39, CAP_SETUID 7, CAP_SETGID 6 and
// CAP_KILL 5.
const keptCaps = 1<<12 | 1<<13 | 1<<39 | 1<<7 | 1<<6 | 1<<5

// procCaps returns the Cap* lines of /proc/PID[/task/TID]/status as numbers, keyed by name
// ("CapEff", ...).
func procCaps(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "Cap") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, line, err)
		}
		caps[name] = n
	}
	return caps
}

// TestDropsCapabilities runs the daemon as root with every capability and checks that once it
// has started every thread holds exactly the kept set (bounding set included, nothing
// inheritable or ambient), and that what needs those capabilities still works: forwarding, a
// reload that adds a service (a new selection table) whose MISC_CHECK scripts run as nobody,
// one of which hangs and must be killed at misc_timeout, VRRP transitions both ways (addresses
// released and taken, adverts and gratuitous ARP sent), metrics, and status.
func TestDropsCapabilities(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	l, err := lab.BuildVRRP(env, 3)
	if err != nil {
		t.Fatal(err)
	}

	// Scripts nobody may run: a directory of their own, not t.TempDir's root-only one.
	scripts, err := os.MkdirTemp("", "sluice-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scripts) })
	if err := os.Chmod(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	okScript := filepath.Join(scripts, "as-nobody")
	hangScript := filepath.Join(scripts, "hang")
	for path, text := range map[string]string{
		okScript:   fmt.Sprintf("#!/bin/sh\n[ \"$(id -u)\" = %s ] && [ \"$(id -g)\" = %s ]\n", nobody.Uid, nobody.Gid),
		hangScript: "#!/bin/sh\nsleep 30\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	conf := func(priority int, withMisc bool) string {
		c := l.KeepalivedConfVRRP(priority)
		if withMisc {
			c += fmt.Sprintf("virtual_server %s 8081 {\n    delay_loop 1\n    lb_algo wrr\n    lb_kind DR\n    protocol TCP\n", lab.VIP)
			for i, rs := range l.RealServers {
				script := okScript
				if i == 2 {
					script = hangScript
				}
				c += fmt.Sprintf("    real_server %s 8081 {\n        weight %d\n        MISC_CHECK {\n            misc_path %q\n"+
					"            misc_timeout 1\n            user nobody\n        }\n    }\n", rs.Addr, i+1, script)
			}
			c += "}\n"
		}
		return c
	}
	ds := [2]*vrrpDirector{}
	for i := range ds {
		ds[i] = &vrrpDirector{ns: l.Directors[i], conf: filepath.Join(dir, []string{"a.conf", "b.conf"}[i])}
		if err := os.WriteFile(ds[i].conf, []byte(conf([]int{150, 100}[i], false)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const metricsAddr = "127.0.0.1:9723" // inside director 0's namespace
	ds[0].log = &lab.LogTail{}
	cmd := ds[0].ns.Command(sluiceBin, "run", "-f", ds[0].conf, "-n", "-l", "--metrics-listen", metricsAddr)
	cmd.Stdout, cmd.Stderr = ds[0].log, ds[0].log
	cmd.WaitDelay = 5 * time.Second
	if ds[0].proc, err = env.Start(cmd); err != nil {
		t.Fatal(err)
	}
	ds[1].start(t, env)
	t.Cleanup(func() {
		if t.Failed() {
			for _, line := range ds[0].log.Since(0) {
				t.Logf("director 0: %s", line)
			}
		}
	})
	ctx := context.Background()
	serve := func(step string) {
		t.Helper()
		if err := l.WaitReady(ctx, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if tally := l.Run(ctx, 30); len(tally.Failed) > 0 {
			t.Errorf("%s: %d of 30 connections failed", step, len(tally.Failed))
		}
	}
	if err := l.WaitHolder(0, 10*time.Second); err != nil {
		t.Fatalf("election: %v", err)
	}
	serve("director 0 MASTER")

	// Every thread holds exactly the kept set; the log names it.
	pid := ds[0].proc.Cmd.Process.Pid
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of sluice: %v %v", tasks, err)
	}
	want := map[string]uint64{"CapInh": 0, "CapPrm": keptCaps, "CapEff": keptCaps, "CapBnd": keptCaps, "CapAmb": 0}
	for _, path := range append([]string{fmt.Sprintf("/proc/%d/status", pid)}, tasks...) {
		got := procCaps(t, path)
		for name, w := range want {
			if got[name] != w {
				t.Errorf("%s: %s %#x, want %#x", path, name, got[name], w)
			}
		}
	}
	if !ds[0].log.Contains(0, "dropped capabilities", "kept=cap_kill,cap_setgid,cap_setuid,cap_net_admin,cap_net_raw,cap_bpf") {
		t.Errorf("no log line naming the kept capabilities:\n%s", strings.Join(ds[0].log.Since(0), "\n"))
	}

	// A reload adds a service: a new selection table (CAP_BPF), MISC_CHECK scripts as nobody
	// (CAP_SETUID, CAP_SETGID), one killed at its timeout (CAP_KILL: it runs as another user).
	reload := func(conf string) {
		t.Helper()
		if err := writeAtomic(ds[0].conf, []byte(conf)); err != nil {
			t.Fatal(err)
		}
		if err := ds[0].proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reload(conf(150, true))
	var svc control.Service
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, ok := ds[0].trackStatus(t)
		svc = control.Service{}
		for _, s := range st.Services {
			if ok && s.Port == 8081 {
				svc = s
			}
		}
		if misc := svc.RealServers; len(misc) == 3 && misc[0].Check != nil && misc[0].Check.Passed > 0 &&
			misc[1].Check != nil && misc[1].Check.Passed > 0 && misc[2].Check != nil && misc[2].Check.Failed >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service 8081 after the reload: %+v", svc)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, r := range svc.RealServers {
		if healthy := i < 2; r.Healthy != healthy || !strings.HasPrefix(r.Check.Checker, "MISC_CHECK ") {
			t.Errorf("real server %s: healthy %v, check %+v; want healthy %v by MISC_CHECK", r.Address, r.Healthy, *r.Check, healthy)
		}
		if i < 2 && r.Check.Failed > 0 {
			t.Errorf("real server %s: the script failed %d times: it did not run as nobody (%s)", r.Address, r.Check.Failed, r.Check.Error)
		}
	}
	// Three timeouts of the 30 s script have passed: each was killed, so at most the current one runs.
	if n := countProcs(t, hangScript); n > 1 {
		t.Errorf("%d timed-out MISC_CHECK scripts still run: killing them failed", n)
	}

	// VRRP: a reload lowers director 0 below director 1, which takes the VIP over; director 0
	// releases it. Raised again, director 0 preempts back and takes the VIP.
	reload(conf(50, true))
	if err := l.WaitHolder(1, 5*time.Second); err != nil {
		t.Fatalf("takeover after lowering director 0: %v", err)
	}
	ds[0].waitTrackInstance(t, "VI_1", "lowered", 5*time.Second, func(v control.VRRPInstance) bool { return v.State == "BACKUP" })
	serve("director 1 MASTER")
	reload(conf(150, true))
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("preemption after raising director 0: %v", err)
	}
	ds[0].waitTrackInstance(t, "VI_1", "raised", 5*time.Second, func(v control.VRRPInstance) bool { return v.State == "MASTER" })
	serve("director 0 MASTER again")

	// Metrics and status, with the counters only the kept capabilities keep coming.
	m := scrapeMetrics(t, ds[0].ns, metricsAddr)
	for _, name := range []string{`sluice_vrrp_adverts_sent_total{instance="VI_1"}`, `sluice_vrrp_transitions_total{instance="VI_1"}`} {
		if m[name] == 0 {
			t.Errorf("metric %s is %v, want > 0", name, m[name])
		}
	}
	var packets float64
	for name, v := range m {
		if strings.HasPrefix(name, "sluice_real_server_packets_total{") {
			packets += v
		}
	}
	if packets == 0 {
		t.Error("sluice_real_server_packets_total: no packets counted")
	}
	out, err := ds[0].ns.Command(sluiceBin, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice status: %v\n%s", err, out)
	}
	for _, want := range []string{"adverts sent ", "last check MISC_CHECK ", "last check TCP_CHECK "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sluice status lacks %q:\n%s", want, out)
		}
	}

	// Capabilities are still the kept set, and the daemon stops cleanly.
	if got := procCaps(t, fmt.Sprintf("/proc/%d/status", pid)); got["CapEff"] != keptCaps {
		t.Errorf("CapEff %#x at the end, want %#x", got["CapEff"], uint64(keptCaps))
	}
	for i, d := range ds {
		if err := d.proc.Stop(10 * time.Second); err != nil {
			t.Errorf("director %d did not stop cleanly: %v", i, err)
		}
	}
}

// countProcs counts the processes whose command line contains s.
func countProcs(t *testing.T, s string) int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range cmdlines {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), s) {
			n++
		}
	}
	return n
}

// TestDropsCapabilitiesUnderUnit runs the daemon with dist/sluice.service's bounding set, as
// systemd would: without CAP_SETPCAP the bounding set stays the unit's, and the permitted and
// effective sets become the kept set (CAP_PERFMON, needed only to load the program, is gone)
// while the daemon forwards and checks health.
func TestDropsCapabilitiesUnderUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	unit, err := os.ReadFile("../../dist/sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	wrapper := filepath.Join(t.TempDir(), "sluice-capped")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --bounding-set=-all,%s --inh-caps=-all -- %s \"$@\"\n",
		setpriv, strings.Join(caps, ","), sluiceBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	saved := sluiceBin
	sluiceBin = wrapper
	d := startSluice(t)
	sluiceBin = saved

	const unitCaps = keptCaps | 1<<38 // the kept set and CAP_PERFMON
	want := map[string]uint64{"CapInh": 0, "CapPrm": keptCaps, "CapEff": keptCaps, "CapBnd": unitCaps, "CapAmb": 0}
	got := procCaps(t, fmt.Sprintf("/proc/%d/status", d.proc.Cmd.Process.Pid))
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s %#x, want %#x", name, got[name], w)
		}
	}
	if !d.log.Contains(0, "dropped capabilities", "dropped=cap_perfmon", "unchanged (no cap_setpcap)") {
		t.Errorf("no log line naming the dropped capability and the unchanged bounding set:\n%s", strings.Join(d.log.Since(0), "\n"))
	}
	if tally := d.lab.Run(context.Background(), 30); len(tally.Failed) > 0 {
		t.Errorf("%d of 30 connections failed after the drop", len(tally.Failed))
	}
}
