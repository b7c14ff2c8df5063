package control

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

func TestStatusShowsEffectivePriority(t *testing.T) {
	s := NewState(Status{}, nil, nil)
	s.SetConfig(&config.Config{VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 100}}})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}
	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Master, Prev: vrrp.Backup, At: t0, VIPs: vips, Priority: 100})
	// A track_script fails: the effective priority drops, the state and its age stay.
	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Master, Prev: vrrp.Master, At: t0.Add(time.Minute), VIPs: vips, Priority: 40})
	got := s.Status().VRRP
	want := []VRRPInstance{{Name: "VI_1", State: "MASTER", Since: t0, VIPs: vips, Priority: 100, EffectivePriority: 40}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("status VRRP (-want +got):\n%s", diff)
	}
}
