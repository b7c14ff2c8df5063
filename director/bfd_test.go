package director

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
)

func TestCheckersOfBFD(t *testing.T) {
	cfg, err := config.Parse("t.conf", []byte(`bfd_instance edge {
  neighbor_ip 10.0.0.1
}
virtual_server 192.0.2.10 80 {
  protocol TCP
  real_server 10.0.0.1 80 {
    BFD_CHECK {
      name edge
    }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := checksOfFirst(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []health.Checker{health.BFDCheck{Name: "edge", Sessions: bfdSessions}}
	if diff := cmp.Diff(want, cs, cmp.Comparer(func(a, b health.BFDStates) bool { return a == b })); diff != "" {
		t.Errorf("checkers (-want +got):\n%s", diff)
	}
	if got := bfdInstances(cfg); len(got) != 1 || got[0].Name != "edge" || got[0].Neighbor != netip.MustParseAddr("10.0.0.1") ||
		got[0].MinRx != config.DefaultBFDMinRx || got[0].Multiplier != config.DefaultBFDMultiplier {
		t.Errorf("bfdInstances = %+v", got)
	}
	// Before any session runs, a BFD_CHECK fails.
	if err := want[0].Check(t.Context()); err == nil {
		t.Error("BFD_CHECK passed with no session running")
	}
}

func checksOfFirst(cfg *config.Config) ([]health.Checker, error) {
	return checkersOf(cfg, cfg.VirtualServers[0].RealServers[0])
}

// TestAlphaFirstFailureNotifies checks keepalived's notify_down for an alpha server whose
// first check fails: the health scheduler marks that event FirstDown, and the director
// notifies without a change of state; the server stays out until it comes up.
func TestAlphaFirstFailureNotifies(t *testing.T) {
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: config.TCP, LBAlgo: "rr", LBKind: config.DR}
	b := config.RealServer{Addr: netip.MustParseAddr("10.0.0.2"), Port: 80, Weight: 1,
		Checkers: []config.Checker{{Kind: config.KindTCP, Alpha: true}}}
	vs.RealServers = []config.RealServer{b}
	cfg := &config.Config{VirtualServers: []config.VirtualServer{vs}}

	ts, err := targets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].InitiallyUp || !ts[0].NotifyFirstDown {
		t.Fatalf("alpha target %+v: want InitiallyUp false and NotifyFirstDown", ts)
	}

	h := &scriptedHealth{}
	n := &transitions{}
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, Notify: n,
		NewHealth: func(ev chan<- health.Event) HealthRunner { h.events = ev; return h }})
	waitFor(t, rec, "started", func(Snapshot) bool { return true })
	id := TargetID(vs, b)
	h.events <- health.Event{ID: id, Up: false, FirstDown: true}
	h.events <- health.Event{ID: id, Up: false} // no change: nothing
	h.events <- health.Event{ID: id, Up: true}
	want := []string{"real_server 10.0.0.2:80 up=false", "real_server 10.0.0.2:80 up=true"}
	deadline := time.Now().Add(5 * time.Second)
	for len(n.get()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, n.get()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}
