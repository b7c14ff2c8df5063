package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVRRPGroupKeywords checks that vrrp_mcast_group4/6, mcast_dst_ip and unicast_ttl, which
// the VRRP instances act on, are typed without a "not supported yet" warning, and that a
// group that is not a usable multicast address is an error at its position.
func TestVRRPGroupKeywords(t *testing.T) {
	src := `global_defs {
  vrrp_mcast_group4 224.0.0.19
  vrrp_mcast_group6 ff02::13
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  mcast_dst_ip 239.0.0.18
  unicast_ttl 64
  virtual_ipaddress {
    10.0.0.100
  }
}
`
	cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if w := warnStrings(cfg.Warnings); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	type groups struct {
		Group4, Group6, Dst netip.Addr
		TTL                 int
	}
	got := groups{cfg.Global.VRRPMcastGroup4, cfg.Global.VRRPMcastGroup6, cfg.VRRPInstances[0].McastDstIP, cfg.VRRPInstances[0].UnicastTTL}
	want := groups{netip.MustParseAddr("224.0.0.19"), netip.MustParseAddr("ff02::13"), netip.MustParseAddr("239.0.0.18"), 64}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("typed values (-want +got):\n%s", diff)
	}

	bad := []struct {
		name, global, instance, want string
	}{
		{"group4 unicast", "vrrp_mcast_group4 10.0.0.1", "", "t.conf:2:19: invalid vrrp_mcast_group4 10.0.0.1"},
		{"group6 site scope", "vrrp_mcast_group6 ff05::12", "", "t.conf:2:19: invalid vrrp_mcast_group6 ff05::12"},
		{"mcast_dst_ip unicast", "", "mcast_dst_ip 10.0.0.1", "t.conf:6:14: invalid mcast_dst_ip 10.0.0.1"},
		{"mcast_dst_ip IPv6 global", "", "mcast_dst_ip ff0e::12", "t.conf:6:14: invalid mcast_dst_ip ff0e::12"},
		{"unicast_ttl 0", "", "unicast_ttl 0", "t.conf:6:"},
		{"unicast_ttl 256", "", "unicast_ttl 256", "t.conf:6:"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			src := "global_defs {\n" + tt.global + "\n}\nvrrp_instance VI_1 {\ninterface eth0\n" + tt.instance +
				"\nvirtual_router_id 51\nvirtual_ipaddress {\n10.0.0.100\n}\n}\n"
			_, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parse = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
