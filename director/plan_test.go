package director

import (
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
