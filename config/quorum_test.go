package config

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestServiceHealthKeywords checks that the service-level health keywords the director acts on
// (quorum, hysteresis, quorum_up/down, sorry_server, alpha, omega, ha_suspend) are parsed into
// the typed configuration without a "not supported yet" warning.
func TestServiceHealthKeywords(t *testing.T) {
	src := vs(`quorum 3
hysteresis 1
quorum_up "/bin/up a"
quorum_down /bin/down
sorry_server 10.0.9.9 8080
sorry_server_inhibit
sorry_server_lvs_method NAT
alpha
omega
ha_suspend
real_server 10.0.1.1 80 {
  alpha
  TCP_CHECK {
    alpha
  }
}`)
	cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if w := warnStrings(cfg.Warnings); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	type health struct {
		Quorum, Hysteresis      int
		QuorumUp, QuorumDown    string
		Sorry                   SorryServer
		Alpha, Omega, HASuspend bool
		RSAlpha, CheckerAlpha   bool
	}
	v := cfg.VirtualServers[0]
	got := health{v.Quorum, v.Hysteresis, v.QuorumUp, v.QuorumDown, *v.SorryServer, v.Alpha, v.Omega, v.HASuspend,
		v.RealServers[0].Alpha, v.RealServers[0].Checkers[0].Alpha}
	want := health{Quorum: 3, Hysteresis: 1, QuorumUp: "/bin/up a", QuorumDown: "/bin/down",
		Sorry: SorryServer{Addr: netip.MustParseAddr("10.0.9.9"), Port: 8080, Inhibit: true, LBKind: NAT},
		Alpha: true, Omega: true, HASuspend: true, RSAlpha: true, CheckerAlpha: true}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("typed values (-want +got):\n%s", diff)
	}
}
