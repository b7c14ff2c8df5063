package director

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// VRRPInstance runs one vrrp_instance and reports its transitions; *vrrp.Instance implements it.
type VRRPInstance interface {
	Run(ctx context.Context) error
	Events() <-chan vrrp.Event
}

// vrrpStopTimeout bounds how long shutdown waits for instances to send priority 0 and remove
// their VIPs.
const vrrpStopTimeout = 5 * time.Second

// VRRPConfig maps a parsed vrrp_instance to the vrrp package's configuration, with keepalived's
// semantics: `state MASTER` does not make an instance master at start (keepalived 2.x waits for
// Master_Down_Interval unless the priority is 255), mcast_src_ip stands in for
// unicast_src_ip as the advert source, and mcast_dst_ip is the advert group (VRRPConfigFor
// adds global_defs' vrrp_mcast_group4/6 when it is unset, and vrrp_check_unicast_src).
// virtual_ipaddress and virtual_ipaddress_excluded options brd, dev, scope, label and the flags go into
// VIPOptions; unicast_peer min_ttl/max_ttl into UnicastPeerTTL (max_ttl defaults to 255).
func VRRPConfig(in config.VRRPInstance, log *slog.Logger) vrrp.Config {
	c := vrrp.Config{
		Name:              in.Name,
		Interface:         in.Interface,
		VRID:              uint8(in.VirtualRouterID),
		Priority:          uint8(in.Priority),
		AdvertInterval:    in.AdvertInt,
		Version:           in.Version,
		NoPreempt:         in.NoPreempt,
		PreemptDelay:      in.PreemptDelay,
		VIPs:              in.VirtualAddresses,
		UnicastSrc:        in.UnicastSrcIP,
		UnicastTTL:        in.UnicastTTL,
		McastGroup:        in.McastDstIP,
		GARPMasterDelay:   in.GARPMasterDelay,
		GARPMasterRepeat:  in.GARPMasterRepeat,
		GARPMasterRefresh: in.GARPMasterRefresh,
		Logger:            log,

		HigherPrioSendAdvert: in.HigherPrioSendAdvert,
		DontTrackPrimary:     in.DontTrackPrimary,
		UseVMAC:              in.UseVMAC,
		VMACName:             in.VMACName,
		VMACXmitBase:         in.VMACXmitBase,
	}
	if !c.UnicastSrc.IsValid() {
		c.UnicastSrc = in.McastSrcIP
	}
	if in.Auth != nil {
		c.AuthType, c.AuthPass = in.Auth.Type, in.Auth.Pass
	}
	for _, p := range in.UnicastPeers {
		c.UnicastPeers = append(c.UnicastPeers, p.Addr)
		if p.MinTTL != 0 || p.MaxTTL != 0 {
			r := vrrp.TTLRange{Min: p.MinTTL, Max: p.MaxTTL}
			if p.MaxTTL == 0 {
				r.Max = 255 // keepalived's default
			}
			if c.UnicastPeerTTL == nil {
				c.UnicastPeerTTL = make(map[netip.Addr]vrrp.TTLRange)
			}
			c.UnicastPeerTTL[p.Addr] = r
		}
	}
	c.CheckUnicastSrc, c.UnicastFaultNoPeer = in.CheckUnicastSrc, in.UnicastFaultNoPeer
	for _, v := range in.ExcludedVIPs {
		c.ExcludedVIPs = append(c.ExcludedVIPs, v.Prefix)
	}
	for _, v := range append(slices.Clone(in.VIPs), in.ExcludedVIPs...) {
		o := vrrp.VIPOptions{Broadcast: v.Broadcast, Dev: v.Dev, Label: v.Label}
		for _, w := range v.Options {
			if f, ok := vrrp.VIPFlag(w); ok {
				o.Flags |= f
			}
		}
		if v.Scope != "" {
			s, err := vrrp.ParseScope(v.Scope) // the parser checked it
			if err != nil && log != nil {
				log.Warn("vrrp: virtual address scope ignored", "instance", in.Name, "addr", v.Prefix, "err", err)
			}
			o.Scope = s
		}
		if o != (vrrp.VIPOptions{}) {
			if c.VIPOptions == nil {
				c.VIPOptions = make(map[netip.Addr]vrrp.VIPOptions)
			}
			c.VIPOptions[v.Prefix.Addr()] = o
		}
	}
	return c
}

// VRRPConfigFor is VRRPConfig with what the rest of the configuration adds to an instance:
// its track_interface, track_script and track_file entries resolved to the vrrp_script and
// track_file blocks (a track_script weight overrides the script's own; a script without user
// runs as global_defs script_user), and the tracking of its vrrp_sync_group. The caller sets
// Sync to the group's shared *vrrp.SyncGroup.
func VRRPConfigFor(cfg *config.Config, in config.VRRPInstance, log *slog.Logger) (vrrp.Config, error) {
	c := VRRPConfig(in, log)
	c.CheckUnicastSrc = c.CheckUnicastSrc || cfg.Global.VRRPCheckUnicastSrc
	if !c.McastGroup.IsValid() {
		c.McastGroup = globalMcastGroup(cfg, in)
	}
	ifaces, scripts, files := in.TrackInterfaces, in.TrackScripts, in.TrackFiles
	if g := syncGroupOf(cfg, in.Name); g != nil {
		ifaces = append(slices.Clone(ifaces), g.TrackInterfaces...)
		scripts = append(slices.Clone(scripts), g.TrackScripts...)
		files = append(slices.Clone(files), g.TrackFiles...)
	}
	for _, t := range ifaces {
		c.TrackInterfaces = append(c.TrackInterfaces, vrrp.TrackInterface{Name: t.Name, Weight: t.Weight, Reverse: t.Reverse})
	}
	for _, r := range scripts {
		i := slices.IndexFunc(cfg.VRRPScripts, func(s config.VRRPScript) bool { return s.Name == r.Name })
		if i < 0 {
			continue // the parser warned and dropped it already; a sync group's ref may remain
		}
		s := cfg.VRRPScripts[i]
		if s.Script == "" {
			continue // keepalived ignores a vrrp_script without script
		}
		path, err := health.SplitMiscPath(s.Script)
		if err != nil {
			return vrrp.Config{}, fmt.Errorf("vrrp_script %s: %w", s.Name, err)
		}
		ts := vrrp.TrackScript{Name: s.Name, Path: path, Interval: s.Interval, Timeout: s.Timeout,
			Weight: s.Weight, Reverse: s.Reverse, Rise: s.Rise, Fall: s.Fall, InitFail: s.InitFail,
			User: s.User, Group: s.Group}
		if r.Weight != nil {
			ts.Weight, ts.Reverse = *r.Weight, r.Reverse
		}
		if ts.User == "" {
			ts.User, ts.Group = cfg.Global.ScriptUser, cfg.Global.ScriptGroup
		}
		c.TrackScripts = append(c.TrackScripts, ts)
	}
	for _, r := range files {
		i := slices.IndexFunc(cfg.TrackFiles, func(f config.TrackFile) bool { return f.Name == r.Name })
		if i < 0 {
			continue
		}
		f := cfg.TrackFiles[i]
		tf := vrrp.TrackFile{Name: f.Name, Path: f.File, Weight: f.Weight, Reverse: f.Reverse}
		if r.Weight != nil {
			tf.Weight, tf.Reverse = *r.Weight, r.Reverse
		}
		c.TrackFiles = append(c.TrackFiles, tf)
	}
	if c.TrackBFDs = trackBFDs(cfg, in); len(c.TrackBFDs) > 0 {
		c.BFDState = bfdSessions.BFDUp
	}
	return c, nil
}

// trackBFDs resolves an instance's track_bfd entries to the director's bfd_instance sessions
// (the parser dropped names of none); a weight written in track_bfd overrides the
// bfd_instance's own.
func trackBFDs(cfg *config.Config, in config.VRRPInstance) []vrrp.TrackBFD {
	var out []vrrp.TrackBFD
	for _, r := range in.TrackBFDs {
		i := slices.IndexFunc(cfg.BFDInstances, func(b config.BFDInstance) bool { return b.Name == r.Name })
		if i < 0 {
			continue
		}
		b := cfg.BFDInstances[i]
		tb := vrrp.TrackBFD{Name: b.Name, Weight: b.Weight, Reverse: b.Reverse}
		if r.Weight != nil {
			tb.Weight, tb.Reverse = *r.Weight, r.Reverse
		}
		out = append(out, tb)
	}
	return out
}

// globalMcastGroup returns global_defs' vrrp_mcast_group4 or vrrp_mcast_group6, by the family
// of the instance's VIPs, for an instance that multicasts without its own mcast_dst_ip; the
// zero Addr otherwise (the vrrp package then uses 224.0.0.18 / ff02::12).
func globalMcastGroup(cfg *config.Config, in config.VRRPInstance) netip.Addr {
	if in.McastDstIP.IsValid() || len(in.UnicastPeers) > 0 || len(in.VirtualAddresses) == 0 {
		return netip.Addr{}
	}
	if in.VirtualAddresses[0].Addr().Is4() {
		return cfg.Global.VRRPMcastGroup4
	}
	return cfg.Global.VRRPMcastGroup6
}

// syncGroupOf returns the vrrp_sync_group instance belongs to, or nil.
func syncGroupOf(cfg *config.Config, instance string) *config.VRRPSyncGroup {
	for i, g := range cfg.VRRPSyncGroups {
		if slices.Contains(g.Group, instance) {
			return &cfg.VRRPSyncGroups[i]
		}
	}
	return nil
}

// vrrpBuilder creates the instance for a vrrp_instance of cfg, in its sync group (nil: none).
type vrrpBuilder func(cfg *config.Config, in config.VRRPInstance, sync *vrrp.SyncGroup) (VRRPInstance, error)

// vrrpGroup runs the configured instances, merges their events into one channel and applies
// reloads: unchanged instances keep running untouched, removed ones stop (priority 0, VIPs
// released), added ones start, and changed ones restart.
type vrrpGroup struct {
	ctx    context.Context
	log    *slog.Logger
	build  vrrpBuilder
	events chan vrrp.Event
	wg     sync.WaitGroup
	cfg    *config.Config
	// running are the instances by name; syncs the sync groups by name.
	running map[string]*vrrpMember
	syncs   map[string]*syncGroupRun
}

// vrrpMember is one running instance.
type vrrpMember struct {
	in     VRRPInstance
	spec   vrrpSpec
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned and every event was passed on
}

// syncGroupRun is a sync group's shared state and the definition it was made from.
type syncGroupRun struct {
	group *vrrp.SyncGroup
	def   config.VRRPSyncGroup
}

// vrrpSpec is everything a running instance was built from: a reload restarts an instance
// whose spec changed.
type vrrpSpec struct {
	Instance              config.VRRPInstance
	Scripts               []config.VRRPScript
	Files                 []config.TrackFile
	SyncGroup             *config.VRRPSyncGroup
	ScriptUser, ScriptGrp string
	McastGroup            netip.Addr      // from global_defs
	BFDs                  []vrrp.TrackBFD // track_bfd with the bfd_instances' weights
}

func specOf(cfg *config.Config, in config.VRRPInstance) vrrpSpec {
	sp := vrrpSpec{Instance: in, McastGroup: globalMcastGroup(cfg, in), BFDs: trackBFDs(cfg, in)}
	refs := in.TrackScripts
	frefs := in.TrackFiles
	if g := syncGroupOf(cfg, in.Name); g != nil {
		sp.SyncGroup = g
		refs = append(slices.Clone(refs), g.TrackScripts...)
		frefs = append(slices.Clone(frefs), g.TrackFiles...)
	}
	for _, r := range refs {
		if i := slices.IndexFunc(cfg.VRRPScripts, func(s config.VRRPScript) bool { return s.Name == r.Name }); i >= 0 {
			sp.Scripts = append(sp.Scripts, cfg.VRRPScripts[i])
		}
	}
	for _, r := range frefs {
		if i := slices.IndexFunc(cfg.TrackFiles, func(f config.TrackFile) bool { return f.Name == r.Name }); i >= 0 {
			sp.Files = append(sp.Files, cfg.TrackFiles[i])
		}
	}
	if len(sp.Scripts) > 0 { // script_user matters only to an instance that runs scripts
		sp.ScriptUser, sp.ScriptGrp = cfg.Global.ScriptUser, cfg.Global.ScriptGroup
	}
	return sp
}

// sameSpec compares specs, ignoring where in the file things were written.
func sameSpec(a, b vrrpSpec) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // a type cmp cannot compare: restart rather than guess
		}
	}()
	return cmp.Equal(a, b, specOpts)
}

// specOpts compare configuration blocks by meaning: positions ignored, nil and empty alike.
var specOpts = cmp.Options{cmpopts.IgnoreTypes(config.Pos{}), cmpopts.EquateEmpty(),
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})}

// startVRRP creates and starts one instance per vrrp_instance. An instance that cannot be
// created (no such interface, AH authentication) stops the start-up with its reason.
func startVRRP(ctx context.Context, cfg *config.Config, build vrrpBuilder, log *slog.Logger) (*vrrpGroup, error) {
	g := &vrrpGroup{ctx: ctx, log: log, build: build, events: make(chan vrrp.Event, 64), cfg: cfg,
		running: map[string]*vrrpMember{}, syncs: map[string]*syncGroupRun{}}
	g.syncGroups(cfg)
	var insts []VRRPInstance
	for _, c := range cfg.VRRPInstances {
		in, err := g.create(cfg, c)
		if err != nil {
			return nil, err
		}
		insts = append(insts, in)
	}
	for i, in := range insts {
		g.start(cfg, cfg.VRRPInstances[i], in)
	}
	return g, nil
}

// syncGroups keeps the shared state of each unchanged vrrp_sync_group and makes new state for
// new and changed ones (whose members restart, their spec holding the group).
func (g *vrrpGroup) syncGroups(cfg *config.Config) {
	next := map[string]*syncGroupRun{}
	for _, def := range cfg.VRRPSyncGroups {
		if old, ok := g.syncs[def.Name]; ok && sameSyncGroup(old.def, def) {
			next[def.Name] = old
			continue
		}
		next[def.Name] = &syncGroupRun{group: vrrp.NewSyncGroup(def.Name), def: def}
	}
	g.syncs = next
}

func sameSyncGroup(a, b config.VRRPSyncGroup) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return cmp.Equal(a, b, specOpts)
}

func (g *vrrpGroup) create(cfg *config.Config, c config.VRRPInstance) (VRRPInstance, error) {
	var sg *vrrp.SyncGroup
	if def := syncGroupOf(cfg, c.Name); def != nil {
		sg = g.syncs[def.Name].group
	}
	in, err := g.build(cfg, c, sg)
	if err != nil {
		return nil, fmt.Errorf("start vrrp_instance %s: %w", c.Name, err)
	}
	return in, nil
}

// start runs in and passes its events on until it stops.
func (g *vrrpGroup) start(cfg *config.Config, c config.VRRPInstance, in VRRPInstance) {
	ctx, cancel := context.WithCancel(g.ctx)
	m := &vrrpMember{in: in, spec: specOf(cfg, c), cancel: cancel, done: make(chan struct{})}
	g.running[c.Name] = m
	var wg sync.WaitGroup
	wg.Add(2)
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			g.log.Error("vrrp instance stopped", "err", err)
		}
	}()
	// Drain the instance's events whatever happens: an instance blocks on a full channel,
	// and a blocked instance stops advertising.
	go func() {
		defer g.wg.Done()
		defer wg.Done()
		for ev := range in.Events() {
			select {
			case g.events <- ev:
			case <-g.ctx.Done():
			}
		}
	}()
	go func() { wg.Wait(); close(m.done) }()
}

// reload applies next's vrrp_instance blocks and returns the names of the instances it
// stopped (removed or restarted), whose state the director must forget. An instance that
// cannot be created is logged and left out; the others run.
func (g *vrrpGroup) reload(next *config.Config) (stopped []string) {
	g.syncGroups(next)
	want := map[string]config.VRRPInstance{}
	for _, c := range next.VRRPInstances {
		want[c.Name] = c
	}
	// Stop removed and changed instances together, then wait: each sends priority 0 and
	// releases its VIPs.
	var stopping []*vrrpMember
	for name, m := range g.running {
		c, keep := want[name]
		spec := specOf(next, c)
		if keep && sameSpec(m.spec, spec) {
			continue
		}
		if keep && g.inPlace(name, m, spec) {
			continue
		}
		if keep {
			g.log.Info("vrrp_instance changed: restarting it", "vrrp_instance", name)
		} else {
			g.log.Info("vrrp_instance removed: stopping it", "vrrp_instance", name)
		}
		m.cancel()
		stopping = append(stopping, m)
		stopped = append(stopped, name)
		delete(g.running, name)
	}
	timeout := time.After(vrrpStopTimeout)
	for _, m := range stopping {
		select {
		case <-m.done:
		case <-timeout:
			g.log.Error("vrrp instances did not stop in time", "timeout", vrrpStopTimeout)
		}
	}
	for _, c := range next.VRRPInstances {
		if _, ok := g.running[c.Name]; ok {
			continue
		}
		in, err := g.create(next, c)
		if err != nil {
			g.log.Error("vrrp_instance not started", "err", err)
			continue
		}
		g.log.Info("vrrp_instance started", "vrrp_instance", c.Name)
		g.start(next, c, in)
	}
	g.cfg = next
	slices.Sort(stopped)
	return stopped
}

// prioritySetter is the part of *vrrp.Instance that changes its priority in place.
type prioritySetter interface {
	SetPriority(uint8) error
}

// vipSetter is the part of *vrrp.Instance that changes its virtual addresses in place.
type vipSetter interface {
	SetVIPs(vips, excluded []netip.Prefix, opts map[netip.Addr]vrrp.VIPOptions) error
}

// inPlace applies a reload that changes only an instance's priority and virtual addresses in
// place, as keepalived does, so the instance keeps its state and adverts: neither priority may
// be the owner's 255, whose rules differ, and the addresses keep their family. It reports
// whether it did; when it did not, the caller restarts the instance.
func (g *vrrpGroup) inPlace(name string, m *vrrpMember, spec vrrpSpec) bool {
	old, next := m.spec.Instance, spec.Instance
	rest := spec
	rest.Instance.Priority = old.Priority
	rest.Instance.VirtualAddresses, rest.Instance.VIPs, rest.Instance.ExcludedVIPs = old.VirtualAddresses, old.VIPs, old.ExcludedVIPs
	if !sameSpec(m.spec, rest) {
		return false
	}
	prioOnly := m.spec
	prioOnly.Instance.Priority = next.Priority
	if !sameSpec(prioOnly, spec) {
		// The addresses changed.
		vs, ok := m.in.(vipSetter)
		if !ok {
			return false
		}
		c := VRRPConfig(next, g.log)
		if err := vs.SetVIPs(c.VIPs, c.ExcludedVIPs, c.VIPOptions); err != nil {
			g.log.Warn("vrrp_instance virtual addresses not changed in place: restarting it", "vrrp_instance", name, "err", err)
			return false
		}
		g.log.Info("vrrp_instance virtual addresses changed in place", "vrrp_instance", name, "vips", c.VIPs)
		m.spec.Instance.VirtualAddresses, m.spec.Instance.VIPs, m.spec.Instance.ExcludedVIPs = next.VirtualAddresses, next.VIPs, next.ExcludedVIPs
	}
	if old.Priority == next.Priority {
		m.spec = spec
		return true
	}
	ps, ok := m.in.(prioritySetter)
	if !ok || old.Priority == vrrp.PriorityOwner || next.Priority == vrrp.PriorityOwner || next.Priority < 1 || next.Priority > 254 {
		return false
	}
	if err := ps.SetPriority(uint8(next.Priority)); err != nil {
		g.log.Warn("vrrp_instance priority not changed in place: restarting it", "vrrp_instance", name, "err", err)
		return false
	}
	g.log.Info("vrrp_instance priority changed in place", "vrrp_instance", name, "from", old.Priority, "to", next.Priority)
	m.spec = spec
	return true
}

// wait waits, for at most vrrpStopTimeout, for the instances to finish after their context
// ended: they send priority 0 and remove their VIPs on the way out.
func (g *vrrpGroup) wait(log *slog.Logger) {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(vrrpStopTimeout):
		log.Error("vrrp instances did not stop in time", "timeout", vrrpStopTimeout)
	}
}

// owners maps each VIP a vrrp_instance covers to that instance's name.
func owners(cfg *config.Config) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, in := range cfg.VRRPInstances {
		for _, p := range in.VirtualAddresses {
			m[p.Addr()] = in.Name
		}
	}
	return m
}
