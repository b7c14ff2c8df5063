package loader

import (
	"fmt"
	"net/netip"

	"github.com/sluice-lb/sluice/director"
)

// Counters is traffic forwarded, summed over CPUs.
type Counters struct {
	Packets  uint64
	Bytes    uint64
	NewFlows uint64
}

// Stats is a reading of the data path's counters.
type Stats struct {
	// Reasons counts packets per verdict reason since the program was loaded.
	Reasons map[Reason]uint64
	// Services counts traffic forwarded per service since it was added.
	Services map[director.ServiceKey]Counters
	// Backends counts traffic forwarded per service and real server since it was added.
	Backends map[director.ServiceKey]map[netip.AddrPort]Counters
}

// Stats reads the counters of the reasons and of every service and backend applied.
func (l *Loader) Stats() (Stats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Stats{}, fmt.Errorf("read stats: loader is closed")
	}
	st := Stats{
		Reasons:  make(map[Reason]uint64, NumReasons),
		Services: make(map[director.ServiceKey]Counters, len(l.services)),
		Backends: make(map[director.ServiceKey]map[netip.AddrPort]Counters, len(l.services)),
	}
	var perCPU []uint64
	for r := Reason(0); r < NumReasons; r++ {
		if err := l.objs.ReasonStats.Lookup(uint32(r), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read stats of %s: %w", r, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		st.Reasons[r] = sum
	}
	for key, svc := range l.services {
		c, err := l.counters(l.objs.SvcStats.Lookup, svc.val.Id)
		if err != nil {
			return Stats{}, fmt.Errorf("read stats of %s: %w", key, err)
		}
		st.Services[key] = c
		bes := make(map[netip.AddrPort]Counters, len(svc.backends))
		for ap, b := range svc.backends {
			c, err := l.counters(l.objs.BeStats.Lookup, b.id)
			if err != nil {
				return Stats{}, fmt.Errorf("read stats of %s backend %s: %w", key, ap, err)
			}
			bes[ap] = c
		}
		st.Backends[key] = bes
	}
	return st, nil
}

func (l *Loader) counters(lookup func(key, val any) error, id uint32) (Counters, error) {
	var perCPU []lbLbStats
	if err := lookup(id, &perCPU); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, v := range perCPU {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
		c.NewFlows += v.NewFlows
	}
	return c, nil
}
