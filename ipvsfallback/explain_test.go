package ipvsfallback

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/director"
)

// connFixture is /proc/net/ip_vs_conn as kernel 6.x prints it (ip_vs_conn_seq_show): a TCP
// connection, a persistence template, an IPv6 connection and a line that must be skipped.
const connFixture = `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0000205 9C40 0A000064 0050 0A000007 0050 ESTABLISHED     899
IP  C0000206 0000 0A000064 0050 0A000008 0050 NONE            280
UDP 2001:0db8:0000:0000:0000:0000:0000:0005 0035 2001:0db8:0000:0000:0000:0000:0000:0100 0035 2001:0db8:0000:0000:0000:0000:0000:0007 0035 UDP             299
TCP garbage
`

func TestExplainFromConnectionTable(t *testing.T) {
	vip := netip.MustParseAddr("10.0.0.100")
	vip6 := netip.MustParseAddr("2001:db8::100")
	rs := func(s string) destKey { ap := netip.MustParseAddrPort(s); return destKey{ap.Addr(), ap.Port()} }
	d := &Dataplane{applied: map[director.ServiceKey]*service{
		{VIP: vip, Port: 80, Proto: director.TCP}: {sched: "wlc", dests: map[destKey]dest{
			rs("10.0.0.7:80"): {weight: 1, method: director.MethodDR},
			rs("10.0.0.8:80"): {weight: 2, method: director.MethodTUN},
		}},
		{VIP: vip6, Port: 53, Proto: director.UDP}: {sched: "rr", dests: map[destKey]dest{
			rs("[2001:db8::9]:53"): {weight: 1, method: director.MethodNAT},
		}},
	}}
	tests := []struct {
		name        string
		proto       director.Proto
		src, dst    string
		wantFlow    string
		wantVerdict string
		wantServer  string
		wantWhy     string
	}{
		{"connection", director.TCP, "192.0.2.5:40000", "10.0.0.100:80", director.FlowConfirmed, "forward", "10.0.0.7:80", "ESTABLISHED, expiring in 899s"},
		{"persistence template", director.TCP, "192.0.2.6:1234", "10.0.0.100:80", director.FlowNone, "forward", "10.0.0.8:80", "template names 10.0.0.8:80"},
		{"new flow", director.TCP, "192.0.2.9:1234", "10.0.0.100:80", director.FlowNone, "forward", "", "10.0.0.7:80 (weight 1), 10.0.0.8:80 (weight 2)"},
		{"connection to a removed server", director.UDP, "[2001:db8::5]:53", "[2001:db8::100]:53", director.FlowConfirmed, "drop", "", "no longer a real server"},
		{"not a VIP", director.TCP, "192.0.2.5:40000", "10.0.0.2:22", director.FlowNone, "pass", "", "not a VIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, err := d.explain(strings.NewReader(connFixture), tt.proto, netip.MustParseAddrPort(tt.src), netip.MustParseAddrPort(tt.dst))
			if err != nil {
				t.Fatal(err)
			}
			server := ""
			if ex.RealServer != nil {
				server = ex.RealServer.String()
			}
			if ex.Flow != tt.wantFlow || ex.Verdict != tt.wantVerdict || server != tt.wantServer ||
				!strings.Contains(strings.Join(ex.Why, "\n"), tt.wantWhy) {
				t.Errorf("explanation %+v, want flow %s, verdict %s to %q, saying %q", ex, tt.wantFlow, tt.wantVerdict, tt.wantServer, tt.wantWhy)
			}
		})
	}
}

// FuzzConnTable feeds arbitrary text as the kernel's connection table: never a panic, and a
// connection found has the addresses asked for.
func FuzzConnTable(f *testing.F) {
	f.Add(connFixture)
	f.Add("TCP FFFFFFFF FFFF 00000000 0000 0A000007 0050 X 1\n")
	src, dst := netip.MustParseAddrPort("192.0.2.5:40000"), netip.MustParseAddrPort("10.0.0.100:80")
	f.Fuzz(func(t *testing.T, table string) {
		conn, _, err := findConn(strings.NewReader(table), director.TCP, src, dst)
		if err == nil && conn != nil && !conn.dest.IsValid() {
			t.Errorf("connection with an invalid destination: %+v", conn)
		}
	})
}
