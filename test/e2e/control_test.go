package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// cli runs `sluice ARGS...` in the director's namespace, as an operator would on the director.
func (d *daemon) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := d.lab.Director.Command(sluiceBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// listLines is what `sluice list -n` must print for the lab with the given real servers, in
// ipvsadm -Ln's layout.
func listLines(servers ...*lab.RealServer) string {
	var b strings.Builder
	b.WriteString("IP Virtual Server version 1.2.1 (size=4096)\n")
	b.WriteString("Prot LocalAddress:Port Scheduler Flags\n")
	b.WriteString("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	fmt.Fprintf(&b, "TCP  %s:%d rr\n", lab.VIP, lab.Port)
	for _, rs := range servers {
		fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %-10d\n", fmt.Sprintf("%s:%d", rs.Addr, lab.Port), "Route", 1, 0, 0)
	}
	return b.String()
}

// zeroConns sets the ActiveConn and InActConn columns of `sluice list -n` output to 0, for
// comparing with listLines; "stats count forwarded connections" checks their values.
func zeroConns(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "->" && f[1] != "RemoteAddress:Port" {
			lines[i] = fmt.Sprintf("  -> %-28s %-7s %-6s %-10d %-10d", f[1], f[2], f[3], 0, 0)
		}
	}
	return strings.Join(lines, "\n")
}

// listLine returns the lines of `sluice list -n` output about real server addr.
func listLine(out, addr string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "->" && strings.HasPrefix(f[1], addr+":") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// connColumns sums the ActiveConn and InActConn columns of `sluice list -n` output.
func connColumns(t *testing.T, out string) (active, inactive int) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "->" && f[1] != "RemoteAddress:Port" {
			a, err1 := strconv.Atoi(f[4])
			i, err2 := strconv.Atoi(f[5])
			if err1 != nil || err2 != nil {
				t.Fatalf("list line %q: connection columns are not numbers", l)
			}
			active, inactive = active+a, inactive+i
		}
	}
	return active, inactive
}

func TestControlCLI(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()
	rs := d.lab.RealServers

	t.Run("status", func(t *testing.T) {
		out, errOut, code := d.cli(t, "status", "--json")
		if code != 0 {
			t.Fatalf("sluice status exited %d: %s", code, errOut)
		}
		var st control.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status is not JSON: %v\n%s", err, out)
		}
		if len(st.Services) != 1 || st.Services[0].VIP != lab.VIP || len(st.Services[0].RealServers) != 3 {
			t.Fatalf("status services: %+v", st.Services)
		}
		for _, r := range st.Services[0].RealServers {
			if !r.Healthy {
				t.Errorf("real server %s reported down", r.Address)
			}
		}
		if st.Applied.IsZero() || st.Config != d.conf {
			t.Errorf("status applied=%v config=%q, want a time and %q", st.Applied, st.Config, d.conf)
		}
	})

	t.Run("list", func(t *testing.T) {
		out, errOut, code := d.cli(t, "list", "-n")
		if code != 0 {
			t.Fatalf("sluice list exited %d: %s", code, errOut)
		}
		if want := listLines(rs...); zeroConns(out) != want {
			t.Errorf("sluice list -n:\n%s\nwant:\n%s", out, want)
		}
	})

	t.Run("stats count forwarded connections", func(t *testing.T) {
		const n = 30
		if tally := d.lab.Run(ctx, n); len(tally.Failed) > 0 {
			t.Fatalf("%d connections failed", len(tally.Failed))
		}
		out, _, code := d.cli(t, "list", "-n", "--stats")
		if code != 0 {
			t.Fatalf("sluice list --stats exited %d", code)
		}
		lines := strings.Split(out, "\n")
		var conns, pkts int
		if len(lines) < 4 {
			t.Fatalf("sluice list --stats:\n%s", out)
		}
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(lines[3], fmt.Sprintf("TCP  %s:%d", lab.VIP, lab.Port))), "%d %d", &conns, &pkts); err != nil {
			t.Fatalf("service line %q: %v", lines[3], err)
		}
		// WaitReady made connections too, so at least the n made here were counted, each with
		// several packets (handshake, request, FIN).
		if conns < n || pkts < 3*conns {
			t.Errorf("service counters conns=%d packets=%d after %d connections:\n%s", conns, pkts, n, out)
		}
		// Every connection ended with the client's FIN: none is active, each is inactive
		// (closing) for the tcpfin timeout, as ipvsadm would show.
		out, _, _ = d.cli(t, "list", "-n")
		if active, inactive := connColumns(t, out); active != 0 || inactive < n || inactive > conns {
			t.Errorf("after %d closed connections (%d counted), ActiveConn %d InActConn %d, want 0 and %d..%d:\n%s", n, conns, active, inactive, n, conns, out)
		}
	})

	t.Run("a failed real server leaves the list", func(t *testing.T) {
		if err := rs[0].Stop(); err != nil {
			t.Fatal(err)
		}
		defer rs[0].Start()
		deadline := time.Now().Add(lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin + time.Second)
		var out string
		for time.Now().Before(deadline) {
			out, _, _ = d.cli(t, "list", "-n")
			if zeroConns(out) == listLines(rs[1:]...) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if want := listLines(rs[1:]...); zeroConns(out) != want {
			t.Errorf("after rs1 stopped, sluice list -n:\n%s\nwant:\n%s", out, want)
		}
		st, _, _ := d.cli(t, "status")
		if !strings.Contains(st, "2 of 3 real servers healthy") || !strings.Contains(st, "DOWN") {
			t.Errorf("sluice status after rs1 stopped:\n%s", st)
		}
	})

	t.Run("plan", func(t *testing.T) {
		two := *d.lab
		two.RealServers = rs[:2]
		next := strings.Replace(two.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout), "weight 1", "weight 4", 1)
		path := filepath.Join(t.TempDir(), "next.conf")
		if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
			t.Fatal(err)
		}
		svc := fmt.Sprintf("TCP %s:%d", lab.VIP, lab.Port)
		want := fmt.Sprintf("reloading %s would make 2 changes:\n  ~ %s -> %s:%d: weight 1 -> 4\n  - %s -> %s:%d\n",
			path, svc, rs[0].Addr, lab.Port, svc, rs[2].Addr, lab.Port)
		// The flows that would move are those of the removed real server: compare with
		// `sluice list` taken just before and after (retry if a flow expired in between).
		for attempt := 1; ; attempt++ {
			before, _, _ := d.cli(t, "list", "-n")
			out, errOut, code := d.cli(t, "plan", "-f", path)
			after, _, _ := d.cli(t, "list", "-n")
			if code != 0 {
				t.Fatalf("sluice plan: exit %d: %s", code, errOut)
			}
			changes, flows, _ := strings.Cut(out, "flows: ")
			if changes != want {
				t.Errorf("sluice plan:\n%s\nwant:\n%s", out, want)
			}
			if before != after && attempt < 3 {
				continue
			}
			var moving, total int
			if _, err := fmt.Sscanf(flows, "%d of %d current flows", &moving, &total); err != nil {
				t.Fatalf("sluice plan: no flows line: %v\n%s", err, out)
			}
			a, i := connColumns(t, before)
			ra, ri := connColumns(t, listLine(before, rs[2].Addr.String()))
			// The total also counts flows still pinned to a real server that is down (list
			// hides it, as ipvsadm does).
			if total < a+i || moving != ra+ri || moving == 0 {
				t.Errorf("plan says %d of %d flows move; list shows %d flows, %d on the removed server\n%s", moving, total, a+i, ra+ri, before)
			}
			break
		}
		if out, _, _ := d.cli(t, "plan", "-f", d.conf); !strings.Contains(out, "would change nothing") {
			t.Errorf("plan against the running file: %s", out)
		}
	})

	t.Run("reload", func(t *testing.T) {
		good, err := os.ReadFile(d.conf)
		if err != nil {
			t.Fatal(err)
		}
		// A broken file is refused with its position, and the running configuration stays.
		if err := os.WriteFile(d.conf, append(good, []byte("virtual_server 10.111.0.200 80 {\n  lb_algo nonsense\n}\n")...), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := d.cli(t, "reload")
		if code == 0 || !strings.Contains(errOut, d.conf+":") || !strings.Contains(errOut, "nonsense") {
			t.Errorf("reload of a broken file: exit %d, stderr %q; want a failure naming file:line:col", code, errOut)
		}
		if tally := d.lab.Run(ctx, 30); len(tally.Failed) > 0 {
			t.Errorf("%d connections failed after a refused reload", len(tally.Failed))
		}

		// A good file with rs3 removed is applied: rs3 gets no new connections.
		two := *d.lab
		two.RealServers = rs[:2]
		if err := os.WriteFile(d.conf, []byte(two.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := d.cli(t, "reload"); code != 0 {
			t.Fatalf("reload: exit %d: %s", code, errOut)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, _, _ := d.cli(t, "list", "-n")
			// rs1 may still be coming back from the previous subtest.
			if out := zeroConns(out); out == listLines(rs[0], rs[1]) || out == listLines(rs[1]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after reload, sluice list -n:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		tally := d.lab.Run(ctx, 60)
		if len(tally.Failed) > 0 {
			t.Errorf("%d connections failed after the reload", len(tally.Failed))
		}
		if n := tally.ByServer["rs3"]; n > 0 {
			t.Errorf("rs3 got %d connections after it was removed from the configuration", n)
		}
	})
}

func TestControlSocketIsRootOnly(t *testing.T) {
	d := startSluice(t)
	if _, errOut, code := d.cli(t, "status"); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	// The socket the daemon and the CLI derived from the namespace's name.
	cmd := d.lab.Director.Command("sh", "-c", `stat -c '%a %U' /run/sluice/"$(ip netns identify)".sock; stat -c '%a %U' /run/sluice`)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("stat control socket: %v", err)
	}
	if got := strings.Fields(string(b)); len(got) != 4 || got[0] != "600" || got[1] != "root" || got[2] != "700" || got[3] != "root" {
		t.Errorf("control socket and directory modes: %q, want 600 root and 700 root", b)
	}
}

func TestDumpsOnSignals(t *testing.T) {
	d := startSluice(t)
	instance := d.lab.Director.Name // the daemon names its files after its namespace
	for _, tc := range []struct {
		kind string
		want string
	}{
		{control.DumpData, "3 of 3 real servers healthy"},
		{control.DumpStats, "Prot LocalAddress:Port               Conns   InPkts"},
		{control.DumpJSON, `"real_servers"`},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			path := filepath.Join(control.DefaultDir, instance+"."+tc.kind)
			os.Remove(path)
			t.Cleanup(func() { os.Remove(path) })
			if err := d.proc.Cmd.Process.Signal(control.DumpSignals[tc.kind]); err != nil {
				t.Fatal(err)
			}
			var b []byte
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if b, _ = os.ReadFile(path); len(b) > 0 {
					break
				}
			}
			if !strings.Contains(string(b), tc.want) {
				t.Fatalf("%s after %v: %q, want it to contain %q", path, control.DumpSignals[tc.kind], b, tc.want)
			}
			if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v (%v), want 0600", path, fi.Mode(), err)
			}
		})
	}
}

func TestMetricsScrape(t *testing.T) {
	// The listener is on the director namespace's own loopback: nothing outside the test sees it.
	const addr = "127.0.0.1:9723"
	d := startSluice(t, "--metrics-listen", addr)
	const n = 20
	if tally := d.lab.Run(context.Background(), n); len(tally.Failed) > 0 {
		t.Fatalf("%d connections failed", len(tally.Failed))
	}
	resp, err := d.lab.Director.HTTPClient(5 * time.Second).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	values := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			t.Fatalf("malformed sample line %q", line)
		}
		values[name] = f
	}
	svc := fmt.Sprintf(`{protocol="TCP",vip="%s",port="%d"}`, lab.VIP, lab.Port)
	if got := values["sluice_service_new_flows_total"+svc]; got < n {
		t.Errorf("sluice_service_new_flows_total = %v after %d connections", got, n)
	}
	var rsFlows float64
	for _, rs := range d.lab.RealServers {
		l := fmt.Sprintf(`{protocol="TCP",vip="%s",port="%d",real_server="%s",real_port="%d"}`, lab.VIP, lab.Port, rs.Addr, lab.Port)
		if values["sluice_real_server_healthy"+l] != 1 {
			t.Errorf("%s not reported healthy", rs.Addr)
		}
		rsFlows += values["sluice_real_server_new_flows_total"+l]
	}
	if rsFlows != values["sluice_service_new_flows_total"+svc] {
		t.Errorf("real servers' new flows add up to %v, the service's are %v", rsFlows, values["sluice_service_new_flows_total"+svc])
	}
	if values[`sluice_dataplane_packets_total{reason="tx_dr"}`] < 3*n {
		t.Errorf("tx_dr packets %v after %d connections:\n%s", values[`sluice_dataplane_packets_total{reason="tx_dr"}`], n, body)
	}

	// Every real server's TCP_CHECK has run (delay_loop 1 s) by the second scrape: its latency
	// is a real connect on the lab's bridge, well under connect_timeout.
	time.Sleep(lab.DelayLoop + lab.ConnectTimeout)
	values = scrapeMetrics(t, d.lab.Director, addr)
	for _, rs := range d.lab.RealServers {
		l := fmt.Sprintf(`{protocol="TCP",vip="%s",port="%d",real_server="%s",real_port="%d"`, lab.VIP, lab.Port, rs.Addr, lab.Port)
		lat, ok := values["sluice_real_server_check_duration_seconds"+l+"}"]
		if !ok || lat <= 0 || lat >= lab.ConnectTimeout.Seconds() {
			t.Errorf("%s: check duration %v (reported: %v), want above 0 and below connect_timeout", rs.Addr, lat, ok)
		}
		if passed := values["sluice_real_server_checks_total"+l+`,result="passed"}`]; passed < 1 {
			t.Errorf("%s: %v passed checks", rs.Addr, passed)
		}
		if failed, ok := values["sluice_real_server_checks_total"+l+`,result="failed"}`]; !ok || failed != 0 {
			t.Errorf("%s: failed checks %v (reported: %v), want 0", rs.Addr, failed, ok)
		}
	}
}

// scrapeMetrics GETs /metrics from addr in the director's namespace and returns each sample's
// value by name and labels.
func scrapeMetrics(t *testing.T, ns *netns.NS, addr string) map[string]float64 {
	t.Helper()
	resp, err := ns.HTTPClient(5 * time.Second).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			t.Fatalf("malformed sample line %q", line)
		}
		values[name] = f
	}
	return values
}

// TestRunsWithUnitCapabilities runs the daemon with only the capabilities dist/sluice.service
// grants, read from the unit file so the two cannot drift apart, and checks it forwards, checks
// health and serves its control socket.
func TestRunsWithUnitCapabilities(t *testing.T) {
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
	if len(caps) == 0 {
		t.Fatal("dist/sluice.service has no CapabilityBoundingSet")
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

	if tally := d.lab.Run(context.Background(), 60); len(tally.Failed) > 0 {
		t.Errorf("%d of 60 connections failed with the unit's capabilities", len(tally.Failed))
	}
	if out, errOut, code := d.cli(t, "list", "-n"); code != 0 || zeroConns(out) != listLines(d.lab.RealServers...) {
		t.Errorf("sluice list: exit %d %s\n%s", code, errOut, out)
	}
	// The daemon's own capability sets: nothing beyond the unit's.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			const want = 1<<12 | 1<<13 | 1<<38 | 1<<39 | 1<<6 | 1<<7 | 1<<5 // NET_ADMIN NET_RAW PERFMON BPF SETGID SETUID KILL
			if bnd != want {
				t.Errorf("daemon's bounding set %#x, want %#x", bnd, uint64(want))
			}
		}
	}
}

// TestAutoDataplane: by default (auto) the daemon forwards with XDP and says so; when the XDP
// program cannot be loaded (here: the BPF capabilities are withheld) auto falls back to kernel
// IPVS, and on this kernel, which has no IPVS, the daemon exits non-zero naming both reasons.
// test/vm runs the IPVS data plane itself on a kernel that has it.
func TestAutoDataplane(t *testing.T) {
	d := startSluice(t)
	out, errOut, code := d.cli(t, "status", "--json")
	if code != 0 {
		t.Fatalf("status: %s", errOut)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Dataplane != "xdp" {
		t.Errorf("status data plane %q (%v), want xdp", st.Dataplane, err)
	}

	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	cmd := d.lab.Director.Command(setpriv, "--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all", "--",
		sluiceBin, "run", "-f", d.conf, "-n", "-l", "--socket", filepath.Join(t.TempDir(), "other.sock"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sluice without BPF capabilities did not exit")
	}
	if err == nil {
		t.Fatalf("sluice without BPF and without IPVS exited 0:\n%s", stderr.String())
	}
	for _, want := range []string{"no data plane can run", "xdp:", "IPVS is not available"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestListRate checks `sluice list -n --rate` against live traffic: ipvsadm --rate's header,
// non-zero connection, packet and byte rates on the service while the client connects, Out*
// at 0 (DR replies bypass the director), and all zero once the traffic stopped.
func TestListRate(t *testing.T) {
	d := startSluice(t)
	done := make(chan lab.Tally)
	go func() {
		// About 100 connections a second for 3 s; each finishes, so none fails by the deadline.
		var tally lab.Tally
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			tally.Add(d.lab.Get(context.Background()))
		}
		done <- tally
	}()
	svcLine := fmt.Sprintf("TCP  %s:%d", lab.VIP, lab.Port)
	rates := func() []uint64 {
		t.Helper()
		out, errOut, code := d.cli(t, "list", "-n", "--rate")
		if code != 0 {
			t.Fatalf("sluice list --rate: exit %d: %s", code, errOut)
		}
		lines := strings.Split(out, "\n")
		if len(lines) < 4 || lines[1] != "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS" ||
			lines[2] != "  -> RemoteAddress:Port" || !strings.HasPrefix(lines[3], svcLine) {
			t.Fatalf("sluice list --rate:\n%s", out)
		}
		var r [5]uint64
		if _, err := fmt.Sscanf(lines[3][33:], "%d %d %d %d %d", &r[0], &r[1], &r[2], &r[3], &r[4]); err != nil {
			t.Fatalf("service line %q: %v", lines[3], err)
		}
		return r[:]
	}
	busy := rates() // samples over one second of traffic
	tally := <-done
	if len(tally.Failed) > 0 {
		t.Errorf("%d of %d connections failed", len(tally.Failed), tally.Total)
	}
	if busy[0] == 0 || busy[1] < 3*busy[0] || busy[3] < busy[1]*40 || busy[2] != 0 || busy[4] != 0 {
		t.Errorf("rates under traffic CPS InPPS OutPPS InBPS OutBPS = %v after %d connections in 3 s", busy, tally.Total)
	}
	time.Sleep(1100 * time.Millisecond)
	rates() // the window that still held traffic
	time.Sleep(1100 * time.Millisecond)
	if idle := rates(); slices.ContainsFunc(idle, func(v uint64) bool { return v != 0 }) {
		t.Errorf("rates without traffic: %v, want zeros", idle)
	}
}
