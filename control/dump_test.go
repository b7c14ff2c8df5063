package control

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWriteStatus: `sluice status` shows each vrrp_instance's counters (adverts sent and
// received, transitions, errors, drops by reason) and each real server's last health-check
// probe (checker, latency, error), the same numbers --json carries.
func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	st := Status{
		Version: "test", Config: "/etc/keepalived/keepalived.conf", Dataplane: "xdp",
		Started: now.Add(-time.Hour), Applied: now.Add(-2 * time.Second),
		VRRP: []VRRPInstance{
			{Name: "VI_1", State: "MASTER", Since: now.Add(-time.Minute), Priority: 150, EffectivePriority: 140,
				VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.3/32")},
				Stats: &VRRPStats{AdvertsSent: 300, AdvertsReceived: 2, Transitions: 2, Errors: 1,
					Dropped: map[string]uint64{"ttl": 1, "auth": 4, "vrid": 0}}},
			{Name: "VI_2", State: "BACKUP", Since: now.Add(-time.Minute), VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.4/32")},
				Master: netip.MustParseAddr("10.0.0.2"),
				Stats:  &VRRPStats{AdvertsReceived: 290, Transitions: 1}},
			{Name: "VI_3", State: "INIT", Since: now},
		},
		Services: []Service{{
			Protocol: "TCP", VIP: netip.MustParseAddr("10.0.0.3"), Port: 80, Scheduler: "rr",
			RealServers: []RealServer{
				{Address: netip.MustParseAddr("10.0.0.7"), Port: 80, Weight: 1, Forward: "Route", Healthy: true,
					Check: &Check{Checker: "HTTP_GET", Latency: 1234567 * time.Nanosecond, Passed: 9}},
				{Address: netip.MustParseAddr("10.0.0.8"), Port: 80, Weight: 1, Forward: "Route", Healthy: false,
					Check: &Check{Checker: `MISC_CHECK ["/bin/check"] [1s false 1 "nobody" ""]`, Latency: 3 * time.Second, Error: "exit status 1", Failed: 3}},
				{Address: netip.MustParseAddr("10.0.0.9"), Port: 80, Weight: 2, Forward: "Masq", Healthy: true},
			},
		}},
	}
	want := `sluice test, config /etc/keepalived/keepalived.conf, data plane xdp, up 1h0m0s
last applied 2s ago
vrrp_instance VI_1: MASTER since 1m0s ago, priority 150 (effective 140), VIPs [10.0.0.3/32]
  adverts sent 300, received 2; transitions 2; errors 1; dropped 5 (auth 4, ttl 1)
vrrp_instance VI_2: BACKUP since 1m0s ago, master 10.0.0.2, VIPs [10.0.0.4/32]
  adverts sent 0, received 290; transitions 1; errors 0; dropped 0
vrrp_instance VI_3: INIT since 0s ago, VIPs []

TCP 10.0.0.3:80 rr: 2 of 3 real servers healthy
  10.0.0.7:80                  Route   weight 1      healthy last check HTTP_GET 1.235ms
  10.0.0.8:80                  Route   weight 1      DOWN    last check MISC_CHECK 3s failed: exit status 1
  10.0.0.9:80                  Masq    weight 2      healthy
`
	var b strings.Builder
	WriteStatus(&b, st, now)
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("status text (-want +got):\n%s", diff)
	}
}
