package control

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
)

// TestWriteListFWMarkAndSCTP checks firewall-mark and SCTP services in ipvsadm 1.31's layout:
// "FWM  5", "FWM  6 IPv6" (print_service_entry) and "SCTP  ADDR:PORT".
func TestWriteListFWMarkAndSCTP(t *testing.T) {
	rs := func(a string, port uint16) []RealServer {
		return []RealServer{{Address: netip.MustParseAddr(a), Port: port, Weight: 1, Forward: "Route", Healthy: true,
			Stats: &Counters{Conns: 2, InPkts: 10, InBytes: 600}}}
	}
	st := Status{Services: []Service{
		{Protocol: "FWM", FWMark: 5, VIP: netip.IPv4Unspecified(), Scheduler: "wlc", RealServers: rs("10.0.0.7", 0),
			Stats: &Counters{Conns: 2, InPkts: 10, InBytes: 600}},
		{Protocol: "FWM", FWMark: 6, VIP: netip.IPv6Unspecified(), Scheduler: "rr", Persistence: 300, RealServers: rs("2001:db8::7", 0)},
		{Protocol: "SCTP", VIP: netip.MustParseAddr("10.0.0.3"), Port: 3868, Scheduler: "rr", RealServers: rs("10.0.0.8", 3868)},
	}}
	for _, tc := range []struct {
		name string
		opts ListOptions
		want string
	}{
		{"plain", ListOptions{}, "" +
			"IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
			"FWM  5 wlc\n" +
			"  -> 10.0.0.7:0                   Route   1      0          0         \n" +
			"FWM  6 IPv6 rr persistent 300\n" +
			"  -> [2001:db8::7]:0              Route   1      0          0         \n" +
			"SCTP  10.0.0.3:3868 rr\n" +
			"  -> 10.0.0.8:3868                Route   1      0          0         \n"},
		{"stats", ListOptions{Stats: true}, "" +
			"IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
			"  -> RemoteAddress:Port\n" +
			"FWM  5                                   2       10        0      600        0\n" +
			"  -> 10.0.0.7:0                          2       10        0      600        0\n" +
			"FWM  6 IPv6                              0        0        0        0        0\n" +
			"  -> [2001:db8::7]:0                     2       10        0      600        0\n" +
			"SCTP  10.0.0.3:3868                      0        0        0        0        0\n" +
			"  -> 10.0.0.8:3868                       2       10        0      600        0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteList(&b, st, tc.opts); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("list (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProtocolName(t *testing.T) {
	for _, tc := range []struct {
		key  director.ServiceKey
		want string
	}{
		{director.FWMarkKey(5, false), "FWM"},
		{director.ServiceKey{VIP: netip.MustParseAddr("10.0.0.3"), Port: 3868, Proto: director.SCTP}, "SCTP"},
		{director.ServiceKey{VIP: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: director.TCP}, "TCP"},
	} {
		if got := protocolName(tc.key); got != tc.want {
			t.Errorf("protocolName(%v) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
