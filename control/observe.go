package control

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// Rate windows: a rates call uses the last traffic sample when it is between minRateWindow
// and maxRateWindow old, else it samples twice, minRateWindow apart.
const (
	minRateWindow = time.Second
	maxRateWindow = 10 * time.Second
)

// errRatesUnsupported answers a rates call to a daemon whose data plane keeps no counters.
var errRatesUnsupported = errors.New("this data plane keeps no traffic counters: no rates")

// trafficSample is a status read at a time, for rates.
type trafficSample struct {
	at time.Time
	st Status
}

// Health records a health event; pass it as director.Options.OnHealth.
func (s *State) Health(ev health.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.check(ev.ID)
	c.Reason = ""
	if !ev.Up && ev.Err != nil {
		c.Reason = ev.Err.Error()
	}
}

// Probe records a finished health-check probe; pass it as director.Options.OnProbe.
func (s *State) Probe(p health.Probe) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.clock()
	for _, id := range p.IDs {
		c := s.check(id)
		c.At, c.Latency, c.Checker, c.Error = at, p.Latency, p.Check, ""
		if p.Err != nil {
			c.Error = p.Err.Error()
			c.Failed++
		} else {
			c.Passed++
		}
	}
}

// check returns the record of health target id, creating it; s.mu must be held.
func (s *State) check(id string) *Check {
	if s.checks == nil {
		s.checks = map[string]*Check{}
	}
	c := s.checks[id]
	if c == nil {
		c = &Check{}
		s.checks[id] = c
	}
	return c
}

// checkCopies returns copies of the probe records by target ID.
func (s *State) checkCopies() map[string]*Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*Check, len(s.checks))
	for id, c := range s.checks {
		if c.Checker == "" && c.Reason == "" {
			continue
		}
		cc := *c
		out[id] = &cc
	}
	return out
}

// trackVRRPStats makes status report the counters stats reads for instance name.
func (s *State) trackVRRPStats(name string, stats func() vrrp.Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vrrpStats == nil {
		s.vrrpStats = map[string]func() vrrp.Stats{}
	}
	s.vrrpStats[name] = stats
}

// vrrpInstances is every vrrp_instance's state, in the order they last changed (tracked
// instances without a transition yet first, as INIT), with counters where tracked.
func (s *State) vrrpInstances() []VRRPInstance {
	s.mu.Lock()
	out := slices.Clone(s.vrrp)
	stats := make(map[string]func() vrrp.Stats, len(s.vrrpStats))
	for n, f := range s.vrrpStats {
		stats[n] = f
	}
	s.mu.Unlock()
	var fresh []VRRPInstance
	for name := range stats {
		if !slices.ContainsFunc(out, func(v VRRPInstance) bool { return v.Name == name }) {
			fresh = append(fresh, VRRPInstance{Name: name, State: vrrp.Initialize.String()})
		}
	}
	slices.SortFunc(fresh, func(a, b VRRPInstance) int { return compareStrings(a.Name, b.Name) })
	out = append(fresh, out...)
	for i := range out {
		f := stats[out[i].Name]
		if f == nil {
			continue
		}
		vs := f()
		out[i].Master = vs.Master
		out[i].Stats = &VRRPStats{AdvertsReceived: vs.Received, AdvertsSent: vs.Sent,
			Transitions: vs.Transitions, Errors: vs.Errors}
		if len(vs.Dropped) > 0 {
			out[i].Stats.Dropped = make(map[string]uint64, len(vs.Dropped))
			for r, n := range vs.Dropped {
				out[i].Stats.Dropped[string(r)] = n
			}
		}
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// StatusRates implements Handler: a status whose services and real servers carry per-second
// rates. Rates are the counters' change between two samples: the last one any status call
// read, when it is 1 to 10 seconds old, else two taken a second apart (the call then takes a
// second).
func (s *State) StatusRates(ctx context.Context) (Status, error) {
	if s.stats == nil {
		return Status{}, errRatesUnsupported
	}
	s.mu.Lock()
	prev := s.last
	s.mu.Unlock()
	if age := s.clock().Sub(prev.at); prev.at.IsZero() || age < minRateWindow || age > maxRateWindow {
		s.Status()
		s.mu.Lock()
		prev = s.last
		s.mu.Unlock()
		sleep := s.sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		if err := sleep(ctx, minRateWindow); err != nil {
			return Status{}, err
		}
	}
	cur := s.Status()
	s.mu.Lock()
	at := s.last.at
	s.mu.Unlock()
	setRates(&cur, prev.st, at.Sub(prev.at))
	return cur, nil
}

// setRates fills cur's rates from the counters' change since prev, dt earlier. A counter that
// went back (a real server removed and added again) counts as a rate of 0.
func setRates(cur *Status, prev Status, dt time.Duration) {
	type svcKey struct {
		proto string
		vip   netip.Addr
		port  uint16
	}
	type rsKey struct {
		svc svcKey
		ap  netip.AddrPort
	}
	before := map[svcKey]*Counters{}
	rsBefore := map[rsKey]*Counters{}
	for _, sv := range prev.Services {
		k := svcKey{sv.Protocol, sv.VIP, sv.Port}
		before[k] = sv.Stats
		for _, r := range sv.RealServers {
			rsBefore[rsKey{k, netip.AddrPortFrom(r.Address, r.Port)}] = r.Stats
		}
	}
	for i := range cur.Services {
		sv := &cur.Services[i]
		k := svcKey{sv.Protocol, sv.VIP, sv.Port}
		sv.Rates = rates(before[k], sv.Stats, dt)
		for j := range sv.RealServers {
			r := &sv.RealServers[j]
			r.Rates = rates(rsBefore[rsKey{k, netip.AddrPortFrom(r.Address, r.Port)}], r.Stats, dt)
		}
	}
}

func rates(a, b *Counters, dt time.Duration) *Rates {
	r := &Rates{Window: dt}
	if a == nil || b == nil || dt <= 0 {
		return r
	}
	per := func(x, y uint64) uint64 {
		if y < x {
			return 0
		}
		return uint64(math.Round(float64(y-x) / dt.Seconds()))
	}
	r.CPS = per(a.Conns, b.Conns)
	r.InPPS = per(a.InPkts, b.InPkts)
	r.OutPPS = per(a.OutPkts, b.OutPkts)
	r.InBPS = per(a.InBytes, b.InBytes)
	r.OutBPS = per(a.OutBytes, b.OutBytes)
	return r
}

func (s *State) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
