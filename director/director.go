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
	// OnVRRPInstance, when set, is told of each instance the default NewVRRP creates, at
	// start and on reloads (status and metrics read its counters and effective priority).
	// Prefer it to NewVRRP, which replaces the default and so its tracking and sync groups.
	OnVRRPInstance func(name string, in *vrrp.Instance)
	// Notify, when set, is told about VRRP, real server and quorum transitions (scripts,
	// FIFOs, e-mail alerts).
	Notify Notifier
	// OnHealth, when set, receives every health event (status, explain); OnProbe every
	// finished probe of the default health scheduler (check latency metrics). Both are called
	// on the director's and the scheduler's goroutines and must not block.
	OnHealth func(health.Event)
	OnProbe  func(health.Probe)
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
		hr = health.NewScheduler(events, health.WithLogger(log), health.WithProbeObserver(opts.OnProbe))
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
	run, held := d.running(d.cfg, ts)
	if err := hr.Update(run); err != nil {
		return fmt.Errorf("start health checks: %w", err)
	}
	d.setTargets(ts, held)
	d.initQuorum()

	snap := d.snapshot()
	if err := d.apply(ctx, opts.Dataplane, snap); err != nil {
		return fmt.Errorf("apply initial snapshot: %w", err)
	}
	if opts.Applied != nil {
		opts.Applied(snap)
	}
	log.Info("forwarding", "services", len(snap.Services))

	build := func(cfg *config.Config, c config.VRRPInstance, sync *vrrp.SyncGroup) (VRRPInstance, error) {
		vc, err := VRRPConfigFor(cfg, c, log)
		if err != nil {
			return nil, err
		}
		vc.Sync = sync
		in, err := vrrp.New(vc)
		if err != nil {
			return nil, err
		}
		if opts.OnVRRPInstance != nil {
			opts.OnVRRPInstance(c.Name, in)
		}
		return in, nil
	}
	if opts.NewVRRP != nil {
		build = func(_ *config.Config, c config.VRRPInstance, _ *vrrp.SyncGroup) (VRRPInstance, error) {
			return opts.NewVRRP(c)
		}
	}
	vg, err := startVRRP(ctx, d.cfg, build, log)
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
			d.omega()
			return nil
		case ev := <-events:
			d.health(ev)
			if opts.OnHealth != nil {
				opts.OnHealth(ev)
			}
			// Coalesce a burst of transitions into one apply.
			for drained := false; !drained; {
				select {
				case ev := <-events:
					d.health(ev)
					if opts.OnHealth != nil {
						opts.OnHealth(ev)
					}
				default:
					drained = true
				}
			}
		case ev := <-vg.events:
			d.vrrpEvent(ev)
			d.resumeChecks(hr)
			if opts.OnVRRP != nil {
				opts.OnVRRP(ev)
			}
		case cfg := <-opts.Reload:
			ts, err := targets(cfg)
			run, held := d.running(cfg, ts)
			if err == nil {
				err = hr.Update(run)
			}
			if err != nil {
				log.Error("reload refused: the running configuration stays", "err", err)
				continue
			}
			d.reload(cfg)
			// Unchanged vrrp_instances keep running untouched; removed ones release their
			// VIPs, changed ones restart, and both are forgotten until they report again.
			for _, name := range vg.reload(cfg) {
				delete(d.vrrp, name)
			}
			d.setTargets(ts, held)
			d.initQuorum()
		case <-tick.C:
		}
		snap = d.snapshot()
		if err := d.apply(ctx, opts.Dataplane, snap); err != nil {
			if ctx.Err() != nil {
				d.omega()
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
	// quorum is each virtual server's quorum state (true: it has quorum); see quorum.go.
	quorum map[ServiceKey]bool
	// byTarget locates each target ID's real server in cfg; live is each virtual server's live
	// weight (by index in cfg), counted the weight each target contributes to it.
	byTarget map[string]targetRef
	live     []int64
	counted  map[string]int64
	// targets are cfg's health targets; held are the IDs ha_suspend keeps from the runner.
	targets []health.Target
	held    map[string]bool
}

func (d *state) vrrpEvent(ev vrrp.Event) {
	if ev.State == ev.Prev {
		// Tracking changed the effective priority only: nothing to forward differently.
		d.log.Info("vrrp instance's effective priority changed", "vrrp_instance", ev.Instance,
			"state", ev.State, "priority", ev.Priority)
		return
	}
	d.vrrp[ev.Instance] = ev.State
	d.log.Info("vrrp instance changed state; updating the VIPs it owns", "vrrp_instance", ev.Instance,
		"from", ev.Prev, "to", ev.State, "vips", ev.VIPs)
	d.notify.VRRP(ev)
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
	if r, ok := d.byTarget[ev.ID]; ok {
		// A weight change is no transition; a target without a verdict is in its initial state.
		vs := d.cfg.VirtualServers[r.vs]
		rs := vs.RealServers[r.rs]
		if !known {
			prev = initialVerdict(rs)
		}
		if prev.down == ev.Up {
			d.notify.RealServer(vs, rs, ev.Up)
		}
	}
	switch {
	case !ev.Up:
		d.log.Warn("real server down", "server", ev.ID, "err", ev.Err)
	case known && !prev.down:
		d.log.Info("real server weight changed", "server", ev.ID, "weight_delta", ev.WeightDelta)
	default:
		d.log.Info("real server up", "server", ev.ID, "weight_delta", ev.WeightDelta)
	}
	d.quorumAfter(ev.ID)
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
			}
			if hasAlpha(rs) {
				t.InitiallyUp = false
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
	s := buildSnapshot(d.cfg, d.up, d.quorum)
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
// without a verdict is in its initial state (up, or down under alpha), and every virtual server
// in its initial quorum state.
func snapshotOf(cfg *config.Config, up map[string]verdict) Snapshot {
	return buildSnapshot(cfg, up, nil)
}

// buildSnapshot is snapshotOf with the quorum state of each virtual server; one missing from
// quorum is in its initial state.
func buildSnapshot(cfg *config.Config, up map[string]verdict, quorum map[ServiceKey]bool) Snapshot {
	t := cfg.Global.LVSTimeouts
	s := Snapshot{Timeouts: Timeouts{TCP: t.TCP, TCPFin: t.TCPFin, UDP: t.UDP}}
	for _, vs := range cfg.VirtualServers {
		svc := Service{
			Key:               ServiceKey{VIP: vs.Addr, Port: vs.Port, Proto: protocolOf(vs)},
			Scheduler:         vs.LBAlgo,
			Persistence:       vs.Persistence,
			PersistencePrefix: vs.PersistenceGranularity,
		}
		if vs.SchedPort {
			svc.SchedFlags |= SchedPort
		}
		if vs.SchedFallback {
			svc.SchedFlags |= SchedFallback
		}
		for _, rs := range vs.RealServers {
			b := Backend{
				Addr:   rs.Addr,
				Port:   rs.Port,
				Weight: rs.Weight,
				Method: methodOf(cmp.Or(rs.LBKind, vs.LBKind)),
				Up:     true,
			}
			v := verdictOf(up, vs, rs)
			// A dynamic weight (misc_dynamic, FILE_CHECK) stays within IPVS's range; at 0 or
			// below the server is drained, as keepalived does.
			b.Weight = effectiveWeight(rs, v)
			if v.down {
				if rs.InhibitOnFailure {
					b.Weight = 0 // keepalived keeps the server with weight 0: existing flows continue
				} else {
					b.Up = false
				}
			}
			svc.Backends = append(svc.Backends, b)
		}
		q, ok := quorum[svc.Key]
		if !ok {
			q = initialQuorum(vs, up)
		}
		svc.Backends = withQuorum(vs, svc.Backends, q)
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
