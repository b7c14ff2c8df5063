package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/director"
)

// The data path holds at most 1024 services and 4096 real servers in all (MAX_SERVICES and
// MAX_BACKENDS in bpf/consts.h), so the 10,000 services x 100 real servers cannot be
// applied; the control-plane timings fill the maps to their limits instead.

// controlCase is one control-plane timing: apply services x reals to an empty loader.
type controlCase struct {
	services, reals int
	scheduler       string
}

func controlCases(o Options) []controlCase {
	if o.Smoke {
		return []controlCase{{services: 10, reals: 4, scheduler: "mh"}}
	}
	return []controlCase{
		{services: 1000, reals: 4, scheduler: "mh"},
		{services: 40, reals: 100, scheduler: "mh"},
	}
}

// controlSnapshot is services services of reals DR real servers each.
func controlSnapshot(services, reals int, scheduler string) director.Snapshot {
	var s director.Snapshot
	for i := range services {
		svc := director.Service{
			Key:       director.ServiceKey{VIP: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Port: 80, Proto: director.TCP},
			Scheduler: scheduler,
		}
		for j := range reals {
			svc.Backends = append(svc.Backends, director.Backend{
				Addr: netip.AddrFrom4([4]byte{10, 200 + byte(j>>8), byte(j), byte(i%250 + 1)}), Port: 80,
				Weight: 1, Method: director.MethodDR, Up: true,
			})
		}
		s.Services = append(s.Services, svc)
	}
	return s
}

// controlPlane times Apply: a full snapshot onto an empty data path, the same snapshot again
// (nothing to write), and one real server of a Maglev service going down (one table rebuilt).
func controlPlane(ctx context.Context, o Options) ([]Result, error) {
	var out []Result
	row := func(name string, d time.Duration, note string) {
		out = append(out, Result{Kind: "control", Scenario: name, Mode: "DR", Family: "ipv4", Cores: 1, Seconds: ptr(d.Seconds()), Note: note})
	}
	for _, c := range controlCases(o) {
		snap := controlSnapshot(c.services, c.reals, c.scheduler)
		l, err := newUnattached()
		if err != nil {
			return out, err
		}
		start := time.Now()
		err = l.Apply(ctx, snap)
		full := time.Since(start)
		if err != nil {
			return out, errors.Join(fmt.Errorf("apply %d services x %d real servers: %w", c.services, c.reals, err), l.Close())
		}
		start = time.Now()
		err = l.Apply(ctx, snap)
		again := time.Since(start)
		if err == nil {
			snap.Services[0].Backends[0].Up = false
			start = time.Now()
			err = l.Apply(ctx, snap)
		}
		rebuild := time.Since(start)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return out, fmt.Errorf("re-apply %d services x %d real servers: %w", c.services, c.reals, err)
		}
		name := fmt.Sprintf("control-apply-%dx%d", c.services, c.reals)
		row(name, full, "apply to an empty data path (static next hops, so map writes and table builds only)")
		row(name+"-unchanged", again, "apply the same snapshot again: nothing to write")
		row(fmt.Sprintf("control-maglev-rebuild-1x%d", c.reals), rebuild, "one real server of one Maglev service goes down")
	}
	return out, nil
}
