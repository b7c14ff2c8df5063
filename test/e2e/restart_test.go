package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
)

// useHostMounts makes the daemons (and CLI calls) of this test run in the test's own mount
// namespace, with bpffs mounted at /sys/fs/bpf as an operator's boot would mount it. The lab
// starts them with `ip netns exec`, which gives each a private /sys without the host's bpffs:
// pins made there die with the daemon, where an operator's daemon (systemd, nsenter) pins into
// the host's bpffs. A wrapper re-enters the test's mount namespace, keeping the network
// namespace; the bpffs mount is left in place (the daemon would have made it too).
func useHostMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || testing.Short() {
		return // startSluice skips
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
			t.Fatalf("mount bpffs at /sys/fs/bpf: %v", err)
		}
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("nsenter (util-linux) not found: %v", err)
	}
	wrapper := filepath.Join(t.TempDir(), "sluice-host-mounts")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --mount=/proc/%d/ns/mnt -- %s \"$@\"\n", nsenter, os.Getpid(), sluiceBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	saved := sluiceBin
	sluiceBin = wrapper
	t.Cleanup(func() { sluiceBin = saved })
}

// pinDir is where the lab director's daemon pins its data plane, as the host sees it.
func (d *daemon) pinDir() string {
	return filepath.Join("/sys/fs/bpf/sluice", d.lab.Director.Name)
}

// xdpProg returns the id of the XDP program on the director's interface, failing the test when
// none is attached.
func (d *daemon) xdpProg(t *testing.T) (prog uint32, mode uint32) {
	t.Helper()
	x, err := d.lab.Director.XDP(lab.Iface)
	if err != nil {
		t.Fatal(err)
	}
	if x == nil || !x.Attached {
		t.Fatalf("no XDP program on director %s", lab.Iface)
	}
	return x.ProgId, x.AttachMode
}

// startAgain starts a new daemon on the lab with the same configuration, waits until it says it
// took over the pinned data plane and serves its control socket, and makes it the one the
// test's cleanup stops and verifies.
func (d *daemon) startAgain(t *testing.T, extra ...string) {
	t.Helper()
	mark := d.log.Mark()
	proc, err := d.lab.StartSluice(sluiceBin, d.conf, d.log, extra...)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = proc
	deadline := time.Now().Add(15 * time.Second)
	for !d.log.Contains(mark, "sluice starting") || !d.log.Contains(mark, "took over the pinned data plane") {
		select {
		case <-proc.Done():
			t.Fatalf("restarted sluice exited: %v", proc.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted sluice did not take over the pinned data plane within 15s; log since start:\n%s",
				strings.Join(d.log.Since(mark), "\n"))
		}
	}
}

// keepAlive is an established HTTP/1.1 connection from the client through the VIP, reused for
// every request, so it proves that flows opened before a restart still reach their real server.
type keepAlive struct {
	c      net.Conn
	r      *bufio.Reader
	server string // the real server that answered the first request
}

func dialKeepAlive(t *testing.T, l *lab.Lab) *keepAlive {
	t.Helper()
	c, err := l.Client.Dial("tcp4", net.JoinHostPort(lab.VIP.String(), fmt.Sprint(lab.Port)), lab.RequestTimeout)
	if err != nil {
		t.Fatalf("connect to the VIP: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	k := &keepAlive{c: c, r: bufio.NewReader(c)}
	if k.server, err = k.get(); err != nil {
		t.Fatalf("first request on a kept-alive connection: %v", err)
	}
	return k
}

// get sends one request on the connection and returns the name of the real server answering.
func (k *keepAlive) get() (string, error) {
	k.c.SetDeadline(time.Now().Add(lab.RequestTimeout))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// checkKeepAlive makes one request on each established connection and fails unless every one is
// answered by the real server that answered it first.
func checkKeepAlive(t *testing.T, phase string, conns []*keepAlive) {
	t.Helper()
	for i, k := range conns {
		got, err := k.get()
		if err != nil || got != k.server {
			t.Errorf("%s: established connection %d: answered by %q (%v), want %s", phase, i, got, err, k.server)
		}
	}
}

// traffic opens new connections to the VIP one after another, every 20 ms, until stopped: at
// most 3000 and for at most two minutes.
type traffic struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	all  []lab.Attempt
}

func startTraffic(l *lab.Lab) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	go func() {
		defer close(tr.done)
		defer cancel()
		for i := 0; i < 3000 && ctx.Err() == nil; i++ {
			a := l.Get(ctx)
			tr.mu.Lock()
			tr.all = append(tr.all, a)
			tr.mu.Unlock()
			select {
			case <-tr.stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return tr
}

// since counts the attempts that started at or after t0.
func (tr *traffic) since(t0 time.Time) lab.Tally {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var tally lab.Tally
	for _, a := range tr.all {
		if !a.Start.Before(t0) {
			tally.Add(a)
		}
	}
	return tally
}

func (tr *traffic) end() lab.Tally {
	close(tr.stop)
	<-tr.done
	return tr.since(time.Time{})
}

// TestKill9AndRestart is the hitless restart an operator relies on: under continuous traffic
// the daemon is killed with SIGKILL and forwarding goes on (the pinned link keeps the program
// attached); a new daemon takes the pinned state over, swapping in its program on the same
// link; not one request fails, neither new connections nor ones established before the kill.
// The cleanup then stops it with SIGTERM and checks that nothing is left.
func TestKill9AndRestart(t *testing.T) {
	useHostMounts(t)
	d := startSluice(t)
	if fi, err := os.Stat(d.pinDir()); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("pin directory %s: %v %v, want a 0700 directory", d.pinDir(), fi, err)
	}
	links, _ := os.ReadDir(filepath.Join(d.pinDir(), "links"))
	if len(links) != 1 {
		t.Errorf("pinned links %v, want one for %s", links, lab.Iface)
	}

	var conns []*keepAlive
	for range 6 {
		conns = append(conns, dialKeepAlive(t, d.lab))
	}
	tr := startTraffic(d.lab)
	time.Sleep(time.Second)
	prog1, mode1 := d.xdpProg(t)

	tKill := time.Now()
	if err := d.proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.proc.Done()
	time.Sleep(2 * time.Second)
	if prog, mode := d.xdpProg(t); prog != prog1 || mode != mode1 {
		t.Errorf("after SIGKILL: XDP program %d mode %d, want %d mode %d still attached", prog, mode, prog1, mode1)
	}
	if _, err := os.Stat(d.pinDir()); err != nil {
		t.Errorf("pin directory after SIGKILL: %v", err)
	}
	checkKeepAlive(t, "after SIGKILL", conns)
	whileDead := tr.since(tKill)

	tStart := time.Now()
	d.startAgain(t)
	time.Sleep(2 * time.Second)
	prog2, mode2 := d.xdpProg(t)
	if prog2 == prog1 || mode2 != mode1 {
		t.Errorf("after the restart: XDP program %d mode %d, want a new program (not %d) in mode %d", prog2, mode2, prog1, mode1)
	}
	checkKeepAlive(t, "after the restart", conns)
	afterStart := tr.since(tStart)

	out, errOut, code := d.cli(t, "status", "--json")
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status after the restart: exit %d %s", code, errOut)
	}
	want := control.Interface{Name: lab.Iface, Mode: "xdp native", Reason: "adopted"}
	if len(st.Interfaces) != 1 || st.Interfaces[0] != want {
		t.Errorf("status interfaces %+v, want [%+v]", st.Interfaces, want)
	}

	all := tr.end()
	t.Logf("%d connections in all (%v); %d while no daemon ran, %d after the restart; established connections checked: %d",
		all.Total, all.ByServer, whileDead.Total, afterStart.Total, len(conns))
	if len(all.Failed) > 0 {
		t.Errorf("%d of %d connections failed", len(all.Failed), all.Total)
		logFailures(t, all.Failed, tKill, t.Errorf)
	}
	if whileDead.Total < 20 || afterStart.Total < 20 {
		t.Errorf("too few connections to tell: %d while dead, %d after the restart", whileDead.Total, afterStart.Total)
	}
	checkShares(t, afterStart, "rs1", "rs2", "rs3")
}

// TestDontReleaseDataplane: with keepalived's --dont-release-ipvs (or --dont-release-dataplane)
// a clean SIGTERM leaves the data plane forwarding and pinned; the next start takes it over,
// a second daemon for the same instance is refused without touching it, and the cleanup's
// SIGTERM removes everything.
func TestDontReleaseDataplane(t *testing.T) {
	useHostMounts(t)
	d := startSluice(t, "--dont-release-ipvs")
	prog1, _ := d.xdpProg(t)
	if err := d.proc.Stop(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if prog, _ := d.xdpProg(t); prog != prog1 {
		t.Errorf("XDP program %d after SIGTERM, want %d left attached", prog, prog1)
	}
	if _, err := os.Stat(d.pinDir()); err != nil {
		t.Errorf("pin directory after SIGTERM with --dont-release-ipvs: %v", err)
	}
	tally := d.lab.Run(context.Background(), 60)
	if len(tally.Failed) > 0 {
		t.Errorf("%d of 60 connections failed with no daemon running", len(tally.Failed))
	}
	checkShares(t, tally, "rs1", "rs2", "rs3")

	d.startAgain(t)
	prog2, _ := d.xdpProg(t)
	if prog2 == prog1 {
		t.Errorf("XDP program %d after the restart, want the new daemon's", prog2)
	}
	tally = d.lab.Run(context.Background(), 60)
	if len(tally.Failed) > 0 {
		t.Errorf("%d of 60 connections failed after the restart", len(tally.Failed))
	}
	checkShares(t, tally, "rs1", "rs2", "rs3")

	// A second daemon for the same instance (another socket) must not take the data plane over.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := d.lab.Director.Command(sluiceBin, "run", "-f", d.conf, "-n", "-l", "--socket", filepath.Join(t.TempDir(), "other.sock"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "in use by another sluice") {
			t.Errorf("second daemon for the same instance: %v, want a refusal naming the other sluice:\n%s", err, out.String())
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatal("second daemon for the same instance did not exit")
	}
	if prog, _ := d.xdpProg(t); prog != prog2 {
		t.Errorf("XDP program %d after a refused second daemon, want %d", prog, prog2)
	}
}

// TestXDPGeneric: --dataplane xdp-generic attaches in generic (SKB) mode although the veth
// supports native XDP, forwards, and says so in sluice status.
func TestXDPGeneric(t *testing.T) {
	d := startSluice(t, "--dataplane", "xdp-generic")
	if _, mode := d.xdpProg(t); mode != 2 { // XDP_ATTACHED_SKB
		t.Errorf("XDP attach mode %d, want generic (2)", mode)
	}
	if tally := d.lab.Run(context.Background(), 30); len(tally.Failed) > 0 {
		t.Errorf("%d of 30 connections failed in generic mode", len(tally.Failed))
	}
	out, errOut, code := d.cli(t, "status", "--json")
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d %s", code, errOut)
	}
	want := control.Interface{Name: lab.Iface, Mode: "xdp generic", Reason: "--dataplane xdp-generic"}
	if st.Dataplane != "xdp-generic" || len(st.Interfaces) != 1 || st.Interfaces[0] != want {
		t.Errorf("status data plane %q, interfaces %+v; want xdp-generic and [%+v]", st.Dataplane, st.Interfaces, want)
	}
	text, _, _ := d.cli(t, "status")
	if !strings.Contains(text, "interface eth0: xdp generic (--dataplane xdp-generic)") {
		t.Errorf("sluice status does not show the interface's mode:\n%s", text)
	}
}
