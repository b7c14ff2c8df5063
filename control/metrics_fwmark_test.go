package control

import (
	"net/netip"
	"strings"
	"testing"
)

// TestMetricsFWMarkServices checks that two firewall-mark services (same protocol, VIP and
// port: none) get distinct series, told apart by a fwmark label.
func TestMetricsFWMarkServices(t *testing.T) {
	any4 := netip.IPv4Unspecified()
	rs := []RealServer{{Address: netip.MustParseAddr("10.0.0.7"), Port: 80, Weight: 1, Forward: "Route", Healthy: true}}
	st := Status{Services: []Service{
		{Protocol: "FWM", FWMark: 5, VIP: any4, Scheduler: "rr", Stats: &Counters{Conns: 1}, RealServers: rs},
		{Protocol: "FWM", FWMark: 6, VIP: any4, Scheduler: "rr", Stats: &Counters{Conns: 2}, RealServers: rs},
	}}
	var b strings.Builder
	WriteMetrics(&b, st)
	seen := map[string]bool{}
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, _, _ := strings.Cut(line, " ")
		if seen[series] {
			t.Errorf("series %s written twice", series)
		}
		seen[series] = true
	}
	for _, want := range []string{`fwmark="5"`, `fwmark="6"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no series with %s:\n%s", want, b.String())
		}
	}
}
