package director

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// transitions is a Notifier that records what it is told.
type transitions struct {
	mu    sync.Mutex
	lines []string
}

func (n *transitions) add(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, fmt.Sprintf(format, args...))
}

func (n *transitions) VRRP(ev vrrp.Event) { n.add("vrrp %s %s", ev.Instance, ev.State) }
func (n *transitions) RealServer(vs config.VirtualServer, rs config.RealServer, up bool) {
	n.add("real_server %s up=%v", netip.AddrPortFrom(rs.Addr, rs.Port), up)
}
func (n *transitions) Quorum(config.VirtualServer, bool) {}

func (n *transitions) get() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.lines...)
}

// scriptedHealth is a HealthRunner whose events the test sends.
type scriptedHealth struct{ events chan<- health.Event }

func (h *scriptedHealth) Run(ctx context.Context) error   { <-ctx.Done(); return nil }
func (h *scriptedHealth) Update(ts []health.Target) error { return nil }

// TestNotifyRealServerTransitions checks the director reports up/down transitions only: not a
// weight change, not the initial state, and a server starting down (alpha) coming up.
func TestNotifyRealServerTransitions(t *testing.T) {
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: config.TCP, LBAlgo: "rr", LBKind: config.DR}
	a := config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1}
	b := config.RealServer{Addr: netip.MustParseAddr("10.0.0.2"), Port: 80, Weight: 1,
		Checkers: []config.Checker{{Kind: config.KindTCP, Alpha: true}}}
	vs.RealServers = []config.RealServer{a, b}
	cfg := &config.Config{VirtualServers: []config.VirtualServer{vs}}
	h := &scriptedHealth{}
	n := &transitions{}
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, Notify: n,
		NewHealth: func(ev chan<- health.Event) HealthRunner { h.events = ev; return h }})
	waitFor(t, rec, "started", func(Snapshot) bool { return true })
	idA, idB := TargetID(vs, a), TargetID(vs, b)
	for _, ev := range []health.Event{
		{ID: idA, Up: true, WeightDelta: 3}, // weight change from the initial up state
		{ID: idB, Up: true},                 // alpha: starts down, comes up
		{ID: idA, Up: false},
		{ID: idA, Up: false}, // repeated
		{ID: idA, Up: true},
	} {
		h.events <- ev
	}
	want := []string{"real_server 10.0.0.2:80 up=true", "real_server 10.0.0.1:80 up=false", "real_server 10.0.0.1:80 up=true"}
	deadline := time.Now().Add(5 * time.Second)
	for len(n.get()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, n.get()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}
