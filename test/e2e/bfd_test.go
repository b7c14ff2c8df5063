package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestBFDCheck runs `sluice run` with a bfd_instance to rs1 and a BFD_CHECK on it, and
// keepalived's BFD process on rs1 with a bfd_instance back to the director: rs1 serves while
// the session is Up, and once keepalived is killed (its HTTP server still answering), the
// session's detection time and one delay_loop take rs1 out of the rotation.
func TestBFDCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		netns.SkipPrivileged(t, "keepalived is not installed (apt-get install keepalived)")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	l, err := lab.Build(env, 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	rs1 := l.RealServers[0]

	// keepalived's side, on rs1.
	dir := t.TempDir()
	kaConf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(kaConf, fmt.Appendf(nil, "bfd_instance DIRECTOR {\n  neighbor_ip %s\n  source_ip %s\n  min_rx 100\n  min_tx 100\n  multiplier 3\n}\n",
		lab.DirectorIP, rs1.Addr), 0o600); err != nil {
		t.Fatal(err)
	}
	kaLog := &lab.LogTail{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keepalived log:\n%s", strings.Join(kaLog.Since(0), "\n"))
		}
	})
	cmd := rs1.NS.Command(bin, "-n", "-l", "-D", "-f", kaConf, "-p", filepath.Join(dir, "k.pid"),
		"-r", filepath.Join(dir, "v.pid"), "-c", filepath.Join(dir, "c.pid"), "-b", filepath.Join(dir, "b.pid"))
	cmd.Stdout, cmd.Stderr = kaLog, kaLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ka, err := env.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}

	// Sluice's side.
	conf := fmt.Sprintf("bfd_instance RS1 {\n  neighbor_ip %s\n  source_ip %s\n  min_rx 100\n  min_tx 100\n  multiplier 3\n}\n",
		rs1.Addr, lab.DirectorIP)
	conf += strings.Replace(l.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout),
		fmt.Sprintf("real_server %s %d {\n        weight 1\n", rs1.Addr, lab.Port),
		fmt.Sprintf("real_server %s %d {\n        weight 1\n        BFD_CHECK {\n            name RS1\n        }\n", rs1.Addr, lab.Port), 1)
	if !strings.Contains(conf, "BFD_CHECK") {
		t.Fatal("could not add BFD_CHECK to the lab's configuration")
	}
	confPath := writeConf(t, conf)
	log, stopLog := testLog(t)
	d := &daemon{lab: l, conf: confPath, log: log}
	if d.proc, err = l.StartSluice(sluiceBin, confPath, d.log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopAndVerify(t)
		stopLog()
	})
	ctx := context.Background()
	if err := l.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// The session is Up on keepalived's side too.
	deadline := time.Now().Add(10 * time.Second)
	for !kaLog.Contains(0, "(DIRECTOR) Entering Up state") {
		if time.Now().After(deadline) {
			t.Fatal("keepalived's session to the director did not come Up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := l.WaitServer(ctx, "rs1", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// Kill keepalived: no AdminDown; Sluice's session expires after 3 × 100 ms.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ka.Done()
	t0 := time.Now()
	window := 300*time.Millisecond + lab.DelayLoop + lab.ApplyMargin
	time.Sleep(window)
	tally := l.Run(ctx, 60)
	t.Logf("%v after keepalived was killed: %v", window, tally.ByServer)
	if n := tally.ByServer["rs1"]; n > 0 {
		t.Errorf("rs1 answered %d of 60 connections %v after its BFD peer died", n, time.Since(t0).Round(time.Millisecond))
	}
	if len(tally.Failed) > 0 {
		t.Errorf("%d connections failed", len(tally.Failed))
	}
	checkShares(t, tally, "rs2", "rs3")
}
