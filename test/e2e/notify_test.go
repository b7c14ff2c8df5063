package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// vrrpVIP is the address of the test's vrrp_instance: not a virtual service's, so the instance
// does not change what is forwarded.
const vrrpVIP = "10.111.0.200"

// notifyScript records each run: a file NAME.PID in out holding `id -u` and the arguments.
const notifyScript = `#!/bin/sh
out=%s/$(basename "$0").$$
{ id -u; for a in "$@"; do echo "$a"; done; } > "$out.tmp" && mv "$out.tmp" "$out"
`

// TestNotifyScriptsAndAlerts runs `sluice run` with keepalived's notify scripts and SMTP alerts:
// the vrrp_instance becoming MASTER runs notify_master and notify (INSTANCE VI_N MASTER 100)
// and mails "Entering MASTER state"; a real server going down runs its notify_down and mails
// the Realserver DOWN alert; stopping the daemon runs notify_stop. Scripts run as nobody, the
// default script user when keepalived_script does not exist.
func TestNotifyScriptsAndAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	l, err := lab.Build(env, 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	dir, out := notifyDir(t, "master.sh", "notify.sh", "stop.sh", "down.sh")
	smtpLn, err := l.Director.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mails := serveMail(smtpLn)
	_, port, _ := net.SplitHostPort(smtpLn.Addr().String())

	var conf strings.Builder
	fmt.Fprintf(&conf, `global_defs {
    router_id e2e-lb
    notification_email {
        ops@example.com
    }
    notification_email_from lb@example.com
    smtp_server 127.0.0.1 %s
    smtp_connect_timeout 5
}
vrrp_instance VI_N {
    interface %s
    virtual_router_id 77
    version 3
    priority 100
    advert_int 0.2
    virtual_ipaddress {
        %s/32
    }
    notify_master %s/master.sh
    notify "%s/notify.sh extra"
    notify_stop %s/stop.sh
    smtp_alert
}
`, port, lab.Iface, vrrpVIP, dir, dir, dir)
	conf.WriteString(strings.ReplaceAll(l.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout),
		"        weight 1\n", "        weight 1\n        notify_down \""+dir+"/down.sh down\"\n"))
	confPath := writeConf(t, conf.String())
	log, stopLog := testLog(t)
	d := &daemon{lab: l, conf: confPath, log: log}
	if d.proc, err = l.StartSluice(sluiceBin, confPath, d.log); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			d.stopAndVerify(t)
		}
		stopLog()
	})
	ctx := context.Background()
	if err := l.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// MASTER: alone on the segment, the instance takes over after master down (~0.8 s).
	want := [][]string{{"65534"}}
	if got := waitRuns(t, out, "master.sh", 1, 10*time.Second); !equalRuns(got, want) {
		t.Errorf("notify_master runs: %q, want %q", got, want)
	}
	// The instance starts as BACKUP, as keepalived's does: notify runs for both states.
	want = [][]string{{"65534", "extra", "INSTANCE", "VI_N", "BACKUP", "100"}, {"65534", "extra", "INSTANCE", "VI_N", "MASTER", "100"}}
	if got := waitRuns(t, out, "notify.sh", 2, 10*time.Second); !equalRuns(sortRuns(got), want) {
		t.Errorf("notify runs: %q, want %q", got, want)
	}
	waitMail(t, mails, "[e2e-lb] VRRP Instance VI_N - Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <=")

	// A real server goes down: its notify_down and the checker's alert.
	rs1 := l.RealServers[0]
	if err := rs1.Stop(); err != nil {
		t.Fatal(err)
	}
	bound := lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin + 5*time.Second
	want = [][]string{{"65534", "down"}}
	if got := waitRuns(t, out, "down.sh", 1, bound); !equalRuns(got, want) {
		t.Errorf("notify_down runs: %q, want %q", got, want)
	}
	waitMail(t, mails, fmt.Sprintf("[e2e-lb] Realserver [%s]:tcp:%d of virtual server [%s]:tcp:%d - DOWN", rs1.Addr, lab.Port, lab.VIP, lab.Port),
		"=> TCP CHECK failed on service <=")

	// SIGTERM: notify_stop, and notify with STOP.
	stopped = true
	d.stopAndVerify(t)
	want = [][]string{{"65534"}}
	if got := waitRuns(t, out, "stop.sh", 1, 5*time.Second); !equalRuns(got, want) {
		t.Errorf("notify_stop runs: %q, want %q", got, want)
	}
	want = append(want[:0], []string{"65534", "extra", "INSTANCE", "VI_N", "BACKUP", "100"},
		[]string{"65534", "extra", "INSTANCE", "VI_N", "MASTER", "100"}, []string{"65534", "extra", "INSTANCE", "VI_N", "STOP", "100"})
	if got := waitRuns(t, out, "notify.sh", 3, 5*time.Second); !equalRuns(sortRuns(got), want) {
		t.Errorf("notify runs after stop: %q, want %q", got, want)
	}
}

// notifyDir makes a directory every user may traverse holding the recording script under each
// name, and an output directory every user may write (scripts run as nobody).
func notifyDir(t *testing.T, names ...string) (dir, out string) {
	t.Helper()
	dir = t.TempDir()
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out = filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), fmt.Appendf(nil, notifyScript, out), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, out
}

// waitRuns waits up to timeout for n records of script and returns those found.
func waitRuns(t *testing.T, out, script string, n int, timeout time.Duration) [][]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files, _ := filepath.Glob(filepath.Join(out, script+".*[0-9]"))
		if len(files) >= n || time.Now().After(deadline) {
			var runs [][]string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				runs = append(runs, strings.Fields(string(b)))
			}
			if len(runs) < n {
				t.Errorf("%s ran %d times within %v, want %d", script, len(runs), timeout, n)
			}
			return runs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sortRuns orders records by their state argument as BACKUP, MASTER, STOP (alphabetically).
func sortRuns(runs [][]string) [][]string {
	out := slices.Clone(runs)
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

func equalRuns(a, b [][]string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// mail is one message the test's SMTP server accepted.
type mail struct{ subject, body string }

// serveMail is a small SMTP server: it accepts sessions on ln until ln closes (each bounded in
// time and lines) and sends each message's subject and first body line on the channel.
func serveMail(ln net.Listener) <-chan mail {
	ch := make(chan mail, 16)
	go func() {
		for range 100 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go mailSession(c, ch)
		}
	}()
	return ch
}

func mailSession(c net.Conn, ch chan<- mail) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say("220 e2e ready")
	for range 100 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case cmd == "DATA":
			say("354 go on")
			var m mail
			inBody := false
			for range 1000 {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				l = strings.TrimRight(l, "\r\n")
				if l == "." {
					break
				}
				switch {
				case !inBody && l == "":
					inBody = true
				case !inBody && strings.HasPrefix(l, "Subject: "):
					m.subject = strings.TrimPrefix(l, "Subject: ")
				case inBody && m.body == "":
					m.body = l
				}
			}
			select {
			case ch <- m:
			default:
			}
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

// waitMail waits for an alert with the subject and body; other alerts are skipped.
func waitMail(t *testing.T, mails <-chan mail, subject, body string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	var seen []string
	for {
		select {
		case m := <-mails:
			if m.subject == subject {
				if m.body != body {
					t.Errorf("alert %q: body %q, want %q", subject, m.body, body)
				}
				return
			}
			seen = append(seen, m.subject)
		case <-timeout:
			t.Errorf("no alert %q; received %q", subject, seen)
			return
		}
	}
}
