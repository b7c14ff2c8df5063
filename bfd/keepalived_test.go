package bfd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/test/netns"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pair links namespaces "ka" (10.7.0.1) and "sl" (10.7.0.2) with a veth.
func pair(t *testing.T) (*netns.Env, *netns.NS, *netns.NS) {
	t.Helper()
	env := netns.ForTest(t)
	ka, err := env.NewNS("ka")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := env.NewNS("sl")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Veth(ka, "eth0", sl, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns   *netns.NS
		addr string
	}{{ka, "10.7.0.1/24"}, {sl, "10.7.0.2/24"}} {
		if err := x.ns.AddAddr("eth0", netip.MustParsePrefix(x.addr)); err != nil {
			t.Fatal(err)
		}
		if err := x.ns.LinkUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	return env, ka, sl
}

// startManager opens m's sockets in ns and runs it until the test ends.
func startManager(t *testing.T, ns *netns.NS, m *Manager) {
	t.Helper()
	if err := ns.Do(m.Open); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitState polls name's state until it is want or the deadline passes; it returns how long
// that took.
func waitState(t *testing.T, m *Manager, name string, want State, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if s, _ := m.State(name); s == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s, _ := m.State(name)
	t.Fatalf("session %s is %s after %v, want %s", name, s, within, want)
	return 0
}

// startKeepalivedBFD runs keepalived (all its processes in a process group of their own) in
// ns with conf; it returns the process, its log and a function that SIGKILLs the group.
func startKeepalivedBFD(t *testing.T, env *netns.Env, ns *netns.NS, conf string) (*netns.Proc, *syncBuffer, func()) {
	t.Helper()
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		netns.SkipPrivileged(t, "keepalived is not installed (apt-get install keepalived)")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := ns.Command(bin, "-n", "-l", "-D", "-f", f, "-p", filepath.Join(dir, "k.pid"),
		"-r", filepath.Join(dir, "v.pid"), "-c", filepath.Join(dir, "c.pid"), "-b", filepath.Join(dir, "b.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := env.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed = true
		<-p.Done()
	}
	t.Cleanup(func() {
		if !killed {
			p.Stop(5 * time.Second)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // children that outlived it
		}
		if t.Failed() || os.Getenv("DEBUGKA") != "" {
			t.Logf("keepalived log:\n%s", log)
		}
	})
	return p, log, kill
}

// waitLog waits up to within for keepalived to log s.
func waitLog(t *testing.T, log *syncBuffer, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("keepalived did not log %q within %v", s, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeepalivedInterop runs keepalived's BFD process (Debian's keepalived is built with
// --enable-bfd) against a Manager, single hop and multihop (max_hops 5, port 4784): both
// sessions come Up and stay Up, and when keepalived is killed (SIGKILL: no AdminDown is sent)
// Sluice's session goes Down within the detection time, and a real server with BFD_CHECK
// goes down in the health scheduler.
func TestKeepalivedInterop(t *testing.T) {
	for _, maxHops := range []uint8{0, 5} {
		t.Run(fmt.Sprintf("max_hops %d", maxHops), func(t *testing.T) {
			env, ka, sl := pair(t)
			_, log, kill := startKeepalivedBFD(t, env, ka, fmt.Sprintf(
				"bfd_instance SLUICE {\n  neighbor_ip 10.7.0.2\n  source_ip 10.7.0.1\n  min_rx 100\n  min_tx 100\n  multiplier 3\n  max_hops %d\n}\n", maxHops))
			m, err := NewManager([]Instance{{Name: "KA", Neighbor: netip.MustParseAddr("10.7.0.1"), Source: netip.MustParseAddr("10.7.0.2"),
				MinRx: 100 * time.Millisecond, MinTx: 100 * time.Millisecond, Multiplier: 3, MaxHops: maxHops}})
			if err != nil {
				t.Fatal(err)
			}
			startManager(t, sl, m)
			waitState(t, m, "KA", Up, 15*time.Second)
			waitLog(t, log, "(SLUICE) Entering Up state", 5*time.Second)
			// Stay Up for a while: neither side times out at 100 ms intervals.
			for range 40 {
				time.Sleep(50 * time.Millisecond)
				if s, _ := m.State("KA"); s != Up {
					t.Fatalf("session fell to %s while keepalived runs", s)
				}
			}
			if strings.Contains(log.String(), "Entering Down state") {
				t.Fatalf("keepalived's session went Down while Sluice ran")
			}

			// A real server with BFD_CHECK follows the session through the health scheduler.
			events := make(chan health.Event, 8)
			sch := health.NewScheduler(events, health.WithSeed(1), health.WithLogger(slog.New(slog.DiscardHandler)))
			if err := sch.Update([]health.Target{{ID: "rs", InitiallyUp: true, Interval: 100 * time.Millisecond,
				Checkers: []health.Checker{health.BFDCheck{Name: "KA", Sessions: m}}}}); err != nil {
				t.Fatal(err)
			}
			schCtx, stopSch := context.WithCancel(context.Background())
			defer stopSch()
			go sch.Run(schCtx)

			kill()
			// Detection time: keepalived's multiplier 3 × max(our min_rx, its min_tx) = 300 ms
			// from its last packet.
			took := waitState(t, m, "KA", Down, 300*time.Millisecond+500*time.Millisecond)
			if took < 100*time.Millisecond {
				t.Errorf("session Down %v after the kill, sooner than possible: it was not Up", took)
			}
			t.Logf("session Down %v after keepalived was killed (detection time 300ms)", took)
			select {
			case ev := <-events:
				if ev.ID != "rs" || ev.Up || !errors.Is(ev.Err, health.ErrBFDDown) {
					t.Errorf("health event %+v, want rs down with ErrBFDDown", ev)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("the real server with BFD_CHECK did not go down")
			}
		})
	}
}

// TestKeepalivedSeesAdminDown stops a Manager whose session with keepalived is Up: keepalived
// learns at once (AdminDown), well before its detection time.
func TestKeepalivedSeesAdminDown(t *testing.T) {
	env, ka, sl := pair(t)
	_, log, _ := startKeepalivedBFD(t, env, ka,
		"bfd_instance SLUICE {\n  neighbor_ip 10.7.0.2\n  min_rx 1000\n  min_tx 1000\n  multiplier 10\n}\n")
	m, err := NewManager([]Instance{{Name: "KA", Neighbor: netip.MustParseAddr("10.7.0.1"),
		MinRx: time.Second, MinTx: time.Second, Multiplier: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sl.Do(m.Open); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	waitState(t, m, "KA", Up, 15*time.Second)
	waitLog(t, log, "(SLUICE) Entering Up state", 5*time.Second)
	cancel()
	<-done
	// keepalived's detection time is 10 s; AdminDown takes it Down at once.
	waitLog(t, log, "(SLUICE) Entering Down state", 3*time.Second)
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
