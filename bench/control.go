package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
)

// controlCase is one control-plane timing: apply services x reals to an empty loader sized
// maxServices x maxBackends (0: the loader's defaults), apply it again, then take one real
// server of one service down.
type controlCase struct {
	services, reals          int
	scheduler                string
	maxServices, maxBackends uint32
}

// controlCases are the 10,000 services x 100 real servers (weighted round robin, whose
// tables have one entry per real server) and Maglev services, whose tables have 65,537 entries
// whatever the number of real servers. 10,000 Maglev services would need 10,000 tables of
// 512 KiB (65,537 entries of 8 bytes: array elements are rounded up to 8 bytes), 5 GiB of
// kernel memory, so the Maglev cases apply 1,000 services and time the rebuild of one table.
func controlCases(o Options) []controlCase {
	switch {
	case o.Smoke:
		return []controlCase{{services: 10, reals: 4, scheduler: "mh"}}
	case o.Quick:
		return []controlCase{
			{services: 1000, reals: 100, scheduler: "wrr", maxBackends: 1 << 17},
			{services: 1, reals: 100, scheduler: "mh"},
		}
	}
	return []controlCase{
		{services: 10000, reals: 100, scheduler: "wrr", maxServices: 16384, maxBackends: 1 << 20},
		{services: 1000, reals: 4, scheduler: "mh"},
		{services: 1, reals: 100, scheduler: "mh"},
	}
}

// controlSnapshot is services services of reals DR real servers each, of weight 1.
func controlSnapshot(services, reals int, scheduler string) director.Snapshot {
	var s director.Snapshot
	for i := range services {
		svc := director.Service{
			Key:       director.ServiceKey{VIP: netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), Port: 80, Proto: director.TCP},
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

// newSized loads Sluice's program unattached, with static next hops, sized for c.
func newSized(c controlCase) (*loader.Loader, error) {
	return loader.New(loader.Options{
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Resolver:    staticResolver{},
		NoAttach:    true,
		MaxServices: c.maxServices,
		MaxBackends: c.maxBackends,
	})
}

// controlPlane times Apply: a full snapshot onto an empty data path, the same snapshot again
// (nothing to write), and one real server of one service going down (for Maglev, one table
// rebuilt).
func controlPlane(ctx context.Context, o Options) ([]Result, error) {
	var out []Result
	for _, c := range controlCases(o) {
		rows, err := controlTimings(ctx, c)
		out = append(out, rows...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// controlTimings times the three applies of c.
func controlTimings(ctx context.Context, c controlCase) ([]Result, error) {
	var out []Result
	row := func(name string, d time.Duration, note string) {
		out = append(out, Result{Kind: "control", Scenario: name, Mode: "DR", Family: "ipv4", Cores: 1, Seconds: ptr(d.Seconds()), Note: note})
	}
	snap := controlSnapshot(c.services, c.reals, c.scheduler)
	l, err := newSized(c)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = l.Apply(ctx, snap)
	full := time.Since(start)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("apply %d services x %d real servers: %w", c.services, c.reals, err), l.Close())
	}
	start = time.Now()
	err = l.Apply(ctx, snap)
	again := time.Since(start)
	if err == nil {
		snap.Services[0].Backends[0].Up = false
		start = time.Now()
		err = l.Apply(ctx, snap)
	}
	down := time.Since(start)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("re-apply %d services x %d real servers: %w", c.services, c.reals, err)
	}
	name := fmt.Sprintf("control-apply-%dx%d-%s", c.services, c.reals, c.scheduler)
	row(name, full, "apply to an empty data path (static next hops, so map writes and table builds only)")
	row(name+"-unchanged", again, "apply the same snapshot again: nothing to write")
	if c.scheduler == "mh" {
		row(fmt.Sprintf("control-maglev-rebuild-1x%d", c.reals), down, "one real server of one Maglev service goes down: its table is rebuilt")
	} else {
		row(fmt.Sprintf("control-down-1x%d-%s", c.reals, c.scheduler), down, "one real server of one service goes down")
	}
	return out, nil
}
