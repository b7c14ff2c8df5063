package director

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

// scriptedVRRP stands in for a vrrp.Instance so the director's handling of transitions can be
// tested without raw sockets; vrrp's own tests run the real protocol in namespaces and against
// keepalived, and test/e2e runs both together.
type scriptedVRRP struct {
	name    string
	events  chan vrrp.Event
	stopped atomic.Bool
}

func (s *scriptedVRRP) Run(ctx context.Context) error {
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond) // sending priority 0 and removing VIPs takes a moment
	s.stopped.Store(true)
	close(s.events)
	return nil
}

func (s *scriptedVRRP) Events() <-chan vrrp.Event { return s.events }

func (s *scriptedVRRP) become(st vrrp.State) { s.events <- vrrp.Event{Instance: s.name, State: st} }

func vrrpConfig(rs netip.AddrPort) *config.Config {
	cfg := testConfig(rs)
	// A second service whose VIP no vrrp_instance covers: always served.
	free := cfg.VirtualServers[0]
	free.Addr = netip.MustParseAddr("192.0.2.99")
	cfg.VirtualServers = append(cfg.VirtualServers, free)
	cfg.VRRPInstances = []config.VRRPInstance{{Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, Priority: 100,
		VirtualAddresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}}}
	return cfg
}

func vips(s Snapshot) []string {
	var out []string
	for _, svc := range s.Services {
		out = append(out, svc.Key.VIP.String())
	}
	return out
}

func TestVRRPOwnershipGatesForwarding(t *testing.T) {
	_, rs1 := listen(t)
	inst := &scriptedVRRP{name: "VI_1", events: make(chan vrrp.Event)}
	rec := newRecorder()
	var seen atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: vrrpConfig(rs1), Dataplane: rec, Refresh: time.Hour,
			NewVRRP: func(c config.VRRPInstance) (VRRPInstance, error) {
				if c.Name != "VI_1" {
					return nil, errors.New("unexpected instance " + c.Name)
				}
				return inst, nil
			},
			OnVRRP: func(vrrp.Event) { seen.Add(1) }})
	}()

	only := func(want ...string) func(Snapshot) bool {
		return func(s Snapshot) bool {
			got := vips(s)
			if len(got) != len(want) {
				return false
			}
			for i := range got {
				if got[i] != want[i] {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, rec, "only the uncovered VIP while BACKUP", only("192.0.2.99"))
	inst.become(vrrp.Master)
	waitFor(t, rec, "both VIPs as MASTER", only("192.0.2.10", "192.0.2.99"))
	inst.become(vrrp.Backup)
	waitFor(t, rec, "covered VIP dropped as BACKUP", only("192.0.2.99"))
	inst.become(vrrp.Fault)
	inst.become(vrrp.Master)
	waitFor(t, rec, "MASTER again", only("192.0.2.10", "192.0.2.99"))
	if seen.Load() != 4 {
		t.Errorf("OnVRRP saw %d transitions, want 4", seen.Load())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("director did not stop")
	}
	if !inst.stopped.Load() {
		t.Error("Run returned before the vrrp instance finished stopping (priority 0, VIPs removed)")
	}
}

func TestVRRPStartFailureIsReported(t *testing.T) {
	_, rs1 := listen(t)
	err := Run(context.Background(), Options{Config: vrrpConfig(rs1), Dataplane: newRecorder(),
		NewVRRP: func(config.VRRPInstance) (VRRPInstance, error) { return nil, errors.New("no interface eth0") }})
	if err == nil || err.Error() != "start vrrp_instance VI_1: no interface eth0" {
		t.Errorf("Run = %v", err)
	}
}

func TestVRRPConfigMapping(t *testing.T) {
	in := config.VRRPInstance{Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, Priority: 150, State: "MASTER",
		AdvertInt: time.Second, Version: 2, NoPreempt: true, PreemptDelay: 3 * time.Second,
		Auth:             &config.VRRPAuth{Type: "PASS", Pass: "secret12"},
		VirtualAddresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
		McastSrcIP:       netip.MustParseAddr("10.0.0.2"),
		UnicastPeers:     []config.UnicastPeer{{Addr: netip.MustParseAddr("10.0.0.3")}},
		GARPMasterDelay:  5 * time.Second, GARPMasterRepeat: 5}
	c := VRRPConfig(in, nil)
	if c.StartMaster {
		t.Error("state MASTER must not start as master (keepalived 2.x waits unless priority 255)")
	}
	if c.VRID != 51 || c.Priority != 150 || c.AuthType != "PASS" || c.AuthPass != "secret12" || !c.NoPreempt ||
		c.UnicastSrc != in.McastSrcIP || len(c.UnicastPeers) != 1 || c.UnicastPeers[0] != in.UnicastPeers[0].Addr ||
		c.PreemptDelay != 3*time.Second || c.GARPMasterRepeat != 5 || len(c.VIPs) != 1 {
		t.Errorf("mapped config %+v", c)
	}
}

func TestVRRPReloadAppliesInstanceChanges(t *testing.T) {
	_, rs1 := listen(t)
	cfg := vrrpConfig(rs1)
	vi := func(name string, vrid, prio int, vip string) config.VRRPInstance {
		return config.VRRPInstance{Name: name, Interface: "eth0", VirtualRouterID: vrid, Priority: prio,
			VirtualAddresses: []netip.Prefix{netip.MustParsePrefix(vip)}}
	}
	cfg.VRRPInstances = append(cfg.VRRPInstances, vi("VI_2", 52, 100, "192.0.2.20/32"), vi("VI_3", 53, 100, "192.0.2.30/32"))
	var mu sync.Mutex
	made := map[string][]*scriptedVRRP{}
	count := func(name string) int { mu.Lock(); defer mu.Unlock(); return len(made[name]) }
	get := func(name string, i int) *scriptedVRRP { mu.Lock(); defer mu.Unlock(); return made[name][i] }
	reload := make(chan *config.Config)
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour, Reload: reload,
		NewVRRP: func(c config.VRRPInstance) (VRRPInstance, error) {
			mu.Lock()
			defer mu.Unlock()
			in := &scriptedVRRP{name: c.Name, events: make(chan vrrp.Event, 4)}
			made[c.Name] = append(made[c.Name], in)
			return in, nil
		}})
	if !eventually(5*time.Second, func() bool { return count("VI_1") == 1 && count("VI_2") == 1 && count("VI_3") == 1 }) {
		t.Fatal("instances not started")
	}
	get("VI_1", 0).become(vrrp.Master)
	waitFor(t, rec, "VI_1's VIP as MASTER", func(s Snapshot) bool { return slices.Contains(vips(s), "192.0.2.10") })

	// VI_1 unchanged but written elsewhere in the file; VI_2 changed; VI_3 removed; VI_4 added.
	next := *cfg
	next.VRRPInstances = []config.VRRPInstance{cfg.VRRPInstances[0], vi("VI_2", 52, 150, "192.0.2.20/32"), vi("VI_4", 54, 100, "192.0.2.40/32")}
	next.VRRPInstances[0].Pos = config.Pos{File: "moved.conf", Line: 40}
	_, before := rec.last()
	reload <- &next
	if !eventually(5*time.Second, func() bool { return count("VI_2") == 2 && count("VI_4") == 1 }) {
		t.Fatalf("after reload: VI_2 made %d times, VI_4 %d times; want 2 and 1", count("VI_2"), count("VI_4"))
	}
	if count("VI_1") != 1 || get("VI_1", 0).stopped.Load() {
		t.Errorf("unchanged VI_1 was restarted or stopped (made %d times)", count("VI_1"))
	}
	if !get("VI_2", 0).stopped.Load() || get("VI_2", 1).stopped.Load() {
		t.Error("changed VI_2: the old instance must have stopped and the new one run")
	}
	if !get("VI_3", 0).stopped.Load() || count("VI_3") != 1 {
		t.Error("removed VI_3 must have stopped and not restarted")
	}
	// VI_1 kept its state: its VIP is still forwarded in the reload's snapshot.
	waitFor(t, rec, "a snapshot after the reload", func(Snapshot) bool { _, n := rec.last(); return n > before })
	if s, _ := rec.last(); !slices.Contains(vips(s), "192.0.2.10") {
		t.Errorf("VI_1's VIP no longer forwarded after a reload that did not change it: %v", vips(s))
	}
}

func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestVRRPConfigForResolvesTracking(t *testing.T) {
	w := -30
	cfg := &config.Config{
		Global: config.GlobalDefs{ScriptUser: "nobody"},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, Priority: 100,
			VirtualAddresses:     []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
			HigherPrioSendAdvert: true,
			TrackInterfaces:      []config.TrackInterface{{Name: "eth1", Weight: 10, Reverse: true}},
			TrackScripts:         []config.TrackRef{{Name: "chk"}, {Name: "chk2", Weight: &w}},
			TrackFiles:           []config.TrackRef{{Name: "f"}}}},
		VRRPScripts: []config.VRRPScript{
			{Name: "chk", Script: `/usr/bin/check "a b"`, Interval: 2 * time.Second, Weight: 5, Rise: 2, Fall: 3, InitFail: true},
			{Name: "chk2", Script: "/bin/true", Weight: 20, Reverse: true, User: "root"},
		},
		TrackFiles: []config.TrackFile{{Name: "f", File: "/run/prio", Weight: 2}},
		VRRPSyncGroups: []config.VRRPSyncGroup{{Name: "G", Group: []string{"VI_1"},
			TrackInterfaces: []config.TrackInterface{{Name: "eth2"}}}},
	}
	got, err := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HigherPrioSendAdvert {
		t.Error("higher_prio_send_advert not mapped")
	}
	wantIf := []vrrp.TrackInterface{{Name: "eth1", Weight: 10, Reverse: true}, {Name: "eth2"}}
	wantSc := []vrrp.TrackScript{
		{Name: "chk", Path: []string{"/usr/bin/check", "a b"}, Interval: 2 * time.Second, Weight: 5, Rise: 2, Fall: 3, InitFail: true, User: "nobody"},
		{Name: "chk2", Path: []string{"/bin/true"}, Weight: -30, User: "root"},
	}
	wantF := []vrrp.TrackFile{{Name: "f", Path: "/run/prio", Weight: 2}}
	if diff := cmp.Diff(wantIf, got.TrackInterfaces); diff != "" {
		t.Errorf("track_interface (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSc, got.TrackScripts); diff != "" {
		t.Errorf("track_script (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantF, got.TrackFiles); diff != "" {
		t.Errorf("track_file (-want +got):\n%s", diff)
	}
	cfg.VRRPScripts[0].Script = `/bin/x "unterminated`
	if _, err := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil); err == nil {
		t.Error("an unsplittable script must be refused")
	}
}

// settableVRRP is a scriptedVRRP whose priority and virtual addresses can change in place, as
// *vrrp.Instance's can.
type settableVRRP struct {
	*scriptedVRRP
	prio atomic.Int32
	mu   sync.Mutex
	vips []netip.Prefix
}

func (s *settableVRRP) SetPriority(p uint8) error { s.prio.Store(int32(p)); return nil }

func (s *settableVRRP) SetVIPs(vips, _ []netip.Prefix, _ map[netip.Addr]vrrp.VIPOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vips = slices.Clone(vips)
	return nil
}

func (s *settableVRRP) setVIPs() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.vips)
}

func TestVRRPReloadChangesPriorityInPlace(t *testing.T) {
	_, rs1 := listen(t)
	cfg := vrrpConfig(rs1)
	var mu sync.Mutex
	var made []*settableVRRP
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(made) }
	reload := make(chan *config.Config)
	startDirector(t, Options{Config: cfg, Dataplane: newRecorder(), Refresh: time.Hour, Reload: reload,
		NewVRRP: func(c config.VRRPInstance) (VRRPInstance, error) {
			mu.Lock()
			defer mu.Unlock()
			in := &settableVRRP{scriptedVRRP: &scriptedVRRP{name: c.Name, events: make(chan vrrp.Event, 4)}}
			made = append(made, in)
			return in, nil
		}})
	if !eventually(5*time.Second, func() bool { return count() == 1 }) {
		t.Fatal("instance not started")
	}
	first := made[0]

	// Only the priority changes: set in place, no restart.
	next := *cfg
	next.VRRPInstances = slices.Clone(cfg.VRRPInstances)
	next.VRRPInstances[0].Priority = 120
	reload <- &next
	if !eventually(5*time.Second, func() bool { return first.prio.Load() == 120 }) {
		t.Fatalf("priority not set in place: %d", first.prio.Load())
	}
	if count() != 1 || first.stopped.Load() {
		t.Errorf("a priority-only change restarted the instance (made %d)", count())
	}

	// The VIPs change too: set in place as well, as keepalived does.
	again := next
	again.VRRPInstances = slices.Clone(next.VRRPInstances)
	again.VRRPInstances[0].Priority = 130
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.11/32")}
	again.VRRPInstances[0].VirtualAddresses = vips
	reload <- &again
	if !eventually(5*time.Second, func() bool { return first.prio.Load() == 130 && slices.Equal(first.setVIPs(), vips) }) {
		t.Fatalf("priority %d, VIPs %v; want 130 and %v set in place", first.prio.Load(), first.setVIPs(), vips)
	}
	if count() != 1 || first.stopped.Load() {
		t.Errorf("a VIP change restarted the instance (made %d)", count())
	}

	// Anything else changes (advert_int): restart.
	third := again
	third.VRRPInstances = slices.Clone(again.VRRPInstances)
	third.VRRPInstances[0].AdvertInt = 3 * time.Second
	reload <- &third
	if !eventually(5*time.Second, func() bool { return count() == 2 }) {
		t.Fatal("an advert_int change did not restart the instance")
	}
	if !first.stopped.Load() || first.prio.Load() != 130 {
		t.Errorf("old instance stopped %v, priority %d; want stopped with 130", first.stopped.Load(), first.prio.Load())
	}
}

// TestVRRPConfigTrackBFD: track_bfd follows the bfd_instance's session, with the instance's
// weight unless track_bfd gives one, and reads the director's sessions; a bfd_instance
// flagged checker cannot be tracked (the parser warns and drops it).
func TestVRRPConfigTrackBFD(t *testing.T) {
	cfg, err := config.Parse("k.conf", []byte(`
bfd_instance b1 {
    neighbor_ip 192.0.2.2
    weight -20 reverse
}
bfd_instance b2 {
    neighbor_ip 192.0.2.3
}
bfd_instance b3 {
    neighbor_ip 192.0.2.4
    checker
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10
    }
    track_bfd {
        b1
        b2 weight 10
        b3
    }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cfg.Warnings, func(w config.Warning) bool { return strings.Contains(w.String(), "track_bfd b3 not found") }) {
		t.Errorf("warnings %v: want track_bfd b3 (a checker-only bfd_instance) dropped", cfg.Warnings)
	}
	got, err := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []vrrp.TrackBFD{{Name: "b1", Weight: -20, Reverse: true}, {Name: "b2", Weight: 10}}
	if diff := cmp.Diff(want, got.TrackBFDs); diff != "" {
		t.Errorf("track_bfd (-want +got):\n%s", diff)
	}
	if got.BFDState == nil {
		t.Fatal("no BFD sessions to follow")
	}
	if _, known := got.BFDState("b1"); known {
		t.Error("a session reported known while the director runs none")
	}
}
