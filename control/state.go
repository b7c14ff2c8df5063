package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/vrrp"
)

// State is the daemon's side of the API: it keeps the last snapshot the data plane accepted and
// reads counters from the data plane when a client asks, so serving a call never waits for the
// director's loop.
type State struct {
	mu      sync.Mutex
	meta    Status // Version, Config, Started, Dataplane
	snap    director.Snapshot
	applied time.Time
	stats   director.StatsReader // nil when the data plane keeps no counters
	reload  func(context.Context) error
	cfg     *config.Config // the configuration running, for plans
	// parseOpts are the daemon's parse options (config id), for plans.
	parseOpts config.Options
	vrrp      []VRRPInstance
	// vrrpStats reads each tracked vrrp_instance's counters, by name.
	vrrpStats map[string]func() vrrp.Stats
	// checks is the last probe and health verdict per health target ID.
	checks map[string]*Check
	// last is the last traffic sample read, for rates.
	last trafficSample
	// now and sleep are the clock, replaced in tests.
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
	// ifaces lists the interfaces the data plane runs on (interfaces.go); nil when none.
	ifaces func() []Interface
}

// VRRP records a vrrp_instance transition; pass it as director.Options.OnVRRP.
func (s *State) VRRP(ev vrrp.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := VRRPInstance{Name: ev.Instance, State: ev.State.String(), Since: ev.At, VIPs: ev.VIPs,
		EffectivePriority: int(ev.Priority)}
	if s.cfg != nil {
		if i := slices.IndexFunc(s.cfg.VRRPInstances, func(c config.VRRPInstance) bool { return c.Name == ev.Instance }); i >= 0 {
			v.Priority = s.cfg.VRRPInstances[i].Priority
		}
	}
	if i := slices.IndexFunc(s.vrrp, func(o VRRPInstance) bool { return o.Name == ev.Instance }); i >= 0 && ev.State == ev.Prev {
		v.Since = s.vrrp[i].Since // a change of effective priority alone: the state's age stays
	}
	s.vrrp = slices.DeleteFunc(s.vrrp, func(v VRRPInstance) bool { return v.Name == ev.Instance })
	s.vrrp = append(s.vrrp, v)
}

// VRRPInstance makes status and metrics follow an instance the director created; pass it as
// director.Options.OnVRRPInstance. It is called again for an instance a reload restarts.
func (s *State) VRRPInstance(name string, in *vrrp.Instance) {
	s.trackVRRPStats(name, in.Stats)
}

// NewState returns a State describing a daemon; stats and reload may be nil.
func NewState(meta Status, stats director.StatsReader, reload func(context.Context) error) *State {
	return &State{meta: meta, stats: stats, reload: reload, now: time.Now, sleep: sleepCtx}
}

// SetConfig records the configuration the daemon runs; call it at start and after each reload.
func (s *State) SetConfig(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
}

// SetParseOptions records how the daemon parses its configuration (the -i config id), so that
// plan reads a candidate file the way a reload would.
func (s *State) SetParseOptions(opts config.Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parseOpts = opts
}

// Plan implements Handler: it parses file as a reload would, compares it with the running
// configuration, and counts the current flows the reload would move.
func (s *State) Plan(file string) (PlanResult, error) {
	if !filepath.IsAbs(file) {
		return PlanResult{}, fmt.Errorf("plan: %q is not an absolute path", file)
	}
	s.mu.Lock()
	cur, opts := s.cfg, s.parseOpts
	s.mu.Unlock()
	next, err := config.ParseFileWith(file, opts)
	if err != nil {
		return PlanResult{}, err
	}
	if cur == nil {
		return PlanResult{}, errors.New("plan: the daemon has no configuration yet")
	}
	res := PlanResult{Changes: director.Plan(cur, next)}
	if s.stats != nil {
		ts, err := s.stats.TrafficStats()
		if err != nil {
			return PlanResult{}, fmt.Errorf("plan: count current flows: %w", err)
		}
		conns := map[director.ServiceKey]map[netip.AddrPort]uint64{}
		for k, bs := range ts.Backends {
			m := map[netip.AddrPort]uint64{}
			for ap, c := range bs {
				m[ap] = c.ActiveConns + c.InactConns
			}
			conns[k] = m
		}
		fs := director.MovingFlows(next, conns)
		res.Flows = &fs
	}
	return res, nil
}

// Applied records a snapshot the data plane accepted; pass it as director.Options.Applied.
func (s *State) Applied(snap director.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = snap
	s.applied = time.Now()
}

// Status implements Handler.
func (s *State) Status() Status {
	s.mu.Lock()
	st := s.meta
	snap, applied := s.snap, s.applied
	s.mu.Unlock()

	st.Applied = applied
	st.VRRP = s.vrrpInstances()
	st.Interfaces = s.interfaces()
	var ts *director.TrafficStats
	if s.stats != nil {
		if t, err := s.stats.TrafficStats(); err == nil {
			ts = &t
		}
	}
	checks := s.checkCopies()
	if ts != nil {
		st.Verdicts = ts.Verdicts
	}
	st.Services = make([]Service, 0, len(snap.Services))
	for _, svc := range snap.Services {
		out := Service{
			Protocol:    protocolName(svc.Key),
			FWMark:      svc.Key.FWMark,
			VIP:         svc.Key.VIP,
			Port:        svc.Key.Port,
			Scheduler:   svc.Scheduler,
			Persistence: int(svc.Persistence / time.Second),
		}
		if ts != nil {
			out.Stats = fromDataplane(ts.Services[svc.Key])
		}
		for _, b := range svc.Backends {
			rs := RealServer{
				Address: b.Addr,
				Port:    b.Port,
				Weight:  b.Weight,
				Forward: forwardName(b.Method),
				Healthy: b.Up,
			}
			if ts != nil {
				rs.Stats = fromDataplane(ts.Backends[svc.Key][netip.AddrPortFrom(b.Addr, b.Port)])
			}
			rs.Check = checks[director.TargetIDOf(svc.Key, netip.AddrPortFrom(b.Addr, b.Port))]
			out.RealServers = append(out.RealServers, rs)
		}
		st.Services = append(st.Services, out)
	}
	if ts != nil {
		s.mu.Lock()
		s.last = trafficSample{at: s.clock(), st: st}
		s.mu.Unlock()
	}
	return st
}

// Reload implements Handler.
func (s *State) Reload(ctx context.Context) error {
	if s.reload == nil {
		return errReloadUnsupported
	}
	return s.reload(ctx)
}

// fromDataplane maps data-plane counters to ipvsadm's: Conns are new flows, In* what was forwarded.
// Out* stay 0 for DR, where replies bypass the director (ipvsadm shows the same).
func fromDataplane(c director.Counters) *Counters {
	return &Counters{Conns: c.NewFlows, InPkts: c.Packets, InBytes: c.Bytes, ActiveConns: c.ActiveConns, InactConns: c.InactConns}
}

func forwardName(m director.Method) string {
	switch m {
	case director.MethodNAT:
		return "Masq"
	case director.MethodTUN:
		return "Tunnel"
	}
	return "Route"
}
