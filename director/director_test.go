package director

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
)

// listen opens a TCP listener on loopback that accepts and closes connections, so TCP_CHECK
// passes against it; closing it makes the check fail with "connection refused".
func listen(t *testing.T) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
	return ln, netip.MustParseAddrPort(ln.Addr().String())
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func testConfig(rss ...netip.AddrPort) *config.Config {
	vs := config.VirtualServer{
		Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: config.TCP,
		LBAlgo: "rr", LBKind: config.DR, DelayLoop: 50 * time.Millisecond,
	}
	for _, ap := range rss {
		vs.RealServers = append(vs.RealServers, config.RealServer{
			Addr: ap.Addr(), Port: ap.Port(), Weight: 1,
			Checkers: []config.Checker{{Kind: config.KindTCP, ConnectTimeout: 200 * time.Millisecond,
				DelayBeforeRetry: 10 * time.Millisecond, DelayLoop: 50 * time.Millisecond}},
		})
	}
	return &config.Config{VirtualServers: []config.VirtualServer{vs}}
}

// waitFor polls the recorder until cond holds for the last applied snapshot.
func waitFor(t *testing.T, r *recorder, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if s, n := r.last(); n > 0 && cond(s) {
			return s
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			s, _ := r.last()
			t.Fatalf("timed out waiting for %s; last snapshot: %+v", what, s)
		}
	}
}

func upSet(s Snapshot) map[netip.AddrPort]bool {
	m := map[netip.AddrPort]bool{}
	for _, svc := range s.Services {
		for _, b := range svc.Backends {
			m[netip.AddrPortFrom(b.Addr, b.Port)] = b.Eligible()
		}
	}
	return m
}

func startDirector(t *testing.T, opts Options) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("director did not stop")
		}
	})
	return done
}

func TestSnapshotFromConfig(t *testing.T) {
	cfg := &config.Config{VirtualServers: []config.VirtualServer{
		{Addr: netip.MustParseAddr("192.0.2.20"), Port: 443, Protocol: config.TCP, LBAlgo: "mh", LBKind: config.DR,
			RealServers: []config.RealServer{
				{Addr: netip.MustParseAddr("10.0.0.3"), Port: 443, Weight: 2},
				{Addr: netip.MustParseAddr("10.0.0.2"), Port: 443, Weight: 1, LBKind: config.TUN},
			}},
		{Addr: netip.MustParseAddr("192.0.2.10"), Port: 53, Protocol: config.UDP, LBAlgo: "rr", LBKind: config.NAT},
	}}
	d := &state{cfg: cfg, up: map[string]verdict{}}
	want := Snapshot{Services: []Service{
		{Key: ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 53, Proto: UDP}, Scheduler: "rr"},
		{Key: ServiceKey{VIP: netip.MustParseAddr("192.0.2.20"), Port: 443, Proto: TCP}, Scheduler: "mh",
			Backends: []Backend{
				{Addr: netip.MustParseAddr("10.0.0.2"), Port: 443, Weight: 1, Method: MethodTUN, Up: true},
				{Addr: netip.MustParseAddr("10.0.0.3"), Port: 443, Weight: 2, Method: MethodDR, Up: true},
			}},
	}}
	if diff := cmp.Diff(want, d.snapshot(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func TestHealthDrivesSnapshot(t *testing.T) {
	ln1, rs1 := listen(t)
	_, rs2 := listen(t)
	rec := newRecorder()
	startDirector(t, Options{Config: testConfig(rs1, rs2), Dataplane: rec, Refresh: time.Hour})

	waitFor(t, rec, "both up", func(s Snapshot) bool { m := upSet(s); return m[rs1] && m[rs2] })
	ln1.Close()
	s := waitFor(t, rec, "rs1 down", func(s Snapshot) bool { return !upSet(s)[rs1] })
	if !upSet(s)[rs2] {
		t.Errorf("rs2 went down with rs1: %+v", s)
	}
	// The same address listens again: the server must come back.
	ln, err := net.Listen("tcp4", rs1.String())
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", rs1, err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
	waitFor(t, rec, "rs1 back up", func(s Snapshot) bool { return upSet(s)[rs1] })
}

func TestInhibitOnFailureKeepsServerWithWeightZero(t *testing.T) {
	ln1, rs1 := listen(t)
	cfg := testConfig(rs1)
	cfg.VirtualServers[0].RealServers[0].InhibitOnFailure = true
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour})
	waitFor(t, rec, "up", func(s Snapshot) bool { return upSet(s)[rs1] })
	ln1.Close()
	s := waitFor(t, rec, "weight 0", func(s Snapshot) bool { return !upSet(s)[rs1] })
	b := s.Services[0].Backends[0]
	if !b.Up || b.Weight != 0 {
		t.Errorf("inhibit_on_failure: got Up=%v Weight=%d, want Up=true Weight=0", b.Up, b.Weight)
	}
}

func TestInitialApplyFailureIsReturned(t *testing.T) {
	_, rs1 := listen(t)
	rec := newRecorder()
	rec.fail = errors.New("attach xdp to eth9: no such device")
	err := Run(context.Background(), Options{Config: testConfig(rs1), Dataplane: rec})
	if err == nil || !errors.Is(err, rec.fail) {
		t.Fatalf("Run = %v, want the apply error", err)
	}
}

func TestReloadKeepsHealthOfUnchangedServers(t *testing.T) {
	ln1, rs1 := listen(t)
	_, rs2 := listen(t)
	_, rs3 := listen(t)
	reload := make(chan *config.Config)
	rec := newRecorder()
	startDirector(t, Options{Config: testConfig(rs1, rs2), Dataplane: rec, Refresh: time.Hour, Reload: reload})
	ln1.Close()
	waitFor(t, rec, "rs1 down", func(s Snapshot) bool { return !upSet(s)[rs1] })

	reload <- testConfig(rs1, rs3)
	s := waitFor(t, rec, "reloaded", func(s Snapshot) bool { _, ok := upSet(s)[rs3]; return ok })
	m := upSet(s)
	if m[rs1] {
		t.Error("rs1 came back up across a reload although it still fails")
	}
	if _, ok := m[rs2]; ok {
		t.Error("rs2 is still present after it was removed from the configuration")
	}
}

func TestUnsupportedIsServedAroundButOtherErrorsAreNot(t *testing.T) {
	unsup := fmt.Errorf("service TCP 192.0.2.10:80 backend 10.0.0.2:80 NAT: %w", ErrUnsupported)
	hard := errors.New("attach xdp to eth0: device busy")
	for _, tc := range []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"unsupported", unsup, false},
		{"joined unsupported", errors.Join(unsup, fmt.Errorf("service x: %w", ErrUnsupported)), false},
		{"unsupported joined with a real failure", errors.Join(unsup, hard), true},
		{"real failure", hard, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rs1 := listen(t)
			rec := newRecorder()
			rec.fail = tc.err
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := Run(ctx, Options{Config: testConfig(rs1), Dataplane: rec})
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Errorf("Run = %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}

// weightChecker passes with the weight delta it is told to report, like a misc_dynamic script.
type weightChecker struct{ delta *atomic.Int64 }

func (c weightChecker) Check(ctx context.Context) error { _, err := c.CheckWeight(ctx); return err }
func (c weightChecker) CheckWeight(context.Context) (int, error) {
	return int(c.delta.Load()), nil
}
func (c weightChecker) String() string { return "MISC_CHECK test" }

func TestDynamicWeight(t *testing.T) {
	_, rs1 := listen(t)
	cfg := testConfig(rs1)
	cfg.VirtualServers[0].RealServers[0].Weight = 10
	var delta atomic.Int64
	delta.Store(5)
	rec := newRecorder()
	// The real scheduler runs a checker that reports a weight, as MISC_CHECK with misc_dynamic
	// does; the config mapping for MISC_CHECK is tested with the config package.
	newHealth := func(events chan<- health.Event) HealthRunner {
		return &withChecker{Scheduler: health.NewScheduler(events), c: weightChecker{&delta}}
	}
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: newHealth})
	weight := func(s Snapshot) int { return s.Services[0].Backends[0].Weight }
	waitFor(t, rec, "weight 15", func(s Snapshot) bool { return weight(s) == 15 })
	delta.Store(-20)
	s := waitFor(t, rec, "weight clamped to 0", func(s Snapshot) bool { return weight(s) == 0 })
	if !s.Services[0].Backends[0].Up {
		t.Error("a real server at dynamic weight 0 should be drained, not removed")
	}
}

// withChecker swaps every target's checkers for c.
type withChecker struct {
	*health.Scheduler
	c health.Checker
}

func (w *withChecker) Update(ts []health.Target) error {
	for i := range ts {
		ts[i].Checkers = []health.Checker{w.c}
	}
	return w.Scheduler.Update(ts)
}

// TestSnapshotCarriesPersistence checks that persistence, scheduler flags and lvs_timeouts reach
// the data plane.
func TestSnapshotCarriesPersistence(t *testing.T) {
	cfg := testConfig(netip.MustParseAddrPort("127.0.0.1:1"))
	cfg.VirtualServers[0].Persistence = 300 * time.Second
	cfg.VirtualServers[0].PersistenceGranularity = 24
	cfg.VirtualServers[0].SchedPort = true
	cfg.VirtualServers[0].SchedFallback = true
	cfg.Global.LVSTimeouts = config.LVSTimeouts{TCP: time.Hour, TCPFin: time.Minute, UDP: 10 * time.Second}
	s := snapshotOf(cfg, nil)
	if diff := cmp.Diff(Timeouts{TCP: time.Hour, TCPFin: time.Minute, UDP: 10 * time.Second}, s.Timeouts); diff != "" {
		t.Errorf("timeouts (-want +got):\n%s", diff)
	}
	got := s.Services[0]
	if got.Persistence != 300*time.Second || got.PersistencePrefix != 24 || got.SchedFlags != SchedPort|SchedFallback {
		t.Errorf("service: persistence %v /%d flags %b, want 5m0s /24 %b", got.Persistence, got.PersistencePrefix, got.SchedFlags, SchedPort|SchedFallback)
	}
}
