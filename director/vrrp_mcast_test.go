package director

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
)

// TestVRRPConfigGroups maps the advert group and unicast_ttl: mcast_dst_ip wins over
// global_defs' vrrp_mcast_group4/6 (picked by the VIPs' family), unicast instances have no
// group, and a changed global group is a changed spec, so reload restarts the instance.
func TestVRRPConfigGroups(t *testing.T) {
	conf := func(global, instances string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("t.conf", []byte("global_defs {\n"+global+"\n}\n"+instances))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	inst := func(name, extra, vip string) string {
		return "vrrp_instance " + name + " {\ninterface eth0\nvirtual_router_id 51\nversion 3\n" + extra +
			"\nvirtual_ipaddress {\n" + vip + "\n}\n}\n"
	}
	const globals = "vrrp_mcast_group4 224.0.0.19\nvrrp_mcast_group6 ff02::13"
	cfg := conf(globals,
		inst("V4", "", "10.0.0.100")+
			inst("V6", "", "fd00::100")+
			inst("DST", "mcast_dst_ip 239.0.0.18", "10.0.0.101")+
			inst("UNI", "unicast_ttl 64\nunicast_src_ip 10.0.0.2\nunicast_peer {\n10.0.0.3\n}", "10.0.0.102"))
	type mapped struct {
		Group string
		TTL   int
	}
	want := map[string]mapped{
		"V4":  {"224.0.0.19", 0},
		"V6":  {"ff02::13", 0},
		"DST": {"239.0.0.18", 0},
		"UNI": {"invalid IP", 64},
	}
	got := map[string]mapped{}
	for _, in := range cfg.VRRPInstances {
		c, err := VRRPConfigFor(cfg, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[in.Name] = mapped{c.McastGroup.String(), c.UnicastTTL}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}

	// Defaults: no group set, the vrrp package picks 224.0.0.18.
	def := conf("", inst("V4", "", "10.0.0.100"))
	if c, _ := VRRPConfigFor(def, def.VRRPInstances[0], nil); c.McastGroup.IsValid() {
		t.Errorf("group %s without any configured, want none", c.McastGroup)
	}
	if sameSpec(specOf(def, def.VRRPInstances[0]), specOf(cfg, cfg.VRRPInstances[0])) {
		t.Errorf("a changed vrrp_mcast_group4 left the instance's spec unchanged: reload would not restart it")
	}
	own := conf("", inst("DST", "mcast_dst_ip 239.0.0.18", "10.0.0.101"))
	if !sameSpec(specOf(cfg, cfg.VRRPInstances[2]), specOf(own, own.VRRPInstances[0])) {
		t.Errorf("vrrp_mcast_group4 changed the spec of an instance with its own mcast_dst_ip")
	}
}

// TestVRRPConfigVMAC maps use_vmac (with and without a name) and vmac_xmit_base.
func TestVRRPConfigVMAC(t *testing.T) {
	cfg, err := config.Parse("t.conf", []byte(`vrrp_instance A {
interface eth0
virtual_router_id 9
use_vmac
virtual_ipaddress {
10.0.0.100
}
}
vrrp_instance B {
interface eth0
virtual_router_id 10
use_vmac vmac10
vmac_xmit_base
virtual_ipaddress {
10.0.0.101
}
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	type vmac struct {
		Use      bool
		Name     string
		XmitBase bool
	}
	var got []vmac
	for _, in := range cfg.VRRPInstances {
		c := VRRPConfig(in, nil)
		got = append(got, vmac{c.UseVMAC, c.VMACName, c.VMACXmitBase})
	}
	want := []vmac{{true, "", false}, {true, "vmac10", true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vmac (-want +got):\n%s", diff)
	}
}
