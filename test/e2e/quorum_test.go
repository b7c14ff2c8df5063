package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// quorumConf is a keepalived.conf whose virtual service on VIP:80 has rs1 and rs2 (weight 1
// each) as real servers, quorum 2, rs3 as its sorry_server, and omega. Its quorum_up,
// quorum_down and notify_down scripts run script with what happened as arguments.
func quorumConf(l *lab.Lab, script string) string {
	var b strings.Builder
	b.WriteString("global_defs {\n    script_user root\n}\n")
	fmt.Fprintf(&b, "virtual_server %s %d {\n", lab.VIP, lab.Port)
	fmt.Fprintf(&b, "    delay_loop %d\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n", int(lab.DelayLoop/time.Second))
	fmt.Fprintf(&b, "    quorum 2\n    hysteresis 0\n    sorry_server %s %d\n    omega\n", l.RealServers[2].Addr, lab.Port)
	fmt.Fprintf(&b, "    quorum_up \"%s quorum up\"\n    quorum_down \"%s quorum down\"\n\n", script, script)
	for _, rs := range l.RealServers[:2] {
		fmt.Fprintf(&b, "    real_server %s %d {\n        weight 1\n", rs.Addr, lab.Port)
		fmt.Fprintf(&b, "        notify_down \"%s %s down\"\n", script, rs.Name)
		fmt.Fprintf(&b, "        TCP_CHECK {\n            connect_timeout %d\n            retry 0\n        }\n    }\n",
			int(lab.ConnectTimeout/time.Second))
	}
	b.WriteString("}\n")
	return b.String()
}

// TestQuorumSorryServer runs `sluice run` on a service with quorum 2 over two real servers and a
// sorry server: stopping one real server loses quorum, and every new connection goes to the
// sorry server (the live real server is drained, not used); starting it again regains quorum,
// and the pool serves again while the sorry server gets nothing.
func TestQuorumSorryServer(t *testing.T) {
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
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes")
	script := filepath.Join(dir, "note.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+notes+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := writeConf(t, quorumConf(l, script))
	log, stopLog := testLog(t)
	d := &daemon{lab: l, conf: conf, log: log}
	if d.proc, err = l.StartSluice(sluiceBin, conf, log); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			d.stopAndVerify(t)
		}
		stopLog()
	})
	// scripts waits until the scripts have reported want (in any order: they run in parallel)
	// since the last call, and fails the test if they report anything else.
	var seen int
	scripts := func(phase string, want ...string) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			b, _ := os.ReadFile(notes)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(b) == 0 {
				lines = nil
			}
			if got = lines[min(seen, len(lines)):]; len(got) >= len(want) {
				break
			}
		}
		seen += len(got)
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: scripts ran with %q, want %q", phase, got, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.proc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	rs2 := l.RealServers[1]
	// A change shows within one check round plus the time to apply it.
	within := lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin

	pool := func(phase string, want ...string) {
		t.Helper()
		tally := l.Run(ctx, 30)
		if len(tally.Failed) > 0 {
			t.Errorf("%s: %d of %d connections failed", phase, len(tally.Failed), tally.Total)
			logFailures(t, tally.Failed, time.Now(), t.Logf)
		}
		for name, n := range tally.ByServer {
			if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+name+" ") {
				t.Errorf("%s: %s answered %d of %d connections, want only %v", phase, name, n, tally.Total, want)
			}
		}
		for _, name := range want {
			if tally.ByServer[name] == 0 {
				t.Errorf("%s: %s answered none of %d connections; all: %v", phase, name, tally.Total, tally.ByServer)
			}
		}
	}

	for _, name := range []string{"rs1", "rs2"} {
		if _, err := l.WaitServer(ctx, name, 20*time.Second); err != nil {
			t.Fatalf("start: %v", err)
		}
	}
	pool("with quorum", "rs1", "rs2")

	mark := log.Mark()
	if err := rs2.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.WaitServer(ctx, "rs3", within+5*time.Second); err != nil {
		t.Fatalf("quorum lost: %v", err)
	}
	t.Logf("sorry server answered %v after rs2 stopped", time.Since(start).Round(time.Millisecond))
	if !log.Contains(mark, "lost quorum") {
		t.Error(`sluice did not log "lost quorum"`)
	}
	pool("without quorum", "rs3")
	scripts("quorum lost", "rs2 down", "quorum down")

	mark = log.Mark()
	if err := rs2.Start(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := l.WaitServer(ctx, "rs2", within+5*time.Second); err != nil {
		t.Fatalf("quorum regained: %v", err)
	}
	t.Logf("rs2 answered %v after it started again", time.Since(start).Round(time.Millisecond))
	if !log.Contains(mark, "gained quorum") {
		t.Error(`sluice did not log "gained quorum"`)
	}
	pool("quorum regained", "rs1", "rs2")
	scripts("quorum regained", "quorum up")

	// omega: on the way out, notify_down for each live real server, then quorum_down.
	stopped = true
	d.stopAndVerify(t)
	scripts("shutdown with omega", "rs1 down", "rs2 down", "quorum down")
}
