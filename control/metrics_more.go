package control

import (
	"slices"
)

// vrrpStates are the values of sluice_vrrp_state's state label.
var vrrpStates = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

// writeHealthMetrics writes the health-check families; they are left out until a probe ran.
func writeHealthMetrics(m *metricWriter, st Status) {
	var probed bool
	for _, s := range st.Services {
		for _, r := range s.RealServers {
			probed = probed || r.Check != nil && r.Check.Checker != ""
		}
	}
	if !probed {
		return
	}
	m.family("sluice_real_server_check_duration_seconds", "gauge", "How long the real server's last health-check probe took.")
	for _, s := range st.Services {
		for _, r := range s.RealServers {
			if r.Check != nil && r.Check.Checker != "" {
				m.sample("sluice_real_server_check_duration_seconds", rsLabels(s, r), r.Check.Latency.Seconds())
			}
		}
	}
	m.family("sluice_real_server_checks_total", "counter", "Health-check probes of the real server, by result (passed, failed).")
	for _, s := range st.Services {
		for _, r := range s.RealServers {
			if r.Check == nil || r.Check.Checker == "" {
				continue
			}
			l := rsLabels(s, r)
			m.sample("sluice_real_server_checks_total", l[:len(l)-1]+`,result="passed"}`, float64(r.Check.Passed))
			m.sample("sluice_real_server_checks_total", l[:len(l)-1]+`,result="failed"}`, float64(r.Check.Failed))
		}
	}
}

// writeVRRPMetrics writes the vrrp_instance families; they are left out without instances.
func writeVRRPMetrics(m *metricWriter, st Status) {
	if len(st.VRRP) == 0 {
		return
	}
	ins := slices.Clone(st.VRRP)
	slices.SortFunc(ins, func(a, b VRRPInstance) int { return compareStrings(a.Name, b.Name) })
	m.family("sluice_vrrp_state", "gauge", "1 for the vrrp_instance's current state (INIT, BACKUP, MASTER, FAULT), 0 for the others.")
	for _, in := range ins {
		for _, s := range vrrpStates {
			m.sample("sluice_vrrp_state", labels("instance", in.Name, "state", s), boolValue(in.State == s))
		}
	}
	counters := []struct {
		name, help string
		get        func(*VRRPStats) uint64
	}{
		{"sluice_vrrp_transitions_total", "State changes of the vrrp_instance.", func(s *VRRPStats) uint64 { return s.Transitions }},
		{"sluice_vrrp_adverts_sent_total", "VRRP adverts the vrrp_instance sent (one per destination).", func(s *VRRPStats) uint64 { return s.AdvertsSent }},
		{"sluice_vrrp_adverts_received_total", "VRRP adverts the vrrp_instance received that passed every check.", func(s *VRRPStats) uint64 { return s.AdvertsReceived }},
		{"sluice_vrrp_errors_total", "Failed advert sends, address changes and announcements of the vrrp_instance.", func(s *VRRPStats) uint64 { return s.Errors }},
	}
	for _, c := range counters {
		m.family(c.name, "counter", c.help)
		for _, in := range ins {
			if in.Stats != nil {
				m.sample(c.name, labels("instance", in.Name), float64(c.get(in.Stats)))
			}
		}
	}
	m.family("sluice_vrrp_dropped_total", "counter", "VRRP packets the vrrp_instance refused, by reason (ttl, auth, vrid, ...).")
	for _, in := range ins {
		if in.Stats == nil {
			continue
		}
		reasons := make([]string, 0, len(in.Stats.Dropped))
		for r := range in.Stats.Dropped {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		for _, r := range reasons {
			m.sample("sluice_vrrp_dropped_total", labels("instance", in.Name, "reason", r), float64(in.Stats.Dropped[r]))
		}
	}
}
