// Package e2e runs the real `sluice run` binary in network namespaces (see test/lab) and checks
// what a keepalived+LVS user relies on: DR forwarding over every healthy real server, a dead
// server taken out within delay_loop+connect_timeout, its return, traffic not for a virtual
// service left to the director's own stack, and a clean exit that detaches XDP.
//
// The tests need root; they are skipped without it and in -short mode. SLUICE_BIN names a
// prebuilt binary; otherwise TestMain builds ./cmd/sluice.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

var (
	sluiceBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if bin := os.Getenv("SLUICE_BIN"); bin != "" {
		sluiceBin = bin
		return m.Run()
	}
	if os.Geteuid() == 0 && !testing.Short() {
		dir, err := os.MkdirTemp("", "sluice-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		sluiceBin = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", sluiceBin, "github.com/sluice-lb/sluice/cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build sluice: %w\n%s", err, out)
		}
	}
	return m.Run()
}

// daemon is a running `sluice run` in the director namespace of a lab.
type daemon struct {
	lab  *lab.Lab
	proc *netns.Proc
	log  *lab.LogTail
	conf string // the keepalived.conf it runs
}

// startSluice builds a lab with three real servers, starts sluice on it and waits until every
// real server answers through the VIP. Cleanup stops sluice with SIGTERM and fails the test
// unless it exits with status 0 and leaves no XDP program behind.
func startSluice(t *testing.T, extra ...string) *daemon {
	t.Helper()
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
	conf := writeConf(t, l.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout))
	log, stopLog := testLog(t)
	d := &daemon{lab: l, conf: conf, log: log}
	d.proc, err = l.StartSluice(sluiceBin, conf, d.log, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopAndVerify(t)
		stopLog()
	})

	// Stop waiting as soon as sluice dies.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.proc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	if err := l.WaitReady(ctx, 20*time.Second); err != nil {
		select {
		case <-d.proc.Done():
			t.Fatalf("sluice exited while starting: %v", d.proc.Err())
		default:
		}
		t.Fatal(err)
	}
	t.Logf("VIP %s:%d served by every real server %v after start", lab.VIP, lab.Port, time.Since(start).Round(time.Millisecond))

	attached, desc, err := l.XDPState()
	if err != nil {
		t.Fatal(err)
	}
	if !attached {
		out, _ := l.IPLinkShow()
		t.Fatalf("VIP answers but no XDP program on director %s:\n%s", lab.Iface, out)
	}
	t.Logf("director %s: XDP %s", lab.Iface, desc)
	return d
}

// writeConf writes a keepalived.conf into the test's temporary directory and returns its path.
func writeConf(t *testing.T, text string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// testLog returns a LogTail that copies sluice's log lines into the test's log, and the function
// that stops the copying; call it in the test's last cleanup, as t.Log after the end panics.
func testLog(t *testing.T) (*lab.LogTail, func()) {
	var ended atomic.Bool
	return &lab.LogTail{OnLine: func(line string) {
		if !ended.Load() {
			t.Log("sluice: " + line)
		}
	}}, func() { ended.Store(true) }
}

// stopAndVerify sends SIGTERM and checks for exit status 0, a detached XDP program, and no
// control socket or pinned data plane left behind.
func (d *daemon) stopAndVerify(t *testing.T) {
	t.Helper()
	select {
	case <-d.proc.Done():
		t.Errorf("sluice exited before the test ended: %v", d.proc.Err())
		return
	default:
	}
	if err := d.proc.Stop(10 * time.Second); err != nil {
		t.Errorf("sluice did not exit cleanly on SIGTERM: %v", err)
	}
	attached, desc, err := d.lab.XDPState()
	if err != nil {
		t.Errorf("read XDP state after sluice exited: %v", err)
	} else if attached {
		t.Errorf("XDP still attached to director %s after sluice exited: %s", lab.Iface, desc)
	}
	// The daemon names its control socket after its namespace and removes it on the way out.
	sock := filepath.Join("/run/sluice", d.lab.Director.Name+".sock")
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket %s left behind after sluice exited (%v)", sock, err)
	}
	// A clean stop unpins the maps and links (when bpffs is mounted on the host).
	if _, err := os.Lstat(d.pinDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory %s left behind after sluice exited (%v)", d.pinDir(), err)
	}
}

// checkShares fails the test unless every server in names got at least a fifth of total.
func checkShares(t *testing.T, tally lab.Tally, names ...string) {
	t.Helper()
	for _, name := range names {
		if got := tally.ByServer[name]; got*5 < tally.Total {
			t.Errorf("%s got %d of %d connections, want at least 20%%; all: %v", name, got, tally.Total, tally.ByServer)
		}
	}
}

func logFailures(t *testing.T, failed []lab.Attempt, since time.Time, report func(format string, args ...any)) {
	t.Helper()
	for i, a := range failed {
		if i == 20 {
			report("... and %d more failed connections", len(failed)-i)
			return
		}
		report("connection at +%v failed after %v: %v",
			a.Start.Sub(since).Round(time.Millisecond), a.Duration.Round(time.Millisecond), a.Err)
	}
}

func TestDirectRouting(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()
	rs1 := d.lab.RealServers[0]

	t.Run("distribution", func(t *testing.T) {
		const n = 300
		start := time.Now()
		tally := d.lab.Run(ctx, n)
		t.Logf("%d connections in %v: %v", n, time.Since(start).Round(time.Millisecond), tally.ByServer)
		if len(tally.Failed) > 0 {
			t.Errorf("%d of %d connections failed", len(tally.Failed), n)
			logFailures(t, tally.Failed, start, t.Errorf)
		}
		checkShares(t, tally, "rs1", "rs2", "rs3")
		// DR leaves the packet's IP header alone: the real servers see the client itself,
		// where a proxy or NAT on the director would show up as another source.
		if want := map[string]int{lab.ClientIP.String(): n - len(tally.Failed)}; !maps.Equal(tally.ByPeer, want) {
			t.Errorf("real servers saw connections from %v, want only the client %s", tally.ByPeer, lab.ClientIP)
		}
	})

	t.Run("failover", func(t *testing.T) {
		window := lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin
		const observe = 3 * time.Second
		mark := d.log.Mark()
		if err := rs1.Stop(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		var inWindow, after lab.Tally
		for i := 0; i < 2000 && time.Since(t0) < window+observe; i++ {
			a := d.lab.Get(ctx)
			if a.Start.Sub(t0) < window {
				inWindow.Add(a)
			} else {
				after.Add(a)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("within %v of stopping rs1: %d connections, %d failed (allowed while sluice notices): %v",
			window, inWindow.Total, len(inWindow.Failed), inWindow.ByServer)
		logFailures(t, inWindow.Failed, t0, t.Logf)
		t.Logf("after that: %d connections, %d failed: %v", after.Total, len(after.Failed), after.ByServer)

		if after.Total < 20 {
			t.Fatalf("only %d connections after the window: too few to tell", after.Total)
		}
		if len(after.Failed) > 0 {
			t.Errorf("%d connections failed later than %v after rs1 stopped", len(after.Failed), window)
			logFailures(t, after.Failed, t0, t.Errorf)
		}
		if n := after.ByServer["rs1"]; n > 0 {
			t.Errorf("rs1 answered %d connections after it was stopped", n)
		}
		checkShares(t, after, "rs2", "rs3")
		if !d.log.Contains(mark, rs1.Addr.String()) {
			t.Logf("note: sluice logged nothing naming %s after it stopped", rs1.Addr)
		}
	})

	t.Run("recovery", func(t *testing.T) {
		bound := 2*(lab.DelayLoop+lab.ConnectTimeout) + lab.ApplyMargin + 2*time.Second
		if err := rs1.Start(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		attempts, err := d.lab.WaitServer(ctx, "rs1", bound)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rs1 answered again %v after its server restarted (%d connections)",
			time.Since(t0).Round(time.Millisecond), len(attempts))
		var tally lab.Tally
		for _, a := range attempts {
			tally.Add(a)
		}
		// Every server listens again, so wherever a connection goes it must succeed.
		if len(tally.Failed) > 0 {
			t.Errorf("%d connections failed while rs1 came back", len(tally.Failed))
			logFailures(t, tally.Failed, t0, t.Errorf)
		}

		const n = 150
		tally = d.lab.Run(ctx, n)
		t.Logf("%d connections after recovery: %v", n, tally.ByServer)
		if len(tally.Failed) > 0 {
			t.Errorf("%d of %d connections failed after recovery", len(tally.Failed), n)
			logFailures(t, tally.Failed, t0, t.Errorf)
		}
		checkShares(t, tally, "rs1", "rs2", "rs3")
	})
}

// TestNonVIPTrafficPasses checks that the XDP program hands everything that is not for a
// virtual service to the director's own stack, intact.
func TestNonVIPTrafficPasses(t *testing.T) {
	d := startSluice(t)
	ln, err := d.lab.Director.Listen("tcp4", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	peers := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().String()
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()

	for _, tc := range []struct {
		name string
		dst  string
	}{
		{"director address", net.JoinHostPort(lab.DirectorIP.String(), "8080")},
		{"VIP port without a virtual service", net.JoinHostPort(lab.VIP.String(), "8080")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := d.lab.Client.Dial("tcp4", tc.dst, 2*time.Second)
			if err != nil {
				t.Fatalf("connect to %s: %v", tc.dst, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))

			// Enough segments that a packet mangled on the way (bad checksum, wrong MAC)
			// would show up as a stall or a difference.
			want := make([]byte, 256<<10)
			rand.Read(want)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				c.(*net.TCPConn).CloseWrite()
				werr <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read echo from %s: %v", tc.dst, err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write to %s: %v", tc.dst, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo from %s: got %d bytes, want the %d sent", tc.dst, len(got), len(want))
			}
			select {
			case peer := <-peers:
				if !strings.HasPrefix(peer, lab.ClientIP.String()+":") {
					t.Errorf("director's stack saw the connection from %s, want %s", peer, lab.ClientIP)
				}
			case <-time.After(time.Second):
				t.Error("the director's listener did not record the connection")
			}
		})
	}

	if attached, desc, err := d.lab.XDPState(); err != nil || !attached {
		t.Errorf("XDP on director %s during the test: attached=%v %s %v", lab.Iface, attached, desc, err)
	}
}
