package director

import (
	"cmp"
	"maps"
	"math"
	"net/netip"
	"slices"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// Service-level health, as keepalived's check daemon does it (ipwrapper.c):
//
//   - A virtual server's live weight is the sum of the effective weights of its real servers
//     that are up. It starts with quorum when that sum is at least quorum + hysteresis.
//   - With quorum, it loses it when the sum drops below quorum - hysteresis, or to 0; without,
//     it gains it when the sum reaches quorum + hysteresis. Each change calls the Notifier's
//     Quorum (quorum_up / quorum_down).
//   - Without quorum, a sorry_server, if set, takes every new connection: the real servers
//     are drained (weight 0) and the sorry server added. Without a sorry_server the service
//     keeps whatever live real servers it has. With sorry_server_inhibit the sorry server
//     stays in the service at weight 0 while quorum holds.
//   - alpha: a real server with an alpha checker starts down until its first successful check.
//   - omega: on shutdown, notify_down for every live real server and quorum_down.
//   - ha_suspend: the checks of a virtual server are suspended while its VIP belongs to a
//     vrrp_instance that is not MASTER on this node.

// effectiveWeight is a real server's configured weight plus the dynamic delta its checkers
// report (misc_dynamic, FILE_CHECK), within IPVS's range; at 0 the server is drained, as
// keepalived does.
func effectiveWeight(rs config.RealServer, v verdict) int {
	return min(max(rs.Weight+v.weightDelta, 0), math.MaxInt32)
}

// hasAlpha reports whether one of the real server's checkers that run has alpha set, which
// makes the server start down (keepalived starts each alpha checker failed). BFD_CHECK does not
// run, so it cannot bring the server up and is not counted.
func hasAlpha(rs config.RealServer) bool {
	return slices.ContainsFunc(rs.Checkers, func(c config.Checker) bool { return c.Alpha && c.Kind != config.KindBFD })
}

// initialVerdict is a real server's state before its first check.
func initialVerdict(rs config.RealServer) verdict { return verdict{down: hasAlpha(rs)} }

// verdictOf returns the verdict of rs of vs, its initial state when there is none.
func verdictOf(up map[string]verdict, vs config.VirtualServer, rs config.RealServer) verdict {
	if v, ok := up[TargetID(vs, rs)]; ok {
		return v
	}
	return initialVerdict(rs)
}

// liveWeight is keepalived's weigh_live_realservers: the sum of the effective weights of the
// real servers of vs that are up.
func liveWeight(vs config.VirtualServer, up map[string]verdict) int64 {
	var sum int64
	for _, rs := range vs.RealServers {
		if v := verdictOf(up, vs, rs); !v.down {
			sum += int64(effectiveWeight(rs, v))
		}
	}
	return sum
}

// quorumOf is a virtual server's quorum, at least 1 as keepalived's parser enforces.
func quorumOf(vs config.VirtualServer) int64 { return int64(max(vs.Quorum, 1)) }

// initialQuorum is whether vs starts with quorum given the verdicts in up.
func initialQuorum(vs config.VirtualServer, up map[string]verdict) bool {
	return liveWeight(vs, up) >= quorumOf(vs)+int64(max(vs.Hysteresis, 0))
}

// nextQuorum applies keepalived's hysteresis to a live weight: the quorum state that follows
// state (true: with quorum) when the live weight is sum.
func nextQuorum(vs config.VirtualServer, state bool, sum int64) bool {
	h := int64(max(vs.Hysteresis, 0))
	if state {
		return sum > 0 && sum >= quorumOf(vs)-h
	}
	return sum >= quorumOf(vs)+h
}

// serviceKeyOf is the snapshot key of vs.
func serviceKeyOf(vs config.VirtualServer) ServiceKey {
	return ServiceKey{VIP: vs.Addr, Port: vs.Port, Proto: protocolOf(vs), FWMark: vs.FWMark}
}

// sorryBackend is the Backend of vs's sorry_server, and false when it has none. keepalived gives
// it weight 1; DR and TUN cannot change the port, so it gets the virtual server's, as does a
// sorry_server written without a port.
func sorryBackend(vs config.VirtualServer) (Backend, bool) {
	s := vs.SorryServer
	if s == nil || !s.Addr.IsValid() {
		return Backend{}, false
	}
	m := methodOf(cmp.Or(s.LBKind, vs.LBKind))
	port := s.Port
	if port == 0 || m != MethodNAT {
		port = vs.Port
	}
	return Backend{Addr: s.Addr, Port: port, Weight: 1, Method: m, Up: true}, true
}

// withQuorum returns the backends of vs given its quorum state (true: with quorum). Without
// quorum and with a sorry_server, the real servers are drained and the sorry server takes new
// connections; with quorum, an inhibited sorry server is kept at weight 0. A sorry server that
// is also a real server of vs (same address and port) is that backend, not a second one.
func withQuorum(vs config.VirtualServer, bs []Backend, quorum bool) []Backend {
	sorry, ok := sorryBackend(vs)
	if !ok {
		return bs
	}
	i := slices.IndexFunc(bs, func(b Backend) bool { return b.Addr == sorry.Addr && b.Port == sorry.Port })
	if quorum {
		if i < 0 && vs.SorryServer.Inhibit {
			sorry.Weight = 0
			bs = append(bs, sorry)
		}
		return bs
	}
	for j := range bs {
		// keepalived removes live real servers from the pool; Sluice drains them instead, so
		// that their established connections finish (IPVS would drop their packets).
		if bs[j].Up {
			bs[j].Weight = 0
		}
	}
	if i >= 0 {
		bs[i] = sorry
	} else {
		bs = append(bs, sorry)
	}
	return bs
}

// targetRef locates a target's real server in the configuration: cfg.VirtualServers[vs].RealServers[rs].
type targetRef struct{ vs, rs int }

// initQuorum sets the quorum state of every virtual server of the configuration: one that was
// there before keeps its state, which is then re-evaluated (its real servers or settings may
// have changed); a new one starts as keepalived starts it, and when it starts without quorum
// and has a sorry_server, quorum_down is notified ("Starting with quorum down").
func (d *state) initQuorum() {
	prev := d.quorum
	d.quorum = make(map[ServiceKey]bool, len(d.cfg.VirtualServers))
	d.byTarget = map[string]targetRef{}
	d.live = make([]int64, len(d.cfg.VirtualServers))
	d.counted = map[string]int64{}
	for i, vs := range d.cfg.VirtualServers {
		for j, rs := range vs.RealServers {
			id := TargetID(vs, rs)
			d.byTarget[id] = targetRef{i, j}
			d.count(id, i, j)
		}
		k := serviceKeyOf(vs)
		if q, ok := prev[k]; ok {
			d.quorum[k] = q
			d.evalQuorum(i)
			continue
		}
		q := d.live[i] >= quorumOf(vs)+int64(max(vs.Hysteresis, 0))
		d.quorum[k] = q
		if !q && vs.SorryServer != nil && vs.SorryServer.Addr.IsValid() {
			d.log.Warn("starting without quorum: the sorry server takes the service", "virtual_server", vsName(vs),
				"live_weight", d.live[i], "quorum", quorumOf(vs), "hysteresis", vs.Hysteresis)
			d.notify.Quorum(vs, false)
		}
	}
}

// count brings virtual server i's live weight up to date with the verdict of target id, its
// real server j. The live weight is kept as a running sum, so a burst of events costs one
// step each, not a pass over every real server.
func (d *state) count(id string, i, j int) {
	rs := d.cfg.VirtualServers[i].RealServers[j]
	v, ok := d.up[id]
	if !ok {
		v = initialVerdict(rs)
	}
	var w int64
	if !v.down {
		w = int64(effectiveWeight(rs, v))
	}
	d.live[i] += w - d.counted[id]
	d.counted[id] = w
}

// quorumAfter re-evaluates the quorum of the virtual server target id belongs to after its
// verdict changed.
func (d *state) quorumAfter(id string) {
	if r, ok := d.byTarget[id]; ok {
		d.count(id, r.vs, r.rs)
		d.evalQuorum(r.vs)
	}
}

// evalQuorum moves virtual server i's quorum state on with keepalived's hysteresis, logging and
// notifying a change.
func (d *state) evalQuorum(i int) {
	vs := d.cfg.VirtualServers[i]
	k := serviceKeyOf(vs)
	was := d.quorum[k]
	sum := d.live[i]
	now := nextQuorum(vs, was, sum)
	if now == was {
		return
	}
	d.quorum[k] = now
	_, sorry := sorryBackend(vs)
	if now {
		d.log.Info("virtual server gained quorum", "virtual_server", vsName(vs), "live_weight", sum,
			"quorum", quorumOf(vs), "hysteresis", vs.Hysteresis, "sorry_server_out", sorry)
	} else {
		d.log.Warn("virtual server lost quorum", "virtual_server", vsName(vs), "live_weight", sum,
			"quorum", quorumOf(vs), "hysteresis", vs.Hysteresis, "sorry_server_in", sorry)
	}
	d.notify.Quorum(vs, now)
}

// omega runs on shutdown: for each virtual server with omega, notify_down for every real
// server that is up, then quorum_down, as keepalived does on its way out.
func (d *state) omega() {
	for _, vs := range d.cfg.VirtualServers {
		if !vs.Omega {
			continue
		}
		for _, rs := range vs.RealServers {
			if !verdictOf(d.up, vs, rs).down {
				d.notify.RealServer(vs, rs, false)
			}
		}
		d.notify.Quorum(vs, false)
	}
}

// suspendedIDs returns the targets of cfg whose checks ha_suspend holds: those of virtual
// servers with ha_suspend whose VIP a vrrp_instance covers that is not MASTER here. A VIP no
// vrrp_instance covers is taken to be on this node, so its checks run.
func (d *state) suspendedIDs(cfg *config.Config) map[string]bool {
	held := map[string]bool{}
	var own map[netip.Addr]string
	for _, vs := range cfg.VirtualServers {
		if !vs.HASuspend {
			continue
		}
		if own == nil {
			own = owners(cfg)
		}
		if in, covered := own[vs.Addr]; !covered || d.vrrp[in] == vrrp.Master {
			continue
		}
		for _, rs := range vs.RealServers {
			held[TargetID(vs, rs)] = true
		}
	}
	return held
}

// running returns what the health runner should run of ts, cfg's targets: all but those
// ha_suspend holds. A target that was held and is no longer starts in the state it had when
// it was suspended, so the runner and the director agree on it; the others start as
// configured (or, if the runner has them, keep their state).
func (d *state) running(cfg *config.Config, ts []health.Target) ([]health.Target, map[string]bool) {
	held := d.suspendedIDs(cfg)
	if len(held) == 0 && len(d.held) == 0 {
		return slices.Clone(ts), held
	}
	run := make([]health.Target, 0, len(ts))
	for _, t := range ts {
		if held[t.ID] {
			continue
		}
		if v, ok := d.up[t.ID]; ok && d.held[t.ID] {
			t.InitiallyUp = !v.down
		}
		run = append(run, t)
	}
	return run, held
}

// setTargets records that the health runner now runs ts less held: it gives every new target
// its initial verdict, and a resumed one the weight the runner starts it with. Call it after
// reload, which forgets the verdicts of targets that are gone.
func (d *state) setTargets(ts []health.Target, held map[string]bool) {
	for _, t := range ts {
		v, ok := d.up[t.ID]
		switch {
		case !ok:
			d.up[t.ID] = verdict{down: !t.InitiallyUp}
		case d.held[t.ID] && !held[t.ID]:
			v.weightDelta = 0
			d.up[t.ID] = v
		}
	}
	if !maps.Equal(held, d.held) {
		d.log.Info("ha_suspend: checks run only for VIPs this node is MASTER of", "suspended_real_servers", len(held))
	}
	d.held = held
	d.targets = ts
}

// resumeChecks updates the health runner after a VRRP transition, which may suspend or resume
// the checks of ha_suspend virtual servers.
func (d *state) resumeChecks(hr HealthRunner) {
	if !slices.ContainsFunc(d.cfg.VirtualServers, func(vs config.VirtualServer) bool { return vs.HASuspend }) {
		return
	}
	run, held := d.running(d.cfg, d.targets)
	if maps.Equal(held, d.held) {
		return
	}
	if err := hr.Update(run); err != nil {
		d.log.Error("ha_suspend: health runner refused the update", "err", err)
		return
	}
	was := d.held
	d.setTargets(d.targets, held)
	for id := range was {
		if !held[id] {
			d.quorumAfter(id) // its weight delta was reset
		}
	}
}
