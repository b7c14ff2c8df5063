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

	d := &state{log: log, cfg: served(opts.Config), up: map[string]verdict{}, vrrp: map[string]vrrp.State{},
		notify: cmp.Or[Notifier](opts.Notify, nopNotifier{})}
	d.runBFD()
	defer bfdSessions.stop()
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
			cfg = served(cfg)
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
	if !OnlyUnsupported(err) {
		return err
	}
	if msg := err.Error(); msg != d.unsupported {
		d.unsupported = msg
		d.log.Warn("data plane cannot serve part of the configuration; serving the rest", "err", err)
	}
	return nil
}

func (d *state) health(ev health.Event) {
	if ev.FirstDown {
		// An alpha server's first check failed: no change of state, but notify_down runs.
		if r, ok := d.byTarget[ev.ID]; ok {
			vs := d.cfg.VirtualServers[r.vs]
			d.notify.RealServer(vs, vs.RealServers[r.rs], false)
		}
		d.log.Warn("real server down at its first check", "server", ev.ID, "err", ev.Err)
		return
	}
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
	d.runBFD()
	d.log.Info("configuration reloaded", "virtual_servers", len(cfg.VirtualServers))
}

// runBFD runs the sessions of the configuration's bfd_instances, which BFD_CHECKs follow.
func (d *state) runBFD() {
	bfdSessions.update(d.cfg, d.log) // the bfd_instances BFD_CHECKs follow
}

// OnlyUnsupported reports whether every error joined in err is an ErrUnsupported: what a data
// plane cannot serve, which no retry fixes.
func OnlyUnsupported(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !OnlyUnsupported(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, ErrUnsupported)
}

// vsName names a virtual server in logs and target IDs: "TCP 192.0.2.1:80", "TCP group web"
// or "FWM 5".
func vsName(vs config.VirtualServer) string {
	switch {
	case vs.Group != "":
		return fmt.Sprintf("%s group %s", protocolOf(vs), vs.Group)
	case vs.FWMark != 0:
		return FWMarkKey(vs.FWMark, fwmarkIPv6(vs.FWMarkFamily, vs)).String()
	}
	return fmt.Sprintf("%s %s", protocolOf(vs), netip.AddrPortFrom(vs.Addr, vs.Port))
}

func protocolOf(vs config.VirtualServer) Proto {
	switch vs.Protocol {
	case config.UDP:
		return UDP
	case config.SCTP:
		return SCTP
	}
	return TCP
}

// served returns cfg with the virtual servers it serves by group or firewall mark
// (OtherVirtualServers) moved into VirtualServers, so that health checks, quorum and
// notifications treat each as one virtual server, as keepalived does: a group of ten addresses
// checks each real server once. A group's Addr and Port become its first address entry's (or
// its FWMark its first mark's), which gives it a quorum key of its own; buildSnapshot expands
// it into one service per entry. served(served(cfg)) is served(cfg); cfg is not modified.
func served(cfg *config.Config) *config.Config {
	if cfg == nil || len(cfg.OtherVirtualServers) == 0 {
		return cfg
	}
	c := *cfg
	c.VirtualServers = slices.Clone(cfg.VirtualServers)
	for _, vs := range cfg.OtherVirtualServers {
		if vs.Group != "" {
			if keys := groupKeys(&c, vs); len(keys) > 0 {
				vs.Addr, vs.Port, vs.FWMark = keys[0].VIP, keys[0].Port, keys[0].FWMark
			}
		}
		c.VirtualServers = append(c.VirtualServers, vs)
	}
	c.OtherVirtualServers = nil
	return &c
}

// ConfiguredKeys are the services cfg configures, in file order: every virtual_server's address,
// port and protocol or firewall mark, and every entry of the virtual_server_groups they name.
func ConfiguredKeys(cfg *config.Config) []ServiceKey {
	if cfg == nil {
		return nil
	}
	c := served(cfg)
	var keys []ServiceKey
	for _, vs := range c.VirtualServers {
		keys = append(keys, serviceKeys(c, vs)...)
	}
	return keys
}

// serviceKeys are the services virtual server vs of cfg is served as: its address, port and
// protocol; its firewall mark; or, for a group, every address and port and every mark of its
// virtual_server_group.
func serviceKeys(cfg *config.Config, vs config.VirtualServer) []ServiceKey {
	switch {
	case vs.Group != "":
		return groupKeys(cfg, vs)
	case vs.FWMark != 0:
		return []ServiceKey{FWMarkKey(vs.FWMark, fwmarkIPv6(vs.FWMarkFamily, vs))}
	}
	return []ServiceKey{{VIP: vs.Addr, Port: vs.Port, Proto: protocolOf(vs)}}
}

// groupKeys expands the virtual_server_group vs names, in file order; none when it is missing.
func groupKeys(cfg *config.Config, vs config.VirtualServer) []ServiceKey {
	i := slices.IndexFunc(cfg.VirtualServerGroups, func(g config.VirtualServerGroup) bool { return g.Name == vs.Group })
	if i < 0 {
		return nil
	}
	var keys []ServiceKey
	for _, e := range cfg.VirtualServerGroups[i].Entries {
		if e.FWMark != 0 {
			keys = append(keys, FWMarkKey(e.FWMark, fwmarkIPv6(e.Family, vs)))
			continue
		}
		for _, a := range e.Addresses() {
			keys = append(keys, ServiceKey{VIP: a, Port: e.Port, Proto: protocolOf(vs)})
		}
	}
	return keys
}

// fwmarkIPv6 is the family of a firewall-mark service: the one written after the mark, else
// its first real server's, else IPv4 (keepalived's default).
func fwmarkIPv6(family string, vs config.VirtualServer) bool {
	switch family {
	case "inet6":
		return true
	case "inet":
		return false
	}
	return len(vs.RealServers) > 0 && vs.RealServers[0].Addr.Unmap().Is6()
}

// TargetID names a real server of a virtual server in health events and logs.
func TargetID(vs config.VirtualServer, rs config.RealServer) string {
	return fmt.Sprintf("%s -> %s", vsName(vs), netip.AddrPortFrom(rs.Addr, rs.Port))
}

// targets derives the health targets from a configuration. It fails only on a checker the
// health package refuses (a regex RE2 cannot compile, an unsplittable misc_path).
func targets(cfg *config.Config) ([]health.Target, error) {
	cfg = served(cfg)
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
				t.NotifyFirstDown = true // keepalived runs notify_down at the first failure
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
	cfg = served(cfg)
	t := cfg.Global.LVSTimeouts
	s := Snapshot{Timeouts: Timeouts{TCP: t.TCP, TCPFin: t.TCPFin, UDP: t.UDP}}
	seen := map[ServiceKey]bool{}
	for _, vs := range cfg.VirtualServers {
		var backends []Backend
		for _, rs := range vs.RealServers {
			b := Backend{
				Addr:   rs.Addr,
				Port:   rs.Port,
				Weight: rs.Weight,
				Method: methodOf(cmp.Or(rs.LBKind, vs.LBKind)),
				Tunnel: tunnelOf(vs, rs),
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
			backends = append(backends, b)
		}
		// One quorum state per virtual server, shared by every service a group expands to.
		q, ok := quorum[serviceKeyOf(vs)]
		if !ok {
			q = initialQuorum(vs, up)
		}
		for _, key := range serviceKeys(cfg, vs) {
			if seen[key] {
				continue // a group entry that repeats a service defined before it: the first wins
			}
			seen[key] = true
			svc := Service{
				Key:               key,
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
			entry := vs
			svc.Backends = slices.Clone(backends)
			if vs.Group != "" {
				// A group's real servers take each entry's port where they cannot change it
				// (DR, TUN) or name none, as keepalived resets a real server's port to the
				// virtual server's.
				entry.Addr, entry.Port = key.VIP, key.Port
				for j := range svc.Backends {
					if b := &svc.Backends[j]; b.Port == 0 || (b.Method != MethodNAT && key.FWMark == 0) {
						b.Port = key.Port
					}
				}
			}
			svc.Backends = withQuorum(entry, svc.Backends, q)
			slices.SortFunc(svc.Backends, func(a, b Backend) int {
				return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
			})
			s.Services = append(s.Services, svc)
		}
	}
	slices.SortFunc(s.Services, func(a, b Service) int { return compareKeys(a.Key, b.Key) })
	return s
}

func compareKeys(a, b ServiceKey) int {
	return cmp.Or(cmp.Compare(a.FWMark, b.FWMark), a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
}

// tunnelOf is the encapsulation of a real server: its own with its own lb_kind, else its virtual
// server's.
func tunnelOf(vs config.VirtualServer, rs config.RealServer) Tunnel {
	t := vs.Tunnel
	if rs.LBKind != "" {
		t = rs.Tunnel
	}
	out := Tunnel{Port: t.Port, Csum: t.Csum}
	switch t.Type {
	case config.TunnelGUE:
		out.Type = TunnelGUE
	case config.TunnelGRE:
		out.Type = TunnelGRE
	}
	return out
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
