package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// notes is a Notifier that records what it is told, one line per call.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, fmt.Sprintf(format, args...))
}

func (n *notes) VRRP(ev vrrp.Event) { n.add("vrrp %s %s", ev.Instance, ev.State) }
func (n *notes) RealServer(vs config.VirtualServer, rs config.RealServer, up bool) {
	n.add("real_server %s %s %s", vsName(vs), netip.AddrPortFrom(rs.Addr, rs.Port), upDown(up))
}
func (n *notes) Quorum(vs config.VirtualServer, up bool) {
	n.add("quorum %s %s", vsName(vs), upDown(up))
}

func (n *notes) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.lines
	n.lines = nil
	return out
}

// quorumNotes returns the quorum lines of what n was told since the last take.
func (n *notes) quorumNotes() []string {
	var out []string
	for _, l := range n.take() {
		if strings.HasPrefix(l, "quorum ") {
			out = append(out, l)
		}
	}
	return out
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// fakeHealth is a HealthRunner whose events the test sends, so that the director's reaction to
// each transition is checked exactly; the real Scheduler is tested in package health and, with
// the director, in TestAlphaComesUpAfterFirstCheck and test/e2e.
type fakeHealth struct {
	mu      sync.Mutex
	events  chan<- health.Event
	updates [][]health.Target
}

func (f *fakeHealth) new(events chan<- health.Event) HealthRunner {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = events
	return f
}

func (f *fakeHealth) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (f *fakeHealth) Update(ts []health.Target) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, slices.Clone(ts))
	return nil
}

func (f *fakeHealth) send(ev health.Event) {
	f.mu.Lock()
	ch := f.events
	f.mu.Unlock()
	ch <- ev
}

// last returns the targets of the last Update by ID.
func (f *fakeHealth) last() map[string]health.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]health.Target{}
	if len(f.updates) > 0 {
		for _, t := range f.updates[len(f.updates)-1] {
			m[t.ID] = t
		}
	}
	return m
}

// eligible reports whether backend ap of the service on vip:80 may get new connections.
func eligible(s Snapshot, vip, ap string) bool {
	for _, svc := range s.Services {
		if svc.Key.VIP == netip.MustParseAddr(vip) {
			for _, b := range svc.Backends {
				if netip.AddrPortFrom(b.Addr, b.Port) == netip.MustParseAddrPort(ap) {
					return b.Eligible()
				}
			}
		}
	}
	return false
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// quorumConfig is one virtual server 192.0.2.10:80 over 10.0.0.1.. with the given weights.
func quorumConfig(quorum, hysteresis int, weights ...int) *config.Config {
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: config.TCP,
		LBAlgo: "rr", LBKind: config.DR, DelayLoop: time.Second, Quorum: quorum, Hysteresis: hysteresis}
	a := netip.MustParseAddr("10.0.0.1")
	for _, w := range weights {
		vs.RealServers = append(vs.RealServers, config.RealServer{Addr: a, Port: 80, Weight: w,
			Checkers: []config.Checker{{Kind: config.KindTCP, DelayLoop: time.Second}}})
		a = a.Next()
	}
	return &config.Config{VirtualServers: []config.VirtualServer{vs}}
}

// newState builds the director's state for cfg as Run does before its first snapshot.
func newState(t *testing.T, cfg *config.Config, n Notifier) *state {
	t.Helper()
	d := &state{log: slog.New(slog.DiscardHandler), cfg: cfg, up: map[string]verdict{}, vrrp: map[string]vrrp.State{}, notify: n}
	ts, err := targets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, held := d.running(cfg, ts)
	d.setTargets(ts, held)
	d.initQuorum()
	return d
}

func rsID(cfg *config.Config, i int) string {
	return TargetID(cfg.VirtualServers[0], cfg.VirtualServers[0].RealServers[i])
}

func TestQuorumHysteresis(t *testing.T) {
	type step struct {
		rs     int
		up     bool
		delta  int
		quorum bool   // the quorum state after the event
		notify string // "up", "down" or "" for none
	}
	down := func(rs int, quorum bool, notify string) step { return step{rs: rs, quorum: quorum, notify: notify} }
	up := func(rs int, quorum bool, notify string) step {
		return step{rs: rs, up: true, quorum: quorum, notify: notify}
	}
	weight := func(rs, delta int, quorum bool, notify string) step {
		return step{rs: rs, up: true, delta: delta, quorum: quorum, notify: notify}
	}
	for _, tc := range []struct {
		name               string
		quorum, hysteresis int
		weights            []int
		steps              []step
	}{
		{
			// Lost below quorum-hysteresis = 2, regained at quorum+hysteresis = 4.
			name: "quorum 3 hysteresis 1", quorum: 3, hysteresis: 1, weights: []int{1, 1, 1, 1, 1},
			steps: []step{
				down(0, true, ""), down(1, true, ""), down(2, true, ""), // 2 >= 2: kept
				down(3, false, "down"),             // 1 < 2
				up(3, false, ""), up(2, false, ""), // 2, 3 < 4
				up(1, true, "up"),                    // 4 >= 4
				down(1, true, ""), down(2, true, ""), // 3, 2
				down(3, false, "down"), down(4, false, ""), // 1, 0
			},
		},
		{
			name: "no hysteresis", quorum: 2, weights: []int{1, 1, 1},
			steps: []step{
				down(0, true, ""), down(1, false, "down"), up(1, true, "up"), up(0, true, ""),
			},
		},
		{
			// quorum-hysteresis <= 0: only a live weight of 0 loses quorum.
			name: "hysteresis above quorum", quorum: 1, hysteresis: 2, weights: []int{1, 1, 1},
			steps: []step{
				down(0, true, ""), down(1, true, ""), down(2, false, "down"),
				up(0, false, ""), up(1, false, ""), up(2, true, "up"),
			},
		},
		{
			name: "quorum unset counts as 1", quorum: 0, weights: []int{1, 1},
			steps: []step{down(0, true, ""), down(1, false, "down"), up(0, true, "up")},
		},
		{
			name: "weights and dynamic weights count", quorum: 10, weights: []int{5, 5, 5},
			steps: []step{
				weight(0, -5, true, ""),      // 0+5+5 = 10
				weight(1, -5, false, "down"), // 0+0+5
				weight(1, 0, true, "up"),     // 0+5+5
				weight(2, 100, true, ""),
			},
		},
		{
			name: "a live server of weight 0 adds nothing", quorum: 1, weights: []int{0, 1},
			steps: []step{down(1, false, "down"), up(1, true, "up"), down(0, true, "")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quorumConfig(tc.quorum, tc.hysteresis, tc.weights...)
			n := &notes{}
			d := newState(t, cfg, n)
			vs := cfg.VirtualServers[0]
			if !d.quorum[serviceKeyOf(vs)] {
				t.Fatalf("starts without quorum with every server up")
			}
			if got := n.quorumNotes(); len(got) != 0 {
				t.Errorf("notified at start: %q", got)
			}
			for i, s := range tc.steps {
				d.health(health.Event{ID: rsID(cfg, s.rs), Up: s.up, WeightDelta: s.delta})
				if got := d.quorum[serviceKeyOf(vs)]; got != s.quorum {
					t.Errorf("step %d (rs %d up=%v delta %d): quorum %v, want %v (live weight %d)",
						i, s.rs, s.up, s.delta, got, s.quorum, liveWeight(vs, d.up))
				}
				var want []string
				if s.notify != "" {
					want = []string{"quorum TCP 192.0.2.10:80 " + s.notify}
				}
				if diff := cmp.Diff(want, n.quorumNotes()); diff != "" {
					t.Errorf("step %d notifications (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestSorryServer(t *testing.T) {
	rs1, rs2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	sorryIP := netip.MustParseAddr("10.0.9.9")
	live := Backend{Addr: rs1, Port: 80, Weight: 1, Method: MethodDR, Up: true}
	dead := Backend{Addr: rs2, Port: 80, Weight: 1, Method: MethodDR, Up: false}
	drained := live
	drained.Weight = 0
	sorry := Backend{Addr: sorryIP, Port: 80, Weight: 1, Method: MethodDR, Up: true}
	for _, tc := range []struct {
		name   string
		sorry  *config.SorryServer
		inhib2 bool // rs2 has inhibit_on_failure
		quorum bool
		want   []Backend
	}{
		{name: "no sorry server: live servers stay", quorum: false, want: []Backend{live, dead}},
		{name: "with quorum the sorry server is out", sorry: &config.SorryServer{Addr: sorryIP}, quorum: true,
			want: []Backend{live, dead}},
		{name: "without quorum the sorry server takes over", sorry: &config.SorryServer{Addr: sorryIP},
			want: []Backend{drained, dead, sorry}},
		{name: "inhibit keeps it at weight 0 with quorum", sorry: &config.SorryServer{Addr: sorryIP, Inhibit: true}, quorum: true,
			want: []Backend{live, dead, {Addr: sorryIP, Port: 80, Weight: 0, Method: MethodDR, Up: true}}},
		{name: "inhibit without quorum", sorry: &config.SorryServer{Addr: sorryIP, Inhibit: true},
			want: []Backend{drained, dead, sorry}},
		{name: "inhibited real server stays at weight 0", sorry: &config.SorryServer{Addr: sorryIP}, inhib2: true,
			want: []Backend{drained, {Addr: rs2, Port: 80, Weight: 0, Method: MethodDR, Up: true}, sorry}},
		{name: "sorry_server_lvs_method NAT keeps its port", sorry: &config.SorryServer{Addr: sorryIP, Port: 8080, LBKind: config.NAT},
			want: []Backend{drained, dead, {Addr: sorryIP, Port: 8080, Weight: 1, Method: MethodNAT, Up: true}}},
		{name: "DR cannot change the port", sorry: &config.SorryServer{Addr: sorryIP, Port: 8080},
			want: []Backend{drained, dead, sorry}},
		{name: "a sorry server that is a real server is one backend", sorry: &config.SorryServer{Addr: rs2, Port: 80},
			want: []Backend{drained, {Addr: rs2, Port: 80, Weight: 1, Method: MethodDR, Up: true}}},
		{name: "sorry_server_inhibit without sorry_server does nothing", sorry: &config.SorryServer{Inhibit: true},
			want: []Backend{live, dead}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quorumConfig(1, 0, 1, 1)
			vs := &cfg.VirtualServers[0]
			vs.SorryServer = tc.sorry
			vs.RealServers[1].InhibitOnFailure = tc.inhib2
			up := map[string]verdict{rsID(cfg, 1): {down: true}}
			s := buildSnapshot(cfg, up, map[ServiceKey]bool{serviceKeyOf(*vs): tc.quorum})
			if diff := cmp.Diff(tc.want, s.Services[0].Backends, addrCmp); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQuorumDrivesSorryServer runs the director: losing quorum puts the sorry server in and
// runs quorum_down; regaining it takes the sorry server out and runs quorum_up.
func TestQuorumDrivesSorryServer(t *testing.T) {
	cfg := quorumConfig(2, 0, 1, 1)
	sorryIP := netip.MustParseAddr("10.0.9.9")
	cfg.VirtualServers[0].SorryServer = &config.SorryServer{Addr: sorryIP}
	fh, n, rec := &fakeHealth{}, &notes{}, newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: fh.new, Notify: n})
	sorryIn := func(s Snapshot) bool { return upSet(s)[netip.AddrPortFrom(sorryIP, 80)] }

	s := waitFor(t, rec, "started", func(Snapshot) bool { return true })
	if sorryIn(s) || len(s.Services[0].Backends) != 2 {
		t.Fatalf("sorry server in the service with quorum: %+v", s)
	}
	fh.send(health.Event{ID: rsID(cfg, 0), Up: false})
	s = waitFor(t, rec, "sorry server in", sorryIn)
	if m := upSet(s); m[netip.MustParseAddrPort("10.0.0.2:80")] {
		t.Errorf("live real server still gets new connections without quorum: %v", m)
	}
	fh.send(health.Event{ID: rsID(cfg, 0), Up: true})
	s = waitFor(t, rec, "sorry server out", func(s Snapshot) bool { return !sorryIn(s) })
	if m := upSet(s); !m[netip.MustParseAddrPort("10.0.0.1:80")] || !m[netip.MustParseAddrPort("10.0.0.2:80")] {
		t.Errorf("real servers not restored with quorum: %v", m)
	}
	want := []string{"quorum TCP 192.0.2.10:80 down", "quorum TCP 192.0.2.10:80 up"}
	if diff := cmp.Diff(want, n.quorumNotes()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func alphaConfig() *config.Config {
	cfg := quorumConfig(1, 0, 1, 1)
	cfg.VirtualServers[0].RealServers[0].Checkers[0].Alpha = true
	cfg.VirtualServers[0].RealServers[0].Alpha = true
	return cfg
}

// TestAlphaStartsDown checks that a real server with an alpha checker is out of the service
// until a check says it is up, and that the health runner is told to start it down.
func TestAlphaStartsDown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sorry     bool
		wantNotes []string
	}{
		{name: "alpha"},
		// Every server in alpha: the service starts without quorum, so the sorry server takes
		// it and quorum_down runs, as keepalived's "Starting with quorum down".
		{name: "all alpha with a sorry server", sorry: true, wantNotes: []string{"quorum TCP 192.0.2.10:80 down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := alphaConfig()
			vs := &cfg.VirtualServers[0]
			if tc.sorry {
				vs.RealServers = vs.RealServers[:1]
				vs.SorryServer = &config.SorryServer{Addr: netip.MustParseAddr("10.0.9.9")}
			}
			fh, n, rec := &fakeHealth{}, &notes{}, newRecorder()
			startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: fh.new, Notify: n})
			s := waitFor(t, rec, "started", func(Snapshot) bool { return true })
			m := upSet(s)
			if m[netip.MustParseAddrPort("10.0.0.1:80")] {
				t.Errorf("alpha real server forwarded before its first check: %v", m)
			}
			if tc.sorry != m[netip.MustParseAddrPort("10.0.9.9:80")] {
				t.Errorf("sorry server forwarded = %v, want %v", !tc.sorry, tc.sorry)
			}
			ts := fh.last()
			if ts[rsID(cfg, 0)].InitiallyUp {
				t.Error("health runner told to start the alpha server up")
			}
			if !tc.sorry && (!ts[rsID(cfg, 1)].InitiallyUp || !m[netip.MustParseAddrPort("10.0.0.2:80")]) {
				t.Error("a real server without alpha did not start up")
			}
			if diff := cmp.Diff(tc.wantNotes, n.quorumNotes()); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			fh.send(health.Event{ID: rsID(cfg, 0), Up: true})
			waitFor(t, rec, "alpha server up after its first passing check", func(s Snapshot) bool {
				return upSet(s)[netip.MustParseAddrPort("10.0.0.1:80")]
			})
		})
	}
}

// TestAlphaComesUpAfterFirstCheck runs the real health scheduler against a real listener.
func TestAlphaComesUpAfterFirstCheck(t *testing.T) {
	_, rs1 := listen(t)
	cfg := testConfig(rs1)
	cfg.VirtualServers[0].RealServers[0].Checkers[0].Alpha = true
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour})
	waitFor(t, rec, "up after the first check", func(s Snapshot) bool { return upSet(s)[rs1] })
	rec.mu.Lock()
	first := rec.applied[0]
	rec.mu.Unlock()
	if upSet(first)[rs1] {
		t.Error("alpha real server forwarded in the first snapshot, before any check")
	}
}

// TestOmegaNotifiesOnShutdown checks that on shutdown a virtual server with omega reports each
// live real server down, then its quorum down; one without omega reports nothing.
func TestOmegaNotifiesOnShutdown(t *testing.T) {
	cfg := quorumConfig(1, 0, 1, 1)
	other := cfg.VirtualServers[0]
	other.Addr = netip.MustParseAddr("192.0.2.11")
	cfg.VirtualServers[0].Omega = true
	cfg.VirtualServers = append(cfg.VirtualServers, other)
	fh, n, rec := &fakeHealth{}, &notes{}, newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: fh.new, Notify: n})
	}()
	waitFor(t, rec, "started", func(Snapshot) bool { return true })
	fh.send(health.Event{ID: rsID(cfg, 1), Up: false})
	waitFor(t, rec, "rs 2 down", func(s Snapshot) bool { return !eligible(s, "192.0.2.10", "10.0.0.2:80") })
	if got := n.quorumNotes(); len(got) != 0 {
		t.Errorf("quorum notified before shutdown: %q", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("director did not stop")
	}
	want := []string{"real_server TCP 192.0.2.10:80 10.0.0.1:80 down", "quorum TCP 192.0.2.10:80 down"}
	if diff := cmp.Diff(want, n.take()); diff != "" {
		t.Errorf("notifications on shutdown (-want +got):\n%s", diff)
	}
}

// TestHASuspend checks that the checks of an ha_suspend virtual server run only while its VIP's
// vrrp_instance is MASTER here, and resume in the state they were suspended in.
func TestHASuspend(t *testing.T) {
	cfg := vrrpConfig(netip.MustParseAddrPort("10.0.0.1:80"))
	for i := range cfg.VirtualServers {
		cfg.VirtualServers[i].HASuspend = true
	}
	covered := TargetID(cfg.VirtualServers[0], cfg.VirtualServers[0].RealServers[0])
	free := TargetID(cfg.VirtualServers[1], cfg.VirtualServers[1].RealServers[0])
	inst := &scriptedVRRP{name: "VI_1", events: make(chan vrrp.Event)}
	fh, rec := &fakeHealth{}, newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: fh.new,
		NewVRRP: func(c config.VRRPInstance) (VRRPInstance, error) {
			if c.Name != "VI_1" {
				return nil, errors.New("unexpected instance " + c.Name)
			}
			return inst, nil
		}})
	served := func(vip string) func(Snapshot) bool {
		return func(s Snapshot) bool { return slices.Contains(vips(s), vip) }
	}
	checked := func(want map[string]bool) {
		t.Helper()
		got := map[string]bool{}
		for id, tg := range fh.last() {
			got[id] = tg.InitiallyUp
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("targets checked (ID: initially up) (-want +got):\n%s", diff)
		}
	}

	waitFor(t, rec, "started as BACKUP", served("192.0.2.99"))
	checked(map[string]bool{free: true})
	inst.become(vrrp.Master)
	waitFor(t, rec, "MASTER", served("192.0.2.10"))
	checked(map[string]bool{free: true, covered: true})
	fh.send(health.Event{ID: covered, Up: false})
	waitFor(t, rec, "real server down", func(s Snapshot) bool {
		return served("192.0.2.10")(s) && !eligible(s, "192.0.2.10", "10.0.0.1:80")
	})
	inst.become(vrrp.Backup)
	waitFor(t, rec, "BACKUP", func(s Snapshot) bool { return !served("192.0.2.10")(s) })
	checked(map[string]bool{free: true})
	inst.become(vrrp.Master)
	s := waitFor(t, rec, "MASTER again", served("192.0.2.10"))
	checked(map[string]bool{free: true, covered: false})
	for _, svc := range s.Services {
		if svc.Key.VIP == netip.MustParseAddr("192.0.2.10") && svc.Backends[0].Up {
			t.Errorf("real server came back up from suspension without a check: %+v", svc.Backends[0])
		}
	}
}

// TestWeightZeroFromConfigDrains checks that a real server configured with weight 0 is in the
// service but gets no new connections (keepalived adds it to IPVS with weight 0).
func TestWeightZeroFromConfigDrains(t *testing.T) {
	cfg := quorumConfig(1, 0, 0, 1)
	s := snapshotOf(cfg, nil)
	b := s.Services[0].Backends[0]
	if !b.Up || b.Weight != 0 || b.Eligible() {
		t.Errorf("weight 0 real server: %+v, want present (Up), weight 0, not eligible", b)
	}
}

// TestReloadKeepsQuorumState checks that a reload keeps a virtual server's quorum state (no
// second quorum_down, the sorry server stays) and re-evaluates it against the new settings.
func TestReloadKeepsQuorumState(t *testing.T) {
	sorryIP := netip.MustParseAddr("10.0.9.9")
	conf := func(quorum int) *config.Config {
		cfg := quorumConfig(quorum, 0, 1, 1)
		cfg.VirtualServers[0].SorryServer = &config.SorryServer{Addr: sorryIP}
		return cfg
	}
	cfg := conf(2)
	reload := make(chan *config.Config)
	fh, n, rec := &fakeHealth{}, &notes{}, newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, NewHealth: fh.new, Notify: n, Reload: reload})
	sorryIn := func(s Snapshot) bool { return upSet(s)[netip.AddrPortFrom(sorryIP, 80)] }
	waitFor(t, rec, "started", func(Snapshot) bool { return true })
	fh.send(health.Event{ID: rsID(cfg, 0), Up: false})
	waitFor(t, rec, "sorry server in", sorryIn)

	_, before := rec.last()
	reload <- conf(2)
	s := waitFor(t, rec, "reloaded", func(Snapshot) bool { _, n := rec.last(); return n > before })
	if !sorryIn(s) {
		t.Errorf("sorry server left on a reload that changed nothing: %+v", s)
	}
	reload <- conf(1) // the one live server is now enough
	waitFor(t, rec, "sorry server out under quorum 1", func(s Snapshot) bool { return !sorryIn(s) })
	want := []string{"quorum TCP 192.0.2.10:80 down", "quorum TCP 192.0.2.10:80 up"}
	if diff := cmp.Diff(want, n.quorumNotes()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

// BenchmarkQuorumAfterEvent measures the quorum bookkeeping of one health event in a virtual
// server of 10,000 real servers: a running sum, so a burst of N events costs N steps, not N
// passes over the real servers.
func BenchmarkQuorumAfterEvent(b *testing.B) {
	weights := make([]int, 10000)
	for i := range weights {
		weights[i] = 1
	}
	cfg := quorumConfig(5000, 100, weights...)
	d := &state{log: slog.New(slog.DiscardHandler), cfg: cfg, up: map[string]verdict{}, vrrp: map[string]vrrp.State{}, notify: nopNotifier{}}
	d.initQuorum()
	ids := make([]string, len(weights))
	for i := range ids {
		ids[i] = rsID(cfg, i)
	}
	b.ResetTimer()
	for i := range b.N {
		id := ids[i%len(ids)]
		d.up[id] = verdict{down: (i/len(ids))%2 == 0}
		d.quorumAfter(id)
	}
}

// TestInitialQuorum checks keepalived's start-up rule: a virtual server starts with quorum only
// at quorum + hysteresis, and one starting without it reports quorum_down only when a sorry
// server takes over.
func TestInitialQuorum(t *testing.T) {
	for _, tc := range []struct {
		name               string
		quorum, hysteresis int
		weights            []int
		sorry              bool
		want               bool
		wantNotes          []string
	}{
		{name: "at quorum+hysteresis", quorum: 3, hysteresis: 1, weights: []int{1, 1, 1, 1}, want: true},
		{name: "below quorum+hysteresis", quorum: 3, hysteresis: 1, weights: []int{1, 1, 1}},
		{name: "below, with a sorry server", quorum: 3, hysteresis: 1, weights: []int{1, 1, 1}, sorry: true,
			wantNotes: []string{"quorum TCP 192.0.2.10:80 down"}},
		{name: "no real servers, with a sorry server", sorry: true, wantNotes: []string{"quorum TCP 192.0.2.10:80 down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quorumConfig(tc.quorum, tc.hysteresis, tc.weights...)
			if tc.sorry {
				cfg.VirtualServers[0].SorryServer = &config.SorryServer{Addr: netip.MustParseAddr("10.0.9.9")}
			}
			n := &notes{}
			d := newState(t, cfg, n)
			if got := d.quorum[serviceKeyOf(cfg.VirtualServers[0])]; got != tc.want {
				t.Errorf("starts with quorum %v, want %v", got, tc.want)
			}
			if diff := cmp.Diff(tc.wantNotes, n.quorumNotes()); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			sorryIn := upSet(d.snapshot())[netip.MustParseAddrPort("10.0.9.9:80")]
			if sorryIn != (tc.sorry && !tc.want) {
				t.Errorf("sorry server forwarded = %v", sorryIn)
			}
		})
	}
}
