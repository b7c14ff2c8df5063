// Package director owns Sluice's state. One goroutine takes the configuration, health transitions
// (and, later, VRRP transitions), builds the complete desired Snapshot and hands it to a Dataplane,
// which applies only what changed. Nothing else writes forwarding state.
package director

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// DefaultRefresh is how often an unchanged snapshot is re-applied so the data plane can refresh
// what it derives from the system (neighbour MAC addresses, interfaces).
const DefaultRefresh = 5 * time.Second

// HealthRunner runs health checks and reports transitions; *health.Scheduler implements it.
type HealthRunner interface {
	Run(ctx context.Context) error
	Update(targets []health.Target) error
}

// Options configures Run. Config and Dataplane are required.
type Options struct {
	Config    *config.Config
	Dataplane Dataplane
	Logger    *slog.Logger
	// Refresh is the re-apply period; zero means DefaultRefresh.
	Refresh time.Duration
	// NewHealth builds the health runner that reports on events; nil means health.NewScheduler.
	NewHealth func(events chan<- health.Event) HealthRunner
	// Reload delivers new, already validated configurations (SIGHUP).
	Reload <-chan *config.Config
	// Applied, when set, receives every snapshot after it was applied successfully (tests, status).
	Applied func(Snapshot)
	// NewVRRP creates the instance for a vrrp_instance; nil means vrrp.New in the calling
	// thread's network namespace.
	NewVRRP func(config.VRRPInstance) (VRRPInstance, error)
	// OnVRRP, when set, receives every VRRP transition (status).
	OnVRRP func(vrrp.Event)
	// Notify, when set, is told about VRRP, real server and quorum transitions (scripts,
	// FIFOs, e-mail alerts).
	Notify Notifier
}

// Run owns the forwarding state until ctx is cancelled. It returns an error only if the first
// Apply fails: the daemon should not claim to run when it cannot forward. Later failures are
// logged and retried on the next refresh. Run does not close the Dataplane.
func Run(ctx context.Context, opts Options) error {
	if opts.Config == nil || opts.Dataplane == nil {
		return errors.New("run director: config and dataplane are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	refresh := opts.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	events := make(chan health.Event, 256)
	var hr HealthRunner
	if opts.NewHealth != nil {
		hr = opts.NewHealth(events)
	} else {
		hr = health.NewScheduler(events, health.WithLogger(log))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go hr.Run(ctx)

	d := &state{log: log, cfg: opts.Config, up: map[string]verdict{}, vrrp: map[string]vrrp.State{},
		notify: cmp.Or[Notifier](opts.Notify, nopNotifier{})}
	d.warnUnserved()
	ts, err := targets(d.cfg)
	if err != nil {
		return fmt.Errorf("start health checks: %w", err)
	}
	if err := hr.Update(ts); err != nil {
		return fmt.Errorf("start health checks: %w", err)
	}

	snap := d.snapshot()
	if err := d.apply(ctx, opts.Dataplane, snap); err != nil {
		return fmt.Errorf("apply initial snapshot: %w", err)
	}
	if opts.Applied != nil {
		opts.Applied(snap)
	}
	log.Info("forwarding", "services", len(snap.Services))

	newVRRP := opts.NewVRRP
	if newVRRP == nil {
		newVRRP = func(c config.VRRPInstance) (VRRPInstance, error) { return vrrp.New(VRRPConfig(c, log)) }
	}
	vg, err := startVRRP(ctx, d.cfg, newVRRP, log)
	if err != nil {
		return err
	}
	// On the way out, instances send priority 0 and remove their VIPs; wait for that before
	// the caller tears the data plane down.
	defer vg.wait(log)
	defer cancel()

	tick := time.NewTicker(refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			d.health(ev)
			// Coalesce a burst of transitions into one apply.
			for drained := false; !drained; {
				select {
				case ev := <-events:
					d.health(ev)
				default:
					drained = true
				}
			}
		case ev := <-vg.events:
			d.vrrpEvent(ev)
			if opts.OnVRRP != nil {
				opts.OnVRRP(ev)
			}
		case cfg := <-opts.Reload:
			if vg.changed(cfg) {
				log.Warn("vrrp_instance changes take effect at the next restart; the running instances keep their configuration")
				c := *cfg
				c.VRRPInstances = d.cfg.VRRPInstances
				cfg = &c
			}
			ts, err := targets(cfg)
			if err == nil {
				err = hr.Update(ts)
			}
			if err != nil {
				log.Error("reload refused: the running configuration stays", "err", err)
				continue
			}
			d.reload(cfg)
		case <-tick.C:
		}
		snap = d.snapshot()
		if err := d.apply(ctx, opts.Dataplane, snap); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error("apply snapshot failed; retrying on next refresh", "err", err)
			continue
		}
		if opts.Applied != nil {
			opts.Applied(snap)
		}
	}
}

// state is the director's view of the world; only Run's goroutine touches it.
type state struct {
	log *slog.Logger
	cfg *config.Config
	// up holds the health verdict per target ID; a missing ID means the initial state.
	up map[string]verdict
	// unsupported is the last ErrUnsupported report, so it is logged once per change.
	unsupported string
	// vrrp is each vrrp_instance's state; a VIP an instance covers is forwarded only while
	// that instance is MASTER.
	vrrp map[string]vrrp.State
	// notify is told about transitions; never nil.
	notify Notifier
}

func (d *state) vrrpEvent(ev vrrp.Event) {
	d.vrrp[ev.Instance] = ev.State
	d.log.Info("vrrp instance changed state; updating the VIPs it owns", "vrrp_instance", ev.Instance,
		"from", ev.Prev, "to", ev.State, "vips", ev.VIPs)
}

// apply hands the snapshot to the data plane. What the data plane reports as unsupported is
// logged when it changes and is not an error: the rest of the snapshot is being served.
func (d *state) apply(ctx context.Context, dp Dataplane, s Snapshot) error {
	err := dp.Apply(ctx, s)
	if err == nil {
		d.unsupported = ""
		return nil
	}
	if !onlyUnsupported(err) {
		return err
	}
	if msg := err.Error(); msg != d.unsupported {
		d.unsupported = msg
		d.log.Warn("data plane cannot serve part of the configuration; serving the rest", "err", err)
	}
	return nil
}

func (d *state) health(ev health.Event) {
	v := verdict{down: !ev.Up, weightDelta: ev.WeightDelta}
	prev, known := d.up[ev.ID]
	if known && prev == v {
		return
	}
	d.up[ev.ID] = v
	switch {
	case !ev.Up:
		d.log.Warn("real server down", "server", ev.ID, "err", ev.Err)
	case known && !prev.down:
		d.log.Info("real server weight changed", "server", ev.ID, "weight_delta", ev.WeightDelta)
	default:
		d.log.Info("real server up", "server", ev.ID, "weight_delta", ev.WeightDelta)
	}
}

func (d *state) reload(cfg *config.Config) {
	d.cfg = cfg
	// Keep verdicts of targets that still exist; forget the rest.
	keep := map[string]verdict{}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			if v, ok := d.up[TargetID(vs, rs)]; ok {
				keep[TargetID(vs, rs)] = v
			}
		}
	}
	d.up = keep
	d.warnUnserved()
	d.log.Info("configuration reloaded", "virtual_servers", len(cfg.VirtualServers))
}

// warnUnserved says which parts of the configuration the node cannot act on yet.
func (d *state) warnUnserved() {
	for _, vs := range d.cfg.VirtualServers {
		if vs.Persistence > 0 {
			d.log.Warn("persistence_timeout is not implemented yet: each connection is scheduled on its own",
				"virtual_server", vsName(vs), "persistence_timeout", vs.Persistence)
		}
		for _, rs := range vs.RealServers {
			if len(rs.Checkers) > 0 && !slices.ContainsFunc(rs.Checkers, func(c config.Checker) bool { return c.Kind != config.KindBFD }) {
				d.log.Warn("real server has only BFD_CHECK, which is not implemented yet: it is always treated as healthy",
					"virtual_server", vsName(vs), "real_server", netip.AddrPortFrom(rs.Addr, rs.Port))
			}
		}
	}
}

// onlyUnsupported reports whether every error joined in err is an ErrUnsupported.
func onlyUnsupported(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyUnsupported(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, ErrUnsupported)
}

func vsName(vs config.VirtualServer) string {
	return fmt.Sprintf("%s %s", protocolOf(vs), netip.AddrPortFrom(vs.Addr, vs.Port))
}

func protocolOf(vs config.VirtualServer) Proto {
	if vs.Protocol == config.UDP {
		return UDP
	}
	return TCP
}

// TargetID names a real server of a virtual server in health events and logs.
func TargetID(vs config.VirtualServer, rs config.RealServer) string {
	return fmt.Sprintf("%s -> %s", vsName(vs), netip.AddrPortFrom(rs.Addr, rs.Port))
}

// targets derives the health targets from a configuration. It fails only on a checker the
// health package refuses (a regex RE2 cannot compile, an unsplittable misc_path).
func targets(cfg *config.Config) ([]health.Target, error) {
	var ts []health.Target
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			t := health.Target{ID: TargetID(vs, rs), InitiallyUp: true}
			t.Interval = cmp.Or(rs.DelayLoop, vs.DelayLoop, 60*time.Second)
			cs, err := checkersOf(cfg, rs)
			if err != nil {
				return nil, fmt.Errorf("real server %s: %w", t.ID, err)
			}
			t.Checkers = cs
			// The target runs its checkers as one round; the first checker's timing rules it.
			if len(rs.Checkers) > 0 {
				c := rs.Checkers[0]
				t.Interval = cmp.Or(c.DelayLoop, t.Interval)
				t.Retry = c.Retry
				t.DelayBeforeRetry = c.DelayBeforeRetry
				t.Warmup = c.Warmup
				t.InitiallyUp = !c.Alpha
			}
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// snapshot builds the desired forwarding state from configuration and health.
// snapshot builds the desired forwarding state from configuration, health and VRRP: a service
// whose VIP a vrrp_instance covers is left out unless that instance is MASTER here, so its
// packets go to the stack (keepalived's BACKUP holds neither the VIP nor, effectively, the
// service).
func (d *state) snapshot() Snapshot {
	s := snapshotOf(d.cfg, d.up)
	own := owners(d.cfg)
	if len(own) == 0 {
		return s
	}
	kept := s.Services[:0]
	for _, svc := range s.Services {
		if in, covered := own[svc.Key.VIP]; !covered || d.vrrp[in] == vrrp.Master {
			kept = append(kept, svc)
		}
	}
	s.Services = kept
	return s
}

// verdict is what health checks last said of a real server. The zero value is "up, with the
// configured weight", which is also what a real server without a verdict gets.
type verdict struct {
	down bool
	// weightDelta is added to the configured weight (keepalived's misc_dynamic, FILE_CHECK).
	weightDelta int
}

// snapshotOf builds the forwarding state of cfg given health verdicts by target ID; a target
// without a verdict counts as up.
func snapshotOf(cfg *config.Config, up map[string]verdict) Snapshot {
	var s Snapshot
	for _, vs := range cfg.VirtualServers {
		svc := Service{
			Key:       ServiceKey{VIP: vs.Addr, Port: vs.Port, Proto: protocolOf(vs)},
			Scheduler: vs.LBAlgo,
		}
		for _, rs := range vs.RealServers {
			b := Backend{
				Addr:   rs.Addr,
				Port:   rs.Port,
				Weight: rs.Weight,
				Method: methodOf(cmp.Or(rs.LBKind, vs.LBKind)),
				Up:     true,
			}
			v := up[TargetID(vs, rs)]
			// A dynamic weight (misc_dynamic, FILE_CHECK) stays within IPVS's range; at 0 or
			// below the server is drained, as keepalived does.
			b.Weight = min(max(rs.Weight+v.weightDelta, 0), math.MaxInt32)
			if v.down {
				if rs.InhibitOnFailure {
					b.Weight = 0 // keepalived keeps the server with weight 0: existing flows continue
				} else {
					b.Up = false
				}
			}
			svc.Backends = append(svc.Backends, b)
		}
		slices.SortFunc(svc.Backends, func(a, b Backend) int {
			return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
		})
		s.Services = append(s.Services, svc)
	}
	slices.SortFunc(s.Services, func(a, b Service) int { return compareKeys(a.Key, b.Key) })
	return s
}

func compareKeys(a, b ServiceKey) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
}

func methodOf(k config.LBKind) Method {
	switch k {
	case config.TUN:
		return MethodTUN
	case config.NAT:
		return MethodNAT
	}
	return MethodDR
}
