package director

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
	"golang.org/x/sys/unix"
)

// keepalived.conf's virtual_ipaddress options, virtual_ipaddress_excluded, check_unicast_src
// (and the global vrrp_check_unicast_src), unicast_fault_no_peer and unicast_peer
// min_ttl/max_ttl reach the vrrp package, and only the options Sluice ignores are warned about.
func TestVRRPConfigUnicastAndVIPOptions(t *testing.T) {
	cfg, err := config.Parse("t.conf", []byte(`global_defs {
  vrrp_check_unicast_src
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority 100
  unicast_src_ip 10.0.0.2
  unicast_fault_no_peer
  unicast_peer {
    10.0.0.3 min_ttl 250
    10.0.0.4 min_ttl 60 max_ttl 64
    10.0.0.5
  }
  virtual_ipaddress {
    10.0.0.100
    10.1.0.1/24 brd 10.1.0.255 dev eth1 scope link label eth1:vip
    10.0.0.101/32 home noprefixroute no_track
  }
  virtual_ipaddress_excluded {
    192.0.2.5/32 dev lo scope host
    fd00::5/64
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	for _, w := range cfg.Warnings {
		warns = append(warns, w.Msg)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "virtual_ipaddress options (no_track) parsed, not supported") {
		t.Errorf("warnings %q, want one about no_track", warns)
	}
	c, err := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	type mapped struct {
		VIPs, ExcludedVIPs []netip.Prefix
		VIPOptions         map[netip.Addr]vrrp.VIPOptions
		UnicastPeers       []netip.Addr
		UnicastPeerTTL     map[netip.Addr]vrrp.TTLRange
		CheckUnicastSrc    bool
		UnicastFaultNoPeer bool
	}
	want := mapped{
		VIPs:         []netip.Prefix{p("10.0.0.100/32"), p("10.1.0.1/24"), p("10.0.0.101/32")},
		ExcludedVIPs: []netip.Prefix{p("192.0.2.5/32"), p("fd00::5/64")},
		VIPOptions: map[netip.Addr]vrrp.VIPOptions{
			a("10.1.0.1"):   {Broadcast: a("10.1.0.255"), Dev: "eth1", Scope: 253, Label: "eth1:vip"},
			a("192.0.2.5"):  {Dev: "lo", Scope: 254},
			a("10.0.0.101"): {Flags: unix.IFA_F_HOMEADDRESS | unix.IFA_F_NOPREFIXROUTE},
		},
		UnicastPeers:       []netip.Addr{a("10.0.0.3"), a("10.0.0.4"), a("10.0.0.5")},
		UnicastPeerTTL:     map[netip.Addr]vrrp.TTLRange{a("10.0.0.3"): {Min: 250, Max: 255}, a("10.0.0.4"): {Min: 60, Max: 64}},
		CheckUnicastSrc:    true,
		UnicastFaultNoPeer: true,
	}
	got := mapped{c.VIPs, c.ExcludedVIPs, c.VIPOptions, c.UnicastPeers, c.UnicastPeerTTL, c.CheckUnicastSrc, c.UnicastFaultNoPeer}
	opts := cmp.Options{
		cmp.Comparer(func(x, y netip.Addr) bool { return x == y }),
		cmp.Comparer(func(x, y netip.Prefix) bool { return x == y }),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("mapped (-want +got):\n%s", diff)
	}
	// Without the global flag, the instance's own check_unicast_src decides.
	cfg.Global.VRRPCheckUnicastSrc = false
	if c, _ := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil); c.CheckUnicastSrc {
		t.Error("CheckUnicastSrc set without check_unicast_src or vrrp_check_unicast_src")
	}
	cfg.VRRPInstances[0].CheckUnicastSrc = true
	if c, _ := VRRPConfigFor(cfg, cfg.VRRPInstances[0], nil); !c.CheckUnicastSrc {
		t.Error("check_unicast_src not mapped")
	}
}
