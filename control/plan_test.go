package control

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/director"
)

// flowStats reports 7 flows on one real server, as a data plane counting flows would.
type flowStats struct{}

func (flowStats) TrafficStats() (director.TrafficStats, error) {
	k := director.ServiceKey{VIP: netip.MustParseAddr("10.0.0.9"), Port: 80, Proto: director.TCP}
	return director.TrafficStats{Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{
		k: {netip.MustParseAddrPort("10.0.1.9:80"): {ActiveConns: 5, InactConns: 2}},
	}}, nil
}

// TestPlanUsesConfigID checks that a plan reads the candidate file with the daemon's -i config
// id, as the reload it previews would: lines for another node must not show up as changes.
func TestPlanUsesConfigID(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keepalived.conf")
	conf := "@east virtual_server 10.0.0.1 80 {\n@east protocol TCP\n@east real_server 10.0.1.1 80 {\n@east }\n@east }\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id      string
		changes int
	}{{"east", 1}, {"west", 0}} {
		t.Run(tc.id, func(t *testing.T) {
			s := NewState(Status{}, flowStats{}, nil)
			s.SetConfig(&config.Config{})
			s.SetParseOptions(config.Options{ConfigID: tc.id})
			plan, err := s.Plan(file)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if len(plan.Changes) != tc.changes {
				t.Errorf("config id %s: plan = %v, want %d change(s)", tc.id, plan.Changes, tc.changes)
			}
			// The running configuration has no services, so no current flow stays.
			if want := (director.FlowShare{Moving: 7, Total: 7}); plan.Flows == nil || *plan.Flows != want {
				t.Errorf("flows = %v, want %v", plan.Flows, want)
			}
		})
	}
}
