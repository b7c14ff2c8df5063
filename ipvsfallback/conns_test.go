package ipvsfallback

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/director"
)

// TestTrafficStatsConns checks that TrafficStats carries IPVS's own ActiveConn/InActConn per
// real server and their sums per service, as sluice list shows them.
func TestTrafficStatsConns(t *testing.T) {
	f := preloaded()
	f.svcs[1].dests[0].ActiveConnections = 2
	f.svcs[1].dests[0].InactiveConnections = 1
	f.svcs[1].dests[1].ActiveConnections = 5
	f.svcs[1].dests[1].InactiveConnections = 4
	d := newTest(t, f)
	if err := d.Apply(context.Background(), snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 3, director.MethodDR, true)))); err != nil {
		t.Fatal(err)
	}
	got, err := d.TrafficStats()
	if err != nil {
		t.Fatalf("TrafficStats: %v", err)
	}
	want := director.TrafficStats{
		Services: map[director.ServiceKey]director.Counters{web: {ActiveConns: 7, InactConns: 5}},
		Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{web: {
			netip.AddrPortFrom(rs1, 80): {ActiveConns: 2, InactConns: 1},
			netip.AddrPortFrom(rs2, 80): {ActiveConns: 5, InactConns: 4},
		}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("TrafficStats (-want +got):\n%s", diff)
	}
}
