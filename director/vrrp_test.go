package director

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

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
