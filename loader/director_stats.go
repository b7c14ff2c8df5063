package loader

import (
	"net/netip"
	"strings"

	"github.com/sluice-lb/sluice/director"
)

var _ director.StatsReader = (*Loader)(nil)

// TrafficStats implements director.StatsReader from the per-CPU counters and the flow tables
// (ConnCounts).
func (l *Loader) TrafficStats() (director.TrafficStats, error) {
	st, err := l.Stats()
	if err != nil {
		return director.TrafficStats{}, err
	}
	conns, err := l.ConnCounts()
	if err != nil {
		return director.TrafficStats{}, err
	}
	ts := director.TrafficStats{
		Services: make(map[director.ServiceKey]director.Counters, len(st.Services)),
		Backends: make(map[director.ServiceKey]map[netip.AddrPort]director.Counters, len(st.Backends)),
		Verdicts: make(map[string]uint64, len(st.Reasons)),
	}
	for r, n := range st.Reasons {
		ts.Verdicts[strings.ToLower(r.String())] = n
	}
	for k, c := range st.Services {
		sc := director.Counters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows}
		for _, fc := range conns[k] {
			sc.ActiveConns += uint64(fc.Active)
			sc.InactConns += uint64(fc.Inactive)
		}
		ts.Services[k] = sc
	}
	for k, bes := range st.Backends {
		m := make(map[netip.AddrPort]director.Counters, len(bes))
		for ap, c := range bes {
			fc := conns[k][ap]
			m[ap] = director.Counters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows,
				ActiveConns: uint64(fc.Active), InactConns: uint64(fc.Inactive)}
		}
		ts.Backends[k] = m
	}
	return ts, nil
}
