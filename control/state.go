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
	vrrp    []VRRPInstance
}

// VRRP records a vrrp_instance transition; pass it as director.Options.OnVRRP.
func (s *State) VRRP(ev vrrp.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vrrp = slices.DeleteFunc(s.vrrp, func(v VRRPInstance) bool { return v.Name == ev.Instance })
	s.vrrp = append(s.vrrp, VRRPInstance{Name: ev.Instance, State: ev.State.String(), Since: ev.At, VIPs: ev.VIPs})
}

// NewState returns a State describing a daemon; stats and reload may be nil.
func NewState(meta Status, stats director.StatsReader, reload func(context.Context) error) *State {
	return &State{meta: meta, stats: stats, reload: reload}
}

// SetConfig records the configuration the daemon runs; call it at start and after each reload.
func (s *State) SetConfig(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
}

// Plan implements Handler: it parses file and compares it with the running configuration.
func (s *State) Plan(file string) ([]director.Change, error) {
	if !filepath.IsAbs(file) {
		return nil, fmt.Errorf("plan: %q is not an absolute path", file)
	}
	next, err := config.ParseFile(file)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	cur := s.cfg
	s.mu.Unlock()
	if cur == nil {
		return nil, errors.New("plan: the daemon has no configuration yet")
	}
	return director.Plan(cur, next), nil
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
	s.mu.Lock()
	st.VRRP = slices.Clone(s.vrrp)
	s.mu.Unlock()
	var ts *director.TrafficStats
	if s.stats != nil {
		if t, err := s.stats.TrafficStats(); err == nil {
			ts = &t
		}
	}
	if ts != nil {
		st.Verdicts = ts.Verdicts
	}
	st.Services = make([]Service, 0, len(snap.Services))
	for _, svc := range snap.Services {
		out := Service{
			Protocol:  svc.Key.Proto.String(),
			VIP:       svc.Key.VIP,
			Port:      svc.Key.Port,
			Scheduler: svc.Scheduler,
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
			out.RealServers = append(out.RealServers, rs)
		}
		st.Services = append(st.Services, out)
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
	return &Counters{Conns: c.NewFlows, InPkts: c.Packets, InBytes: c.Bytes}
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
