// Package loader runs Sluice's XDP data path: it loads the program built from bpf/, attaches it
// to the interfaces carrying VIPs and keeps its maps in step with the director's snapshots.
package loader

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/sched"
)

// maxConcurrentResolves bounds the next-hop lookups (and ARP probes) one Apply runs at once.
const maxConcurrentResolves = 16

// ErrUnsupported marks state the XDP data path cannot forward yet (forwarding between address
// families); Apply
// forwards everything else and returns it wrapped.
var ErrUnsupported = director.ErrUnsupported

// Options configures New.
type Options struct {
	// Logger receives attach and resolution events; nil means slog.Default().
	Logger *slog.Logger
	// Resolver finds VIP interfaces and next hops; nil means NetlinkResolver{}.
	Resolver Resolver
	// FlowTableSize is the connection-table size; 0 means DefaultFlowTableSize.
	FlowTableSize uint32
	// UnconfirmedTableSize is the size of the table holding flows until their second packet
	// (a handshake's ACK); 0 means DefaultUnconfirmedTableSize. A SYN flood churns this table
	// only, so it bounds how long a handshake may take under a flood, not how many connections
	// the director keeps.
	UnconfirmedTableSize uint32
	// MaxServices is the most virtual services the data path holds (1 to MaxServicesLimit); 0
	// means DefaultMaxServices. It sizes the per-service maps and the selection-table slots (two
	// per service).
	MaxServices uint32
	// MaxBackends is the most real servers over all services (1 to MaxBackendsLimit); 0 means
	// DefaultMaxBackends. It sizes the per-real-server maps.
	MaxBackends uint32
	// NoAttach loads the program and writes maps but attaches nothing, for tests.
	NoAttach bool
	// PinDir is the bpffs directory for the maps and XDP links (PinPath(instance) in the
	// daemon), so that forwarding outlives the process; "" pins nothing. New adopts what a
	// previous process left there: compatible maps keep their contents and pinned links get
	// the new program by an atomic update. When bpffs cannot be mounted New logs a warning and
	// pins nothing.
	PinDir string
	// KeepOnClose makes Close leave the pinned maps and links in place, still forwarding
	// (keepalived's --dont-release-ipvs); otherwise Close detaches and removes everything.
	KeepOnClose bool
	// Generic attaches in generic (SKB) mode everywhere instead of trying native mode first.
	Generic bool
}

// Loader is the XDP implementation of director.Dataplane.
type Loader struct {
	log      *slog.Logger
	res      Resolver
	noAttach bool
	ncpu     int
	// maxSvc, maxBE and selSlots are the sizes of the per-service, per-backend and
	// selection-table maps (Options.MaxServices, MaxBackends, twice MaxServices).
	maxSvc, maxBE, selSlots uint32

	objs  lbObjects
	inner *ebpf.MapSpec // template of the selection tables

	mu       sync.Mutex
	closed   bool
	links    map[int]link.Link // XDP attachments by ifindex
	services map[director.ServiceKey]*service
	svcIDs   *idPool
	beIDs    *idPool
	slots    *idPool
	// tables holds this process's handle on each selection table it installed, by slot:
	// reading a table back through the outer map would need CAP_SYS_ADMIN (map by id), which
	// the daemon drops after start-up.
	tables    map[uint32]*ebpf.Map
	vipErrs   map[netip.Addr]string  // last VIPInterface error logged per VIP
	hopErrs   map[netip.Addr]string  // last NextHop error logged per backend address
	tunErrs   map[netip.Addr]string  // last Route error logged per backend address
	globals   uint32                 // lb_globals as last written (globalFlagNAT)
	globalsOK bool                   // globals was written by this loader
	lastHops  map[netip.Addr]NextHop // next hops in use, kept through failed refreshes
	writes    int                    // map writes made, so tests can check Apply writes only deltas
	syncGen   uint64                 // counts syncService calls, marking the backends each lists
	life      *lifecycle             // pinning and attach modes (pin.go)
	timeouts  director.Timeouts      // of the snapshot being applied
	conns     connWatch              // connection counts and the tables built from them (conns.go)
}

// service is what Loader last wrote for a service.
type service struct {
	key      director.ServiceKey
	val      lbSvcValue
	written  bool // val is in the services map
	conf     lbSvcConf
	confOK   bool // conf is in the svc_confs map
	hasTable bool
	sched    string
	table    []sched.Backend // eligible backends the current table was built from
	backends map[netip.AddrPort]*backend
}

// backend is what Loader last wrote for a backend.
type backend struct {
	id  uint32
	val lbBackendValue
	// ap and key are the address and port the backend was last listed under and its
	// scheduling key (ap.String()), kept to spare a string per backend and Apply.
	ap  netip.AddrPort
	key string
	// gen is the Loader's syncGen when a snapshot last listed the backend.
	gen uint64
}

var _ director.Dataplane = (*Loader)(nil)

// New loads the XDP program and its maps into the kernel.
func New(opts Options) (*Loader, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("load xdp spec: %w", err)
	}
	// The reverse NAT tables mirror the flow tables entry for entry: same sizes, so a NAT
	// flow's reply translation is not evicted before the flow.
	if opts.FlowTableSize != 0 {
		spec.Maps[lbMapFlows].MaxEntries = opts.FlowTableSize
		spec.Maps[lbMapNatFlows].MaxEntries = opts.FlowTableSize
	}
	if err := sizeUnconfirmed(spec, opts.UnconfirmedTableSize); err != nil {
		return nil, err
	}
	maxSvc, maxBE, err := sizeMaps(spec, opts)
	if err != nil {
		return nil, err
	}
	inner := spec.Maps[lbMapSelTables].InnerMap
	if inner == nil {
		return nil, errors.New("load xdp spec: sel_tables has no inner map")
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}

	l := &Loader{
		log:      opts.Logger,
		res:      opts.Resolver,
		noAttach: opts.NoAttach,
		ncpu:     ncpu,
		maxSvc:   maxSvc,
		maxBE:    maxBE,
		selSlots: 2 * maxSvc,
		inner:    inner.Copy(),
		links:    map[int]link.Link{},
		services: map[director.ServiceKey]*service{},
		svcIDs:   newIDPool(maxSvc),
		beIDs:    newIDPool(maxBE),
		slots:    newIDPool(2 * maxSvc),
		vipErrs:  map[netip.Addr]string{},
		hopErrs:  map[netip.Addr]string{},
		tunErrs:  map[netip.Addr]string{},
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.res == nil {
		l.res = NetlinkResolver{}
	}
	l.life = &lifecycle{keep: opts.KeepOnClose, generic: opts.Generic, modes: map[int]Attachment{}}
	var reuse map[string]*ebpf.Map
	if opts.PinDir != "" {
		dir, err := pinLocation(opts.PinDir, l.log)
		if err != nil {
			l.log.Warn("cannot pin the data plane: forwarding will stop with this process", "dir", opts.PinDir, "err", err)
		} else if reuse, err = l.life.openPins(dir, spec, l.log); err != nil {
			return nil, errors.Join(err, l.life.release(false))
		}
	}
	// LoadAndAssign uses clones of the maps it reuses, and releases whatever it created when
	// it fails.
	err = spec.LoadAndAssign(&l.objs, &ebpf.CollectionOptions{MapReplacements: reuse})
	for _, m := range reuse {
		m.Close()
	}
	if err != nil {
		l.life.release(false)
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load xdp program: %+v", ve)
		}
		return nil, fmt.Errorf("load xdp program: %w", err)
	}
	if _, adopted := reuse[lbMapUnconfirmed]; !adopted {
		if err := prefault(l.objs.Unconfirmed); err != nil {
			l.log.Warn("could not touch the new unconfirmed-flow table in advance: its first flows may be slower", "err", err)
		}
	}
	if l.life.dir == "" {
		return l, nil
	}
	err = l.pinMaps(reuse)
	if err == nil && l.life.adopted {
		if err = l.adoptState(); err == nil {
			err = l.adoptNATFlag()
		}
		if err == nil {
			err = l.adoptLinks()
		}
	}
	if err != nil {
		// Links taken over stay pinned, and attached: a failed start must not stop forwarding.
		for _, lk := range l.links {
			lk.Close()
		}
		l.objs.Close()
		return nil, errors.Join(fmt.Errorf("pin data plane in %s: %w", l.life.dir, err), l.life.release(!l.life.adopted))
	}
	return l, nil
}

// sizeMaps sets the sizes of the per-service, per-backend and selection-table maps in spec
// from opts, and returns the most services and backends.
func sizeMaps(spec *ebpf.CollectionSpec, opts Options) (maxSvc, maxBE uint32, err error) {
	maxSvc, maxBE = cmp.Or(opts.MaxServices, DefaultMaxServices), cmp.Or(opts.MaxBackends, DefaultMaxBackends)
	if maxSvc > MaxServicesLimit {
		return 0, 0, fmt.Errorf("size the data path: %d services, want 1 to %d", maxSvc, MaxServicesLimit)
	}
	if maxBE > MaxBackendsLimit {
		return 0, 0, fmt.Errorf("size the data path: %d real servers, want 1 to %d", maxBE, MaxBackendsLimit)
	}
	for name, n := range map[string]uint32{
		lbMapServices: maxSvc, lbMapSvcConfs: maxSvc, lbMapRrPos: maxSvc, lbMapSvcStats: maxSvc,
		lbMapSelTables: 2 * maxSvc, lbMapBackends: maxBE, lbMapBeStats: maxBE,
	} {
		ms := spec.Maps[name]
		if ms == nil {
			return 0, 0, fmt.Errorf("load xdp spec: no map %s", name)
		}
		ms.MaxEntries = n
	}
	return maxSvc, maxBE, nil
}

// Program returns the loaded XDP program, for tests and tooling; Loader keeps ownership.
func (l *Loader) Program() *ebpf.Program { return l.objs.XdpLb }

// Close detaches the program from every interface and releases the maps.
func (l *Loader) Close() error {
	l.stopConns()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	keep := l.life.keep && l.life.dir != ""
	if l.life.keep && !keep {
		l.log.Warn("nothing is pinned, so the data plane stops with this process")
	}
	var errs []error
	for ifindex, lk := range l.links {
		var err error
		if keep {
			err = lk.Close() // the pin keeps it attached
		} else {
			err = l.detachLink(ifindex, lk)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("detach xdp from ifindex %d: %w", ifindex, err))
		}
		delete(l.links, ifindex)
	}
	for slot, m := range l.tables {
		m.Close()
		delete(l.tables, slot)
	}
	if err := l.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close xdp objects: %w", err))
	}
	if keep {
		l.log.Info("leaving the data plane forwarding; the next start takes it over", "dir", l.life.dir)
	}
	errs = append(errs, l.life.release(!keep))
	return errors.Join(errs...)
}

// Apply makes the data path forward s, writing only what differs from the last Apply.
func (l *Loader) Apply(ctx context.Context, s director.Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("apply snapshot: loader is closed")
	}
	// Connection-count tables built by this Apply share one fresh walk of the flow tables;
	// counts from before it (a status call) may miss the flows that just arrived.
	l.conns.counts = nil

	var errs []error
	want := make(map[director.ServiceKey]*director.Service, len(s.Services))
	var order []*director.Service
	for i := range s.Services {
		svc := &s.Services[i]
		switch err := unservable(svc.Key); {
		case err != nil:
			errs = append(errs, err)
			continue
		case !svc.Key.VIP.IsValid() || svc.Key.VIP.Is4In6() || svc.Key.VIP.Zone() != "":
			errs = append(errs, fmt.Errorf("service %s: VIP must be a plain IPv4 or IPv6 address", svc.Key))
			continue
		case svc.Key.Proto != director.TCP && svc.Key.Proto != director.UDP:
			errs = append(errs, fmt.Errorf("service %s: protocol: %w", svc.Key, ErrUnsupported))
			continue
		}
		if _, dup := want[svc.Key]; dup {
			errs = append(errs, fmt.Errorf("service %s: listed twice", svc.Key))
			continue
		}
		want[svc.Key] = svc
		order = append(order, svc)
	}

	l.timeouts = s.Timeouts
	routes := l.resolveRoutes(ctx, order)
	if !l.noAttach {
		errs = append(errs, l.syncAttachments(order, routes)...)
	}
	hops := l.resolveNextHops(ctx, order)

	// Adding before removing leaves no gap when a new service takes over the traffic of one
	// removed (port 80 replaced by an all-ports service). Removing frees ids and slots, so a
	// service that failed is tried once more after it.
	var gone []director.ServiceKey
	for key := range l.services {
		if _, ok := want[key]; !ok {
			gone = append(gone, key)
		}
	}
	slices.SortFunc(gone, compareKeys)
	// Replies are looked up from before the first NAT backend is written until after the last
	// one is gone.
	nat := hasNAT(order)
	if nat {
		errs = append(errs, l.setGlobals(globalFlagNAT))
	}
	failed := map[director.ServiceKey]error{}
	for _, svc := range order {
		if err := l.syncService(svc, hops, routes); err != nil {
			failed[svc.Key] = err
		}
	}
	for _, key := range gone {
		if err := l.removeService(l.services[key]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, svc := range order {
		err, ok := failed[svc.Key]
		if !ok {
			continue
		}
		if len(gone) > 0 && !director.OnlyUnsupported(err) {
			err = l.syncService(svc, hops, routes)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !nat {
		errs = append(errs, l.setGlobals(0))
	}
	return errors.Join(errs...)
}

// hasNAT reports whether a service has a NAT backend.
func hasNAT(order []*director.Service) bool {
	for _, svc := range order {
		for _, b := range svc.Backends {
			if b.Method == director.MethodNAT {
				return true
			}
		}
	}
	return false
}

// adoptNATFlag sets GLOBAL_F_NAT before the new program takes over the links when the adopted
// data plane has a NAT backend: a data plane pinned by a version without lb_globals gets a fresh
// map, and its NAT replies must not pass untranslated until the first Apply.
func (l *Loader) adoptNATFlag() error {
	for _, st := range l.services {
		for _, bs := range st.backends {
			if bs.val.Method == methodNAT {
				return l.setGlobals(globalFlagNAT)
			}
		}
	}
	return nil
}

// setGlobals writes the lb_globals flags when they changed.
func (l *Loader) setGlobals(flags uint32) error {
	if l.globalsOK && l.globals == flags {
		return nil
	}
	if err := l.put(l.objs.LbGlobals, uint32(0), &flags); err != nil {
		return fmt.Errorf("write data path flags: %w", err)
	}
	l.globals, l.globalsOK = flags, true
	return nil
}

func compareKeys(a, b director.ServiceKey) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
}

// syncAttachments attaches the program to every interface carrying a VIP or leading to a NAT
// real server (whose replies it translates back) and detaches it from the others. A VIP on no
// interface is normal on a VRRP backup, so it is logged, not an error.
func (l *Loader) syncAttachments(order []*director.Service, routes map[netip.Addr]Route) []error {
	l.claimAdopted(order)
	need := map[int]string{}
	users := map[int][]director.ServiceKey{} // services needing each interface, for AttachError
	for _, svc := range order {
		for _, b := range svc.Backends {
			if rt, ok := routes[b.Addr]; ok && b.Method == director.MethodNAT {
				need[rt.Ifindex] = rt.Ifname
				if !slices.Contains(users[rt.Ifindex], svc.Key) {
					users[rt.Ifindex] = append(users[rt.Ifindex], svc.Key)
				}
			}
		}
	}
	for _, svc := range order {
		vip := svc.Key.VIP
		ifindex, name, err := l.res.VIPInterface(vip)
		if err != nil {
			if l.vipErrs[vip] != err.Error() {
				l.log.Warn("VIP is on no interface; not attaching for it", "vip", vip, "err", err)
				l.vipErrs[vip] = err.Error()
			}
			continue
		}
		delete(l.vipErrs, vip)
		need[ifindex] = name
		if !slices.Contains(users[ifindex], svc.Key) {
			users[ifindex] = append(users[ifindex], svc.Key)
		}
	}
	for vip := range l.vipErrs {
		if !slices.ContainsFunc(order, func(s *director.Service) bool { return s.Key.VIP == vip }) {
			delete(l.vipErrs, vip)
		}
	}

	var errs []error
	for ifindex, name := range need {
		if _, ok := l.links[ifindex]; ok {
			if a := l.life.modes[ifindex]; a.Name != name {
				a.Name = name
				l.life.modes[ifindex] = a
			}
			continue
		}
		lk, a, err := l.attach(ifindex, name)
		if err != nil {
			keys := users[ifindex]
			slices.SortFunc(keys, compareKeys)
			errs = append(errs, &AttachError{Ifindex: ifindex, Name: name, Services: keys, Err: err})
			continue
		}
		l.pinLink(lk, a)
		l.links[ifindex] = lk
		l.life.modes[ifindex] = a
	}
	for ifindex, lk := range l.links {
		if _, ok := need[ifindex]; ok {
			continue
		}
		if err := l.detachLink(ifindex, lk); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp from ifindex %d: %w", ifindex, err))
			continue
		}
		delete(l.links, ifindex)
		l.log.Info("detached XDP", "ifindex", ifindex)
	}
	return errs
}

// AttachError is an interface the program could attach to in neither native nor generic mode;
// Apply returns it (joined with its other errors) naming the services that needed the interface,
// which the XDP data path then does not serve there. Apply tries again on its next call.
type AttachError struct {
	Ifindex int
	Name    string
	// Services are the services with their VIP on the interface or a NAT real server behind it,
	// sorted.
	Services []director.ServiceKey
	Err      error
}

// Error is the attach error's text.
func (e *AttachError) Error() string { return e.Err.Error() }

// Unwrap returns the attach error.
func (e *AttachError) Unwrap() error { return e.Err }

// attach attaches in native mode, falling back to generic mode for drivers without XDP support
// with one log line saying why; Options.Generic skips native mode.
func (l *Loader) attach(ifindex int, name string) (link.Link, Attachment, error) {
	a := Attachment{Ifindex: ifindex, Name: name, Mode: ModeGeneric}
	var err error
	if l.life.generic {
		a.Reason = "--dataplane xdp-generic"
	} else {
		lk, nerr := link.AttachXDP(link.XDPOptions{Program: l.objs.XdpLb, Interface: ifindex, Flags: link.XDPDriverMode})
		if nerr == nil {
			a.Mode = ModeNative
			l.log.Info("attached XDP", "interface", name, "mode", a.Mode)
			return lk, a, nil
		}
		err = nerr
		a.Reason = "native XDP failed: " + nerr.Error()
	}
	lk, gerr := link.AttachXDP(link.XDPOptions{Program: l.objs.XdpLb, Interface: ifindex, Flags: link.XDPGenericMode})
	if gerr != nil {
		if err != nil {
			return nil, a, fmt.Errorf("attach xdp to %s: native: %v; generic: %w", name, err, gerr)
		}
		return nil, a, fmt.Errorf("attach generic xdp to %s: %w", name, gerr)
	}
	if err != nil {
		l.log.Warn("attached XDP in generic mode, which is slow: native XDP failed", "interface", name, "native_err", err)
	} else {
		l.log.Info("attached XDP", "interface", name, "mode", a.Mode, "reason", a.Reason)
	}
	return lk, a, nil
}

// resolveNextHops resolves every address of a backend that could carry traffic. A backend that
// never resolved, or whose route no longer allows DR, is ineligible; one that resolved before
// keeps its last next hop through a failed refresh (a lost ARP reply must not re-balance its
// flows: health checks say whether it is gone). Failures are logged when they first occur or
// change.
func (l *Loader) resolveNextHops(ctx context.Context, order []*director.Service) map[netip.Addr]NextHop {
	// Resolve concurrently: an ARP probe that gets no answer takes a second, and Apply runs in
	// the director's loop.
	var addrs []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, svc := range order {
		for _, b := range svc.Backends {
			if seen[b.Addr] || !b.Up || b.Method != director.MethodDR || !forwardable(svc.Key, b) {
				continue
			}
			seen[b.Addr] = true
			addrs = append(addrs, b.Addr)
		}
	}
	type result struct {
		hop NextHop
		err error
	}
	results := make([]result, len(addrs))
	// The resolver's netlink and ARP sockets belong to the namespace of the thread that opens
	// them, so the workers run in the caller's namespace (tests call Apply inside one).
	ns, err := netns.Get()
	if err != nil {
		for i := range results {
			results[i].err = fmt.Errorf("resolve next hops: current network namespace: %w", err)
		}
	} else {
		defer ns.Close()
		// A pool of workers, each entering the namespace once: switching per lookup costs
		// more than a lookup of a static next hop, with tens of thousands of real servers.
		// The workers take addresses by index: handing each over a channel would switch
		// threads per address, as the workers are locked to theirs.
		var wg sync.WaitGroup
		var next atomic.Int64
		take := func() (int, bool) {
			i := int(next.Add(1)) - 1
			return i, i < len(addrs)
		}
		for range min(maxConcurrentResolves, len(addrs)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := inNS(ns, func() {
					for i, ok := take(); ok; i, ok = take() {
						results[i].hop, results[i].err = l.res.NextHop(ctx, addrs[i])
					}
				})
				for i, ok := take(); ok; i, ok = take() { // only when inNS failed
					results[i].err = err
				}
			}()
		}
		wg.Wait()
	}

	hops := map[netip.Addr]NextHop{}
	for i, a := range addrs {
		hop, err := results[i].hop, results[i].err
		if err == nil && (len(hop.SrcMAC) != 6 || len(hop.DstMAC) != 6 || hop.Ifindex <= 0) {
			err = fmt.Errorf("resolve %s: incomplete next hop %+v", a, hop)
		}
		if err == nil {
			if _, ok := l.hopErrs[a]; ok {
				l.log.Info("real server resolved again", "addr", a)
				delete(l.hopErrs, a)
			}
			hops[a] = hop
			continue
		}
		last, known := l.lastHops[a]
		keep := known && !errors.Is(err, ErrNotDirect)
		if l.hopErrs[a] != err.Error() {
			if keep {
				l.log.Warn("cannot refresh real server's next hop; keeping the last one", "addr", a, "err", err)
			} else {
				l.log.Warn("cannot resolve real server; sending it no traffic", "addr", a, "err", err)
			}
			l.hopErrs[a] = err.Error()
		}
		if keep {
			hops[a] = last
		}
	}
	// Forget backends gone or down, so that they start afresh if they come back.
	l.lastHops = hops
	for a := range l.hopErrs {
		if _, ok := hops[a]; !ok && !l.wantsHop(order, a) {
			delete(l.hopErrs, a)
		}
	}
	return hops
}

// inNS runs fn on a thread in network namespace ns. A thread that cannot be switched back
// stays locked, so the runtime discards it instead of reusing it in the wrong namespace.
func inNS(ns netns.NsHandle, fn func()) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("resolve next hop: current network namespace: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		defer runtime.UnlockOSThread()
		fn()
		return nil
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("resolve next hop: enter network namespace: %w", err)
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
	return nil
}

// forwardable reports whether the data path can forward traffic of service key to b: by DR, TUN
// or NAT, to a real server of the VIP's address family (DR sends the packet unchanged, VIP
// included; TUN encapsulates it in IPIP or IP6IP6; NAT rewrites addresses of one family).
func forwardable(key director.ServiceKey, b director.Backend) bool {
	switch b.Method {
	case director.MethodDR, director.MethodTUN, director.MethodNAT:
	default:
		return false
	}
	if b.Method == director.MethodTUN {
		switch b.Tunnel.Type {
		case director.TunnelIPIP:
		case director.TunnelGUE:
			if b.Tunnel.Port == 0 {
				return false
			}
		default:
			return false
		}
	}
	return b.Addr.Is4() == key.VIP.Is4() && !b.Addr.Is4In6() && b.Addr.Zone() == ""
}

// routed reports whether the program routes b's packets itself with the FIB (TUN and NAT).
func routed(b director.Backend) bool {
	return b.Method == director.MethodTUN || b.Method == director.MethodNAT
}

// wantsHop reports whether some up DR backend of order has address a.
func (l *Loader) wantsHop(order []*director.Service, a netip.Addr) bool {
	for _, svc := range order {
		for _, b := range svc.Backends {
			if b.Addr == a && b.Up && b.Method == director.MethodDR && forwardable(svc.Key, b) {
				return true
			}
		}
	}
	return false
}

// resolveRoutes finds the route to every up TUN and NAT backend. The program takes next hops
// from the FIB per packet, so only the source (TUN) and interface (NAT) are resolved here; a
// backend without a route is ineligible. Failures are logged when they first occur or change.
func (l *Loader) resolveRoutes(ctx context.Context, order []*director.Service) map[netip.Addr]Route {
	srcs := map[netip.Addr]Route{}
	rr, _ := l.res.(RouteResolver)
	for _, svc := range order {
		for _, b := range svc.Backends {
			if _, done := srcs[b.Addr]; done || !b.Up || !routed(b) || !forwardable(svc.Key, b) {
				continue
			}
			var rt Route
			err := fmt.Errorf("route to %s: resolver has no Route", b.Addr)
			if rr != nil {
				rt, err = rr.Route(ctx, b.Addr)
			}
			if err == nil && (!rt.Src.IsValid() || rt.Src.Is4() != b.Addr.Is4() || rt.Ifindex <= 0) {
				err = fmt.Errorf("route to %s: incomplete %+v", b.Addr, rt)
			}
			if err != nil {
				if l.tunErrs[b.Addr] != err.Error() {
					l.log.Warn("cannot route to real server; sending it no traffic", "addr", b.Addr, "err", err)
					l.tunErrs[b.Addr] = err.Error()
				}
				continue
			}
			if _, ok := l.tunErrs[b.Addr]; ok {
				l.log.Info("real server routed again", "addr", b.Addr)
				delete(l.tunErrs, b.Addr)
			}
			srcs[b.Addr] = rt
		}
	}
	for a := range l.tunErrs {
		if _, ok := srcs[a]; ok {
			delete(l.tunErrs, a)
		}
	}
	return srcs
}

// syncService writes the deltas of one service: backends turning up before the table that lists
// them, then the table and service value, then backends turning down or removed. Each step is
// one batch write per map (the counters of new backends, the backends turning up, those turning
// down, those removed), so a service of 100 real servers costs a handful of system calls.
func (l *Loader) syncService(svc *director.Service, hops map[netip.Addr]NextHop, routes map[netip.Addr]Route) error {
	st := l.services[svc.Key]
	if st == nil {
		id, ok := l.svcIDs.get()
		if !ok {
			return fmt.Errorf("add service %s: more than %d services", svc.Key, l.maxSvc)
		}
		st = &service{key: svc.Key, val: lbSvcValue{Id: id}, backends: make(map[netip.AddrPort]*backend, len(svc.Backends))}
		if err := resetPerCPU(l, l.objs.RrPos, id, uint32(0)); err != nil {
			l.svcIDs.put(id)
			return fmt.Errorf("add service %s: %w", svc.Key, err)
		}
		if err := resetPerCPU(l, l.objs.SvcStats, id, lbLbStats{}); err != nil {
			l.svcIDs.put(id)
			return fmt.Errorf("add service %s: %w", svc.Key, err)
		}
		l.services[svc.Key] = st
	}
	id := st.val.Id

	var errs []error
	// The backends to keep, with ids for the new ones, whose counters start from zero (a freed
	// id is reused).
	type entry struct {
		b      *director.Backend
		ap     netip.AddrPort
		bs     *backend
		ok     bool // forwardable
		fresh  bool
		failed bool // its counters could not be reset: not added
	}
	// Backends listed by this call are marked with gen (a map of those seen would cost more
	// than the rest with a million real servers).
	l.syncGen++
	gen := l.syncGen
	list := make([]entry, 0, len(svc.Backends))
	var freshIDs []uint32
	var freshAt []int // index in list of each freshIDs entry
	for i := range svc.Backends {
		b := &svc.Backends[i]
		ap := netip.AddrPortFrom(b.Addr, b.Port)
		bs := st.backends[ap]
		if bs != nil && bs.gen == gen {
			continue // listed twice
		}
		ok := forwardable(svc.Key, *b)
		if !ok {
			errs = append(errs, fmt.Errorf("service %s backend %s %s: %w", svc.Key, ap, b.Method, ErrUnsupported))
		}
		fresh := bs == nil
		if fresh {
			bid, ok := l.beIDs.get()
			if !ok {
				errs = append(errs, fmt.Errorf("add backend %s to %s: more than %d backends", ap, svc.Key, l.maxBE))
				continue
			}
			bs = &backend{id: bid}
			st.backends[ap] = bs
			freshIDs = append(freshIDs, bid)
			freshAt = append(freshAt, len(list))
		}
		bs.gen = gen
		list = append(list, entry{b: b, ap: ap, bs: bs, ok: ok, fresh: fresh})
	}
	live := len(list)
	if len(freshIDs) > 0 {
		failed := putBatch(l, l.objs.BeStats, freshIDs, make([]lbLbStats, len(freshIDs)*l.ncpu), l.ncpu)
		for i, at := range freshAt {
			if e := &list[at]; failed != nil && failed[i] != nil {
				delete(st.backends, e.ap)
				l.beIDs.put(e.bs.id)
				e.failed = true
				live--
				errs = append(errs, fmt.Errorf("add backend %s to %s: %w", e.ap, svc.Key, failed[i]))
			}
		}
	}

	eligible := make([]sched.Backend, 0, len(list))
	var downs, ups []*backend
	var upVals []lbBackendValue
	var upIDs []uint32
	var upAPs []netip.AddrPort
	if len(freshIDs) > 0 {
		ups, upVals = make([]*backend, 0, len(list)), make([]lbBackendValue, 0, len(list))
		upIDs, upAPs = make([]uint32, 0, len(list)), make([]netip.AddrPort, 0, len(list))
	}
	for _, e := range list {
		if e.failed {
			continue
		}
		b, bs, ok := e.b, e.bs, e.ok
		val := lbBackendValue{Method: methodDR, SvcId: id}
		val.Family, val.Addr = addrKey(b.Addr)
		var usable bool
		switch b.Method {
		case director.MethodDR:
			var hop NextHop
			hop, usable = hops[b.Addr]
			if usable && ok && b.Up {
				val.Ifindex = uint32(hop.Ifindex)
				copy(val.Dmac[:], hop.DstMAC)
				copy(val.Smac[:], hop.SrcMAC)
			}
		case director.MethodTUN:
			var rt Route
			rt, usable = routes[b.Addr]
			val.Method = methodTUN
			if b.Tunnel.Type == director.TunnelGUE {
				val.Encap, val.TunPort = encapGUE, htons(b.Tunnel.Port)
			}
			if usable && ok && b.Up {
				_, val.TunSrc = addrKey(rt.Src)
			}
		case director.MethodNAT:
			_, usable = routes[b.Addr]
			val.Method = methodNAT
			val.Port = htons(b.Port)
		}
		usable = usable && ok
		if usable && b.Up {
			val.Flags = beFlagUp
		}
		if usable && b.Eligible() {
			val.Flags |= beFlagNew
			if bs.key == "" || bs.ap != e.ap {
				bs.ap, bs.key = e.ap, e.ap.String()
			}
			eligible = append(eligible, sched.Backend{ID: bs.id, Key: bs.key, Weight: b.Weight})
		}
		if !e.fresh && val == bs.val {
			continue
		}
		if val.Flags&beFlagUp == 0 {
			bs.val = val
			downs = append(downs, bs)
			continue
		}
		ups = append(ups, bs)
		upAPs = append(upAPs, e.ap)
		upIDs = append(upIDs, bs.id)
		upVals = append(upVals, val)
	}
	// Backends turning up are written before the table that lists them is published.
	failed := putBatch(l, l.objs.Backends, upIDs, upVals, 1)
	for i, bs := range ups {
		if failed != nil && failed[i] != nil {
			errs = append(errs, fmt.Errorf("write backend %s of %s: %w", upAPs[i], svc.Key, failed[i]))
			continue
		}
		bs.val = upVals[i]
	}

	// The settings go in before syncTable publishes a new service entry that uses them.
	if conf := l.svcConf(svc); conf != st.conf || !st.confOK {
		if err := l.put(l.objs.SvcConfs, id, &conf); err != nil {
			errs = append(errs, fmt.Errorf("write settings of %s: %w", svc.Key, err))
		} else {
			st.conf, st.confOK = conf, true
		}
	}

	if err := l.syncTable(st, svc.Scheduler, eligible); err != nil {
		errs = append(errs, err)
	}

	// Backends turning down only once the table that drops them is published.
	if len(downs) > 0 {
		ids, vals := make([]uint32, len(downs)), make([]lbBackendValue, len(downs))
		for i, bs := range downs {
			ids[i], vals[i] = bs.id, bs.val
		}
		for i, err := range putBatch(l, l.objs.Backends, ids, vals, 1) {
			if err != nil {
				errs = append(errs, fmt.Errorf("write backend %d of %s: %w", ids[i], svc.Key, err))
			}
		}
	}
	var goneAPs []netip.AddrPort
	var goneIDs []uint32
	if len(st.backends) > live { // some not listed
		for ap, bs := range st.backends {
			if bs.gen != gen {
				goneAPs = append(goneAPs, ap)
				goneIDs = append(goneIDs, bs.id)
			}
		}
	}
	if len(goneIDs) > 0 {
		failed := putBatch(l, l.objs.Backends, goneIDs, make([]lbBackendValue, len(goneIDs)), 1)
		for i, ap := range goneAPs {
			if failed != nil && failed[i] != nil {
				errs = append(errs, fmt.Errorf("remove backend %s of %s: %w", ap, svc.Key, failed[i]))
				continue
			}
			delete(st.backends, ap)
			l.beIDs.put(goneIDs[i])
		}
	}
	return errors.Join(errs...)
}

// syncTable replaces the service's selection table when its eligible set or scheduler changed:
// the new table fills a free slot, one hash update points the service at it, then the old slot is
// freed, so the data path sees the old table or the new one, never a mix.
func (l *Loader) syncTable(st *service, algo string, eligible []sched.Backend) error {
	table := tableAlgo(algo)
	flags := uint32(0)
	if table != "mh" {
		flags = svcFlagRR
	}
	val := lbSvcValue{Id: st.val.Id, Flags: flags}
	rebuild := algo != st.sched || !slices.Equal(eligible, st.table)
	// Connection-count schedulers also rebuild when the live counts change the table.
	conn := sched.IsConnAlgo(algo)
	var ids []uint32
	if conn {
		var cur []uint32
		var err error
		ids, cur, err = l.connTable(st, algo, eligible)
		if err != nil {
			return fmt.Errorf("build %s table for %s: %w", algo, st.key, err)
		}
		rebuild = rebuild || !slices.Equal(ids, cur)
	} else if rebuild && table == "wrr" && algo != "wrr" && algo != "rr" {
		l.log.Warn("scheduler has no XDP table; using a stand-in", "service", st.key, "lb_algo", algo, "table", table)
	}
	if !rebuild {
		val.SelSlot, val.SelSize = st.val.SelSlot, st.val.SelSize
	} else if len(eligible) > 0 && (!conn || len(ids) > 0) {
		if !conn {
			var err error
			ids, err = sched.Table(table, eligible, 0)
			if err == nil && len(ids) == 0 {
				err = errors.New("empty table")
			}
			if err != nil {
				return fmt.Errorf("build %s table for %s: %w", table, st.key, err)
			}
		}
		slot, err := l.newTable(ids)
		if err != nil {
			return fmt.Errorf("write table of %s: %w", st.key, err)
		}
		val.SelSlot, val.SelSize = slot, uint32(len(ids))
	}

	key := svcKey(st.key)
	if val != st.val || !st.written {
		if err := l.put(l.objs.Services, &key, &val); err != nil {
			if rebuild && val.SelSize > 0 {
				l.freeSlot(val.SelSlot)
			}
			return fmt.Errorf("write service %s: %w", st.key, err)
		}
	}
	if rebuild {
		if st.hasTable {
			l.freeSlot(st.val.SelSlot)
		}
		st.hasTable = val.SelSize > 0
		st.sched = algo
		st.table = eligible
		if conn {
			l.connTableWritten(st.key, ids)
		}
	}
	st.val = val
	st.written = true
	return nil
}

// Flow idle timeouts when the snapshot leaves them zero: IPVS's defaults.
const (
	defaultTCPTimeout    = 900 * time.Second
	defaultTCPFinTimeout = 120 * time.Second
	defaultUDPTimeout    = 300 * time.Second
)

// svcConf is the svc_confs value of svc: persistence, flow idle timeouts and hash input.
func (l *Loader) svcConf(svc *director.Service) lbSvcConf {
	var c lbSvcConf
	if svc.Persistence > 0 {
		c.PersistNs = uint64(svc.Persistence.Nanoseconds())
		c.PersistMask = persistMask(svc.Key.VIP.Is4(), svc.PersistencePrefix)
	}
	if svc.Key.Proto == director.UDP {
		c.IdleNs = uint64(cmp.Or(l.timeouts.UDP, defaultUDPTimeout).Nanoseconds())
	} else {
		c.IdleNs = uint64(cmp.Or(l.timeouts.TCP, defaultTCPTimeout).Nanoseconds())
		c.FinNs = uint64(cmp.Or(l.timeouts.TCPFin, defaultTCPFinTimeout).Nanoseconds())
	}
	c.Hash = hashInput(svc.Scheduler, svc.SchedFlags)
	return c
}

// hashInput is what a hashing scheduler hashes (enum svc_hash): the destination for dh, the
// client address and port for sh and mh with sh-port / mh-port, else the client address.
func hashInput(algo string, flags director.SchedFlags) uint8 {
	switch {
	case algo == "dh":
		return hashDst
	case (algo == "sh" || algo == "mh") && flags&director.SchedPort != 0:
		return hashSrcPort
	}
	return hashSrc
}

// persistMask is persistence_granularity prefix bits as a mask of a client address in the maps'
// 16-byte form; 0 or a prefix beyond the family's length means the whole address.
func persistMask(v4 bool, prefix int) [16]uint8 {
	n := 128
	if v4 {
		n = 32
	}
	if prefix <= 0 || prefix > n {
		prefix = n
	}
	var m [16]uint8
	for i := 0; i < prefix; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// tableAlgo is the table-building algorithm standing in for a keepalived lb_algo. Source
// hashing (sh) and destination hashing (dh) become Maglev tables (the program hashes the
// source or the destination); the connection-count schedulers (lc, wlc, sed,
// nq, fo, ovf, lblc, lblcr) have tables of their own, rebuilt from live flow counts (conns.go);
// any other becomes weighted round robin.
func tableAlgo(algo string) string {
	switch {
	case algo == "rr", algo == "wrr", algo == "mh", sched.IsConnAlgo(algo):
		return algo
	case algo == "sh", algo == "dh":
		return "mh"
	}
	return "wrr"
}

// newTable writes ids into a fresh inner map and installs it in a free sel_tables slot.
func (l *Loader) newTable(ids []uint32) (uint32, error) {
	spec := l.inner.Copy()
	spec.MaxEntries = uint32(len(ids))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return 0, fmt.Errorf("create selection table of %d entries: %w", len(ids), err)
	}
	installed := false
	defer func() {
		if !installed {
			m.Close()
		}
	}()
	if err := fillTable(m, spec, ids); err != nil {
		return 0, fmt.Errorf("fill selection table: %w", err)
	}
	l.writes++
	slot, ok := l.slots.get()
	if !ok {
		return 0, errors.New("no free selection-table slot")
	}
	if err := l.put(l.objs.SelTables, slot, m); err != nil {
		l.slots.put(slot)
		return 0, fmt.Errorf("install selection table in slot %d: %w", slot, err)
	}
	installed = true
	if l.tables == nil {
		l.tables = map[uint32]*ebpf.Map{}
	}
	l.tables[slot] = m
	return slot, nil
}

// fillTable writes ids into the fresh array m made from spec: a large table (a Maglev table has
// 65,537 entries) with one copy through a mapping of the array when it is BPF_F_MMAPABLE, which
// costs half a batch update, and a small one with a batch update, which is then cheaper than
// mapping it. The mapping is dropped at once: it would hold a reference on the table after the
// table is replaced.
func fillTable(m *ebpf.Map, spec *ebpf.MapSpec, ids []uint32) error {
	if spec.Flags&unix.BPF_F_MMAPABLE == 0 || len(ids) < mmapMinEntries {
		keys := make([]uint32, len(ids))
		for i := range keys {
			keys[i] = uint32(i)
		}
		_, err := m.BatchUpdate(keys, ids, nil)
		return err
	}
	// Array elements are rounded up to 8 bytes; the values start at offset 0 of the mapping.
	page := os.Getpagesize()
	size := (len(ids)*tableStride + page - 1) / page * page
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for i, id := range ids {
		binary.NativeEndian.PutUint32(mem[i*tableStride:], id)
	}
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// mmapMinEntries is the smallest table fillTable writes through a mapping (two pages): below
// it a batch update was faster on the test machine.
const mmapMinEntries = 1024

// tableStride is the distance between a selection table's elements in its mapping: the 4-byte
// value rounded up to 8 bytes, as the kernel lays out array elements.
const tableStride = 8

// table returns a handle on the selection table in slot, and whether the caller must close it.
func (l *Loader) table(slot uint32) (m *ebpf.Map, owned bool, err error) {
	if m := l.tables[slot]; m != nil {
		return m, false, nil
	}
	// A table a previous process installed (until the first Apply replaces it).
	if err := l.objs.SelTables.Lookup(slot, &m); err != nil {
		return nil, false, err
	}
	return m, true, nil
}

// freeSlot empties a sel_tables slot, releasing its table, and makes the slot reusable.
func (l *Loader) freeSlot(slot uint32) {
	l.writes++
	if err := l.objs.SelTables.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		// Keep the slot out of the pool: it still holds a table.
		l.log.Error("free selection-table slot", "slot", slot, "err", err)
		return
	}
	if m := l.tables[slot]; m != nil {
		m.Close()
		delete(l.tables, slot)
	}
	l.slots.put(slot)
}

// removeService deletes the service entry first, so no packet reaches its table or backends,
// then releases those.
func (l *Loader) removeService(st *service) error {
	key := svcKey(st.key)
	l.writes++
	if err := l.objs.Services.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove service %s: %w", st.key, err)
	}
	if st.hasTable {
		l.freeSlot(st.val.SelSlot)
	}
	var errs []error
	for ap, bs := range st.backends {
		if err := l.put(l.objs.Backends, bs.id, &lbBackendValue{}); err != nil {
			errs = append(errs, fmt.Errorf("remove backend %s of %s: %w", ap, st.key, err))
			continue // keep the id out of the pool: the entry is still live
		}
		l.beIDs.put(bs.id)
	}
	l.svcIDs.put(st.val.Id)
	delete(l.services, st.key)
	return errors.Join(errs...)
}

func (l *Loader) put(m *ebpf.Map, key, val any) error {
	l.writes++
	return m.Put(key, val)
}

// putBatch writes vals under keys in m with one batch update, per values per key (1, or the
// number of possible CPUs for a per-CPU map, vals holding each key's values in a row). When the
// batch fails it writes them one by one, so that each error names its entry, and returns the
// error of each key (nil when all were written). It counts one write per key.
func putBatch[V any](l *Loader, m *ebpf.Map, keys []uint32, vals []V, per int) []error {
	if len(keys) == 0 {
		return nil
	}
	l.writes += len(keys)
	if len(keys) > 1 {
		if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
			return nil
		}
	}
	var errs []error
	for i, k := range keys {
		var err error
		if per == 1 {
			err = m.Put(k, &vals[i])
		} else {
			err = m.Put(k, vals[i*per:(i+1)*per])
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = err
		}
	}
	return errs
}

// resetPerCPU sets every CPU's value of key to zero, so a recycled id starts from clean counters.
func resetPerCPU[T any](l *Loader, m *ebpf.Map, key uint32, zero T) error {
	vals := make([]T, l.ncpu)
	for i := range vals {
		vals[i] = zero
	}
	return l.put(m, key, vals)
}

// svcKey is the services key of k.
func svcKey(k director.ServiceKey) lbSvcKey {
	key := lbSvcKey{Port: htons(k.Port), Proto: uint8(k.Proto)}
	key.Family, key.Addr = addrKey(k.VIP)
	return key
}

// addrKey is a's family and its 16-byte form in the maps: IPv4 in the first 4 bytes.
func addrKey(a netip.Addr) (uint8, [16]uint8) {
	var out [16]uint8
	if a.Is4() {
		a4 := a.As4()
		copy(out[:], a4[:])
		return afInet, out
	}
	return afInet6, a.As16()
}

// htons converts to network byte order, in which the C side stores ports.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}
