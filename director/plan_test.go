package director

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/config"
)

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const planOld = `
virtual_server 192.0.2.10 80 {
  delay_loop 3
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server 10.0.0.1 80 { weight 1
    TCP_CHECK { connect_timeout 2 } }
  real_server 10.0.0.2 80 { weight 1
    TCP_CHECK { connect_timeout 2 } }
  real_server 10.0.0.3 80 { weight 1 }
}
virtual_server 192.0.2.10 53 {
  lb_algo rr
  lb_kind DR
  protocol UDP
  real_server 10.0.0.1 53 { }
}
`

const planNew = `
virtual_server 192.0.2.10 80 {
  delay_loop 3
  lb_algo mh
  lb_kind DR
  protocol TCP
  real_server 10.0.0.1 80 { weight 1
    TCP_CHECK { connect_timeout 2 } }
  real_server 10.0.0.2 80 { weight 5
    TCP_CHECK {
      connect_timeout 2
      connect_port 8080
    }
  }
  real_server 10.0.0.4 80 { weight 2 }
}
virtual_server 192.0.2.10 443 {
  lb_algo mh
  lb_kind DR
  protocol TCP
  real_server 10.0.0.1 443 { }
}
`

func TestPlan(t *testing.T) {
	want := []Change{
		{Op: "-", Service: "UDP 192.0.2.10:53", Detail: "1 real servers"},
		{Op: "~", Service: "TCP 192.0.2.10:80", Detail: "lb_algo rr -> mh"},
		{Op: "~", Service: "TCP 192.0.2.10:80", RealServer: "10.0.0.2:80",
			Detail: "weight 1 -> 5, checks TCP_CHECK 10.0.0.2:80; every 3s, retry 1 after 1s -> TCP_CHECK 10.0.0.2:8080; every 3s, retry 1 after 1s"},
		{Op: "-", Service: "TCP 192.0.2.10:80", RealServer: "10.0.0.3:80"},
		{Op: "+", Service: "TCP 192.0.2.10:80", RealServer: "10.0.0.4:80", Detail: "weight 2, DR, no health check"},
		{Op: "+", Service: "TCP 192.0.2.10:443", Detail: "mh, 1 real servers"},
	}
	if diff := cmp.Diff(want, Plan(parse(t, planOld), parse(t, planNew))); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got := Plan(parse(t, planOld), parse(t, planOld)); len(got) != 0 {
		t.Errorf("plan between identical files: %v", got)
	}
}

func TestPlanVRRP(t *testing.T) {
	inst := func(name string, vrid, prio int, vip, extra string) string {
		return fmt.Sprintf("vrrp_instance %s {\ninterface eth0\nvirtual_router_id %d\npriority %d\n%s\nvirtual_ipaddress {\n%s\n}\n}\n",
			name, vrid, prio, extra, vip)
	}
	old := inst("VI_1", 1, 100, "192.0.2.1", "") + inst("VI_2", 2, 100, "192.0.2.2", "") + inst("VI_3", 3, 100, "192.0.2.3", "") +
		inst("VI_5", 5, 100, "192.0.2.5", "") + inst("VI_6", 6, 100, "192.0.2.6", "") + inst("VI_7", 7, 100, "192.0.2.7", "")
	next := inst("VI_1", 1, 150, "192.0.2.1", "") + inst("VI_2", 2, 100, "192.0.2.2", "advert_int 2") + inst("VI_4", 4, 90, "192.0.2.4", "") +
		inst("VI_5", 5, 100, "192.0.2.5\n192.0.2.55", "") + inst("VI_6", 6, 100, "2001:db8::6", "") + inst("VI_7", 7, 255, "192.0.2.7", "")
	want := []Change{
		{Op: "~", Service: "vrrp_instance VI_1", Detail: "priority 100 -> 150"},
		{Op: "~", Service: "vrrp_instance VI_2", Detail: "settings changed: the instance restarts (sends priority 0, then runs again)"},
		{Op: "+", Service: "vrrp_instance VI_4", Detail: "eth0 vrid 4 priority 90, vips [192.0.2.4/32]"},
		{Op: "~", Service: "vrrp_instance VI_5", Detail: "vips [192.0.2.5/32] -> [192.0.2.5/32 192.0.2.55/32]"},
		{Op: "~", Service: "vrrp_instance VI_6", Detail: "vips [192.0.2.6/32] -> [2001:db8::6/128], settings changed: the instance restarts (sends priority 0, then runs again)"},
		{Op: "~", Service: "vrrp_instance VI_7", Detail: "priority 100 -> 255, settings changed: the instance restarts (sends priority 0, then runs again)"},
		{Op: "-", Service: "vrrp_instance VI_3", Detail: "stops: sends priority 0 and releases its VIPs"},
	}
	if diff := cmp.Diff(want, Plan(parse(t, old), parse(t, next))); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestMovingFlows(t *testing.T) {
	next := parse(t, planNew)
	web := ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: TCP}
	dns := ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 53, Proto: UDP}
	conns := map[ServiceKey]map[netip.AddrPort]uint64{
		web: {
			netip.MustParseAddrPort("10.0.0.2:80"): 30, // stays (weight changes)
			netip.MustParseAddrPort("10.0.0.3:80"): 10, // removed: its flows move
		},
		dns: {netip.MustParseAddrPort("10.0.0.9:53"): 5}, // service removed
	}
	if diff := cmp.Diff(FlowShare{Moving: 15, Total: 45}, MovingFlows(next, conns)); diff != "" {
		t.Errorf("MovingFlows (-want +got):\n%s", diff)
	}
}

// TestPlanGroupChecks checks that plan reports a changed health check of a real server of a
// virtual_server_group service, as of any other.
func TestPlanGroupChecks(t *testing.T) {
	conf := func(port int) string {
		return fmt.Sprintf(`
virtual_server_group WEB {
  192.0.2.10 80
  192.0.2.11 80
}
virtual_server group WEB {
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server 10.0.0.1 80 {
    TCP_CHECK { connect_port %d }
  }
}
`, port)
	}
	got := Plan(parse(t, conf(80)), parse(t, conf(8080)))
	var services []string
	for _, c := range got {
		services = append(services, c.Service)
		if c.Op != "~" || c.RealServer != "10.0.0.1:80" || !strings.Contains(c.Detail, "checks TCP_CHECK 10.0.0.1:80;") ||
			!strings.Contains(c.Detail, "-> TCP_CHECK 10.0.0.1:8080;") {
			t.Errorf("plan of a group's changed check: %v", c)
		}
	}
	// The real server serves both entries of the group.
	if diff := cmp.Diff([]string{"TCP 192.0.2.10:80", "TCP 192.0.2.11:80"}, services); diff != "" {
		t.Errorf("services whose real server's check changes (-want +got):\n%s", diff)
	}
}
