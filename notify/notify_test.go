package notify

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/vrrp"
)

var _ director.Notifier = (*Notifier)(nil)

// recorder writes, for each run, a file NAME.N holding its uid and arguments, one per line.
const recorder = `#!/bin/sh
out=%s/$(basename "$0").$$
{ id -u; for a in "$@"; do echo "$a"; done; } > "$out.tmp" && mv "$out.tmp" "$out"
`

// scriptDir makes a directory every user may traverse, with the recorder under several names
// and an output directory every user may write.
func scriptDir(t *testing.T, names ...string) (dir, out string) {
	t.Helper()
	dir = safeDirAny(t)
	out = filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), fmt.Appendf(nil, recorder, out), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, out
}

// safeDirAny is t.TempDir opened to every user (mode 0755 up to the temporary directory).
func safeDirAny(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// runs waits for n runs of script and returns their records (uid, then arguments), sorted.
func runs(t *testing.T, out, script string, n int) [][]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(out, script+".*[0-9]"))
		if len(files) >= n || time.Now().After(deadline) {
			var recs [][]string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, strings.Fields(string(b)))
			}
			if len(recs) != n {
				t.Fatalf("%s ran %d times, want %d: %q", script, len(recs), n, recs)
			}
			return recs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantUID() string {
	if os.Geteuid() == 0 {
		return "65534" // nobody: no keepalived_script user here
	}
	return fmt.Sprint(os.Geteuid())
}

func TestVRRPScripts(t *testing.T) {
	dir, out := scriptDir(t, "master.sh", "backup.sh", "notify.sh", "stop.sh", "group.sh", "gnotify.sh")
	p := func(s string) string { return filepath.Join(dir, s) }
	cfg := &config.Config{
		VRRPInstances: []config.VRRPInstance{
			{Name: "VI_1", Priority: 150, Notify: config.Notify{Master: p("master.sh") + " 'first arg' second",
				Backup: p("backup.sh"), Stop: p("stop.sh"), Any: p("notify.sh") + " extra"}},
			{Name: "VI_2", Priority: 90},
		},
		VRRPSyncGroups: []config.VRRPSyncGroup{{Name: "G1", Group: []string{"VI_1", "VI_2"},
			Notify: config.Notify{Master: p("group.sh"), Any: p("gnotify.sh")}}},
	}
	n := New(cfg, Options{Hostname: "lb1"})
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Initialize, State: vrrp.Backup})
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Master})
	n.VRRP(vrrp.Event{Instance: "VI_2", Prev: vrrp.Backup, State: vrrp.Master})
	uid := wantUID()
	check := func(script string, want [][]string) {
		t.Helper()
		if diff := cmp.Diff(want, runs(t, out, script, len(want))); diff != "" {
			t.Errorf("%s runs (-want +got):\n%s", script, diff)
		}
	}
	check("master.sh", [][]string{{uid, "first", "arg", "second"}})
	check("backup.sh", [][]string{{uid}})
	check("group.sh", [][]string{{uid}})
	check("gnotify.sh", [][]string{{uid, "GROUP", "G1", "MASTER", "0"}})
	recs := runs(t, out, "notify.sh", 2)
	if diff := cmp.Diff([][]string{{uid, "extra", "INSTANCE", "VI_1", "BACKUP", "150"}, {uid, "extra", "INSTANCE", "VI_1", "MASTER", "150"}},
		sortRecs(recs)); diff != "" {
		t.Errorf("notify runs (-want +got):\n%s", diff)
	}

	// Shutting down runs notify_stop (the instances report no STOP themselves).
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("stop.sh", [][]string{{uid}})
	if got := len(runs(t, out, "notify.sh", 3)); got != 3 {
		t.Errorf("notify ran %d times", got)
	}
}

func sortRecs(r [][]string) [][]string {
	out := append([][]string(nil), r...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if strings.Join(out[j], " ") < strings.Join(out[i], " ") {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestRealServerScripts(t *testing.T) {
	dir, out := scriptDir(t, "up.sh", "down.sh", "qdown.sh")
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: config.TCP,
		QuorumDown: filepath.Join(dir, "qdown.sh") + " lost"}
	rs := config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80,
		NotifyUp: filepath.Join(dir, "up.sh") + ` "now up"`, NotifyDown: filepath.Join(dir, "down.sh")}
	n := New(&config.Config{}, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	n.RealServer(vs, rs, false)
	n.RealServer(vs, rs, true)
	n.Quorum(vs, false)
	uid := wantUID()
	for script, want := range map[string][][]string{
		"down.sh":  {{uid}},
		"up.sh":    {{uid, "now", "up"}},
		"qdown.sh": {{uid, "lost"}},
	} {
		if diff := cmp.Diff(want, runs(t, out, script, len(want))); diff != "" {
			t.Errorf("%s runs (-want +got):\n%s", script, diff)
		}
	}
}

// TestScriptUser runs a script as a configured user and group (root only).
func TestScriptUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run scripts as another user")
	}
	dir, out := scriptDir(t, "up.sh")
	cfg := &config.Config{Global: config.GlobalDefs{ScriptUser: "root"}}
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	// The real server's own user wins over script_user.
	n.RealServer(vs, config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, NotifyUp: filepath.Join(dir, "up.sh"),
		NotifyUpUser: config.ScriptUser{User: "nobody"}}, true)
	if diff := cmp.Diff([][]string{{"65534"}}, runs(t, out, "up.sh", 1)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestScriptSecurity checks enable_script_security refuses a script root would run from a
// world-writable directory, and that without it the script runs (with a warning).
func TestScriptSecurity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check applies to scripts run as root")
	}
	for _, security := range []bool{true, false} {
		t.Run(fmt.Sprintf("enable_script_security=%v", security), func(t *testing.T) {
			dir, out := scriptDir(t, "up.sh")
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			cfg := &config.Config{Global: config.GlobalDefs{ScriptUser: "root", EnableScriptSecurity: security}}
			n := New(cfg, Options{Hostname: "lb1", Logger: newLogger(&log)})
			vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}
			n.RealServer(vs, config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, NotifyUp: filepath.Join(dir, "up.sh")}, true)
			if err := n.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(out, "up.sh.*"))
			if ran := len(files) > 0; ran == security {
				t.Errorf("script ran: %v, with enable_script_security %v; log:\n%s", ran, security, log.String())
			}
			want := "is writable by everyone"
			if !strings.Contains(log.String(), want) {
				t.Errorf("log does not say %q:\n%s", want, log.String())
			}
		})
	}
}

func TestScriptTimeout(t *testing.T) {
	dir := safeDirAny(t)
	pidFile := filepath.Join(dir, "pid")
	script := filepath.Join(dir, "slow.sh")
	// The script leaves a child behind: the whole process group must die at the timeout.
	body := fmt.Sprintf("#!/bin/sh\nsleep 60 &\necho $! > %s.tmp; mv %s.tmp %s\nsleep 60\n", pidFile, pidFile, pidFile)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // nobody writes the pid file
		t.Fatal(err)
	}
	var log strings.Builder
	n := New(&config.Config{}, Options{Hostname: "lb1", ScriptTimeout: 300 * time.Millisecond, Logger: newLogger(&log)})
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}
	start := time.Now()
	n.RealServer(vs, config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, NotifyDown: script}, false)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("RealServer blocked for %v", d)
	}
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("script killed after %v, timeout 300ms", d)
	}
	if !strings.Contains(log.String(), "notify script killed") {
		t.Errorf("log does not report the kill:\n%s", log.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the script's child %d survived the timeout", pid)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// A zombie waiting for its reaper is dead.
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// TestAlerts sends the VRRP and real server alerts through a Notifier to a test SMTP server.
func TestAlerts(t *testing.T) {
	addr, got := smtpServer(t, 3)
	host, port, _ := strings.Cut(addr, ":")
	cfg := &config.Config{
		Global: config.GlobalDefs{RouterID: "LB_1", NotificationEmail: []string{"ops@example.com"},
			NotificationEmailFrom: "lb@example.com", SMTPServer: host + " " + port, SMTPConnectTimeout: 5 * time.Second, NoEmailFaults: true},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 100, SMTPAlert: true}},
	}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: config.TCP}
	rs := config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Checkers: []config.Checker{{Kind: config.KindHTTP}}}
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Fault}) // no_email_faults
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Fault, State: vrrp.Master})
	n.RealServer(vs, rs, false)
	var subjects []string
	for range 2 {
		select {
		case m := <-got:
			for _, l := range strings.Split(m.Data, "\r\n") {
				if s, ok := strings.CutPrefix(l, "Subject: "); ok {
					subjects = append(subjects, s)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("alerts received: %q", subjects)
		}
	}
	want := []string{"[LB_1] VRRP Instance VI_1 - Entering MASTER state",
		"[LB_1] Realserver [10.0.0.1]:tcp:80 of virtual server [192.0.2.1]:tcp:80 - DOWN"}
	if diff := cmp.Diff(want, subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}

// TestFIFOScript starts notify_fifo_script with the FIFO's path as its last argument; the
// script, as the script user, reads the lines from the FIFO.
func TestFIFOScript(t *testing.T) {
	dir := safeDirAny(t)
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	reader := filepath.Join(dir, "reader.sh")
	body := fmt.Sprintf("#!/bin/sh\nid -u > %s/uid\nwhile read -r line; do echo \"$1 $line\" >> %s/lines; done < \"$2\"\n", out, out)
	if err := os.WriteFile(reader, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vrrp.fifo")
	cfg := &config.Config{
		Global:        config.GlobalDefs{VRRPNotifyFIFO: config.NotifyFIFO{Path: path, Script: reader + " got"}},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 100}},
	}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Master})
	want := "got INSTANCE \"VI_1\" MASTER 100\n"
	deadline := time.Now().Add(10 * time.Second)
	var got []byte
	for time.Now().Before(deadline) {
		if got, _ = os.ReadFile(filepath.Join(out, "lines")); string(got) == want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(got) != want {
		t.Errorf("the fifo script read %q, want %q", got, want)
	}
	if uid, _ := os.ReadFile(filepath.Join(out, "uid")); strings.TrimSpace(string(uid)) != wantUID() {
		t.Errorf("fifo script ran as uid %q, want %s", uid, wantUID())
	}
}
