// Package ipvsfallback is Sluice's second data plane: it forwards the services of a
// director.Snapshot with the kernel's IP Virtual Server (LVS/IPVS), for directors where the XDP
// program cannot run. It programs IPVS over generic netlink (github.com/moby/ipvs) the way
// keepalived does, and like the XDP loader it writes only what changed since the last Apply.
package ipvsfallback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/director"
)

// ErrUnavailable means the kernel has no IPVS (the ip_vs module is missing or cannot be
// loaded); a caller choosing a data plane branches on it.
var ErrUnavailable = errors.New("IPVS is not available in this kernel")

// ErrUnsupported marks parts of a snapshot IPVS forwarding does not cover yet; it is
// director.ErrUnsupported, so the director logs it and serves the rest.
var ErrUnsupported = director.ErrUnsupported

// Handle is the part of *ipvs.Handle the data plane uses. It is the seam over the kernel: unit
// tests substitute a recording fake, since most kernels that run the unit tests have no IPVS.
type Handle interface {
	GetServices() ([]*ipvs.Service, error)
	GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error)
	NewService(s *ipvs.Service) error
	UpdateService(s *ipvs.Service) error
	DelService(s *ipvs.Service) error
	NewDestination(s *ipvs.Service, d *ipvs.Destination) error
	UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error
	DelDestination(s *ipvs.Service, d *ipvs.Destination) error
	SetConfig(c *ipvs.Config) error
	Close()
}

// Options configure New.
type Options struct {
	// Logger receives what the data plane does; nil discards it.
	Logger *slog.Logger
	// NetnsPath is the network namespace to program (such as /run/netns/NAME); empty means the
	// caller's.
	NetnsPath string
	// Handle replaces the netlink handle New would open; tests set it. Close closes it.
	Handle Handle
}

// Dataplane implements director.Dataplane on IPVS. It owns the virtual services of the
// snapshots it is given and leaves every other IPVS service alone.
type Dataplane struct {
	log *slog.Logger
	h   Handle

	mu sync.Mutex
	// applied is what this data plane believes the kernel holds for the services it owns.
	applied map[director.ServiceKey]*service
	// resync makes the next Apply read the kernel's table first: at start (services left by a
	// previous run are adopted, not re-created, so their connections survive) and after a
	// failed write left applied uncertain.
	resync bool
	closed bool
	// timeouts are the lvs_timeouts last set; zero fields leave the kernel's.
	timeouts director.Timeouts
}

// service is the programmed state of one virtual service.
type service struct {
	sched   string
	persist persistence
	dests   map[destKey]dest
}

// persistence is a service's persistence and scheduler flags as IPVS holds them.
type persistence struct {
	flags   uint32 // svcFlagPersistent, svcFlagSched1, svcFlagSched2
	timeout uint32 // seconds
	netmask uint32 // IPv4: the mask as the kernel's be32; IPv6: the prefix length
}

type destKey struct {
	addr netip.Addr
	port uint16
}

type dest struct {
	weight int
	method director.Method
}

var _ director.Dataplane = (*Dataplane)(nil)

// New opens IPVS in the namespace of opts and checks that the kernel has it; without IPVS it
// returns an error wrapping ErrUnavailable.
func New(opts Options) (*Dataplane, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := opts.Handle
	if h == nil {
		if err := probeKernel(); err != nil {
			return nil, err
		}
		ih, err := ipvs.New(opts.NetnsPath)
		if err != nil {
			return nil, fmt.Errorf("open ipvs netlink: %w", err)
		}
		h = ih
	}
	// The first dump proves the handle works (and that we may use it) before Apply relies on it.
	if _, err := h.GetServices(); err != nil {
		h.Close()
		return nil, fmt.Errorf("list ipvs services: %w: %w", ErrUnavailable, err)
	}
	return &Dataplane{
		log:     log,
		h:       h,
		applied: make(map[director.ServiceKey]*service),
		resync:  true,
	}, nil
}

// probeKernel checks that the kernel has IPVS's generic netlink family, running modprobe ip_vs
// once if not, as keepalived does. moby/ipvs cannot be asked: without the family it opens a
// handle anyway whose requests go to no one and return nothing.
func probeKernel() error {
	if _, err := netlink.GenlFamilyGet("IPVS"); err == nil {
		return nil
	}
	out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		return fmt.Errorf("%w: generic netlink family IPVS: %w (modprobe ip_vs: %v %s)",
			ErrUnavailable, err, merr, strings.TrimSpace(string(out)))
	}
	return nil
}

// Apply makes the kernel's IPVS table hold the services of s: it adds, edits and removes only
// the services and real servers that differ from what it applied last. A real server that is
// not Up is removed, as keepalived does; one with weight 0 (drained, or inhibit_on_failure)
// stays with weight 0 so its established connections continue. Errors are per service: the
// others are still applied, and the next Apply re-reads the kernel and retries. A service the
// snapshot describes wrongly (an unknown scheduler) is reported and keeps its current state.
func (d *Dataplane) Apply(ctx context.Context, s director.Snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("apply ipvs: data plane closed")
	}

	var errs []error
	want := make(map[director.ServiceKey]*service, len(s.Services))
	// rejected services keep whatever they have in the kernel, as a bad configuration
	// leaves the running one in place.
	rejected := map[director.ServiceKey]bool{}
	var order []director.ServiceKey
	for _, svc := range s.Services {
		ws, err := desired(svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", svc.Key, err))
			rejected[svc.Key] = true
			continue
		}
		if _, dup := want[svc.Key]; dup {
			errs = append(errs, fmt.Errorf("service %s: listed twice in the snapshot", svc.Key))
			continue
		}
		want[svc.Key] = ws
		order = append(order, svc.Key)
	}

	if d.resync {
		keys := slices.AppendSeq(slices.Collect(maps.Keys(want)), maps.Keys(d.applied))
		got, err := d.read(keys)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("read ipvs table: %w", err))...)
		}
		d.applied = got
		d.resync = false
	}

	// Services that are gone first, then the rest in snapshot order.
	for _, k := range slices.SortedFunc(maps.Keys(d.applied), compareKeys) {
		if _, ok := want[k]; ok || rejected[k] {
			continue
		}
		if err := d.h.DelService(ipvsService(k, "")); err != nil && !gone(err) {
			errs = append(errs, d.failed(fmt.Errorf("delete service %s: %w", k, err)))
			continue
		}
		delete(d.applied, k)
		d.log.Info("ipvs: service removed", "service", k)
	}
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("apply ipvs: %w", err))
			break
		}
		errs = append(errs, d.syncService(k, want[k])...)
	}
	if s.Timeouts != d.timeouts {
		// IPVS leaves a timeout of zero as it is, which is lvs_timeouts' "default" too.
		c := &ipvs.Config{TimeoutTCP: s.Timeouts.TCP, TimeoutTCPFin: s.Timeouts.TCPFin, TimeoutUDP: s.Timeouts.UDP}
		if err := d.h.SetConfig(c); err != nil {
			errs = append(errs, fmt.Errorf("set ipvs timeouts: %w", err))
		} else {
			d.timeouts = s.Timeouts
			d.log.Info("ipvs: timeouts set", "tcp", s.Timeouts.TCP, "tcpfin", s.Timeouts.TCPFin, "udp", s.Timeouts.UDP)
		}
	}
	return errors.Join(errs...)
}

// gone reports whether a delete failed because what it deletes is already gone (someone ran
// ipvsadm -D): the wanted state holds.
func gone(err error) bool { return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) }

// failed marks the table for re-reading before the next Apply and returns err.
func (d *Dataplane) failed(err error) error {
	d.resync = true
	return err
}

// syncService brings one service to want: new real servers are added before changed ones are
// edited and removed ones deleted, so the service is never left without a server it should have.
func (d *Dataplane) syncService(k director.ServiceKey, want *service) []error {
	have, ok := d.applied[k]
	if !ok {
		if err := d.h.NewService(ipvsServiceOf(k, want)); err != nil {
			return []error{d.failed(fmt.Errorf("add service %s: %w", k, err))}
		}
		have = &service{sched: want.sched, persist: want.persist, dests: make(map[destKey]dest)}
		d.applied[k] = have
		d.log.Info("ipvs: service added", "service", k, "scheduler", want.sched)
	} else if have.sched != want.sched || have.persist != want.persist {
		if err := d.h.UpdateService(ipvsServiceOf(k, want)); err != nil {
			return []error{d.failed(fmt.Errorf("set scheduler of service %s to %s: %w", k, want.sched, err))}
		}
		d.log.Info("ipvs: scheduler changed", "service", k, "from", have.sched, "to", want.sched,
			"persistence", time.Duration(want.persist.timeout)*time.Second)
		have.sched, have.persist = want.sched, want.persist
	}

	var errs []error
	svc := ipvsService(k, have.sched)
	keys := slices.SortedFunc(maps.Keys(want.dests), compareDests)
	for _, dk := range keys {
		if _, ok := have.dests[dk]; ok {
			continue
		}
		wd := want.dests[dk]
		if err := d.h.NewDestination(svc, ipvsDest(dk, wd)); err != nil {
			errs = append(errs, d.failed(fmt.Errorf("service %s: add real server %s: %w", k, dk, err)))
			continue
		}
		have.dests[dk] = wd
		d.log.Info("ipvs: real server added", "service", k, "server", dk, "weight", wd.weight, "method", wd.method)
	}
	for _, dk := range keys {
		hd, wd := have.dests[dk], want.dests[dk]
		if hd == wd {
			continue
		}
		if err := d.h.UpdateDestination(svc, ipvsDest(dk, wd)); err != nil {
			errs = append(errs, d.failed(fmt.Errorf("service %s: set real server %s: %w", k, dk, err)))
			continue
		}
		have.dests[dk] = wd
		d.log.Info("ipvs: real server changed", "service", k, "server", dk, "weight", wd.weight, "method", wd.method)
	}
	for _, dk := range slices.SortedFunc(maps.Keys(have.dests), compareDests) {
		if _, ok := want.dests[dk]; ok {
			continue
		}
		if err := d.h.DelDestination(svc, ipvsDest(dk, have.dests[dk])); err != nil && !gone(err) {
			errs = append(errs, d.failed(fmt.Errorf("service %s: remove real server %s: %w", k, dk, err)))
			continue
		}
		delete(have.dests, dk)
		d.log.Info("ipvs: real server removed", "service", k, "server", dk)
	}
	return errs
}

// read returns the kernel's state of the services with the given keys that exist.
func (d *Dataplane) read(keys []director.ServiceKey) (map[director.ServiceKey]*service, error) {
	wanted := make(map[director.ServiceKey]bool, len(keys))
	for _, k := range keys {
		wanted[k] = true
	}
	svcs, err := d.h.GetServices()
	if err != nil {
		return nil, err
	}
	got := make(map[director.ServiceKey]*service)
	for _, is := range svcs {
		k, ok := serviceKey(is)
		if !ok || !wanted[k] {
			continue
		}
		s := &service{sched: is.SchedName, persist: persistenceOf(is), dests: make(map[destKey]dest)}
		ids, err := d.h.GetDestinations(is)
		if err != nil {
			return nil, fmt.Errorf("list real servers of %s: %w", k, err)
		}
		for _, id := range ids {
			dk, dd, ok := destOf(id)
			if !ok {
				return nil, fmt.Errorf("service %s: real server with address %v", k, id.Address)
			}
			s.dests[dk] = dd
		}
		got[k] = s
	}
	return got, nil
}

// Close removes the services this data plane programmed, as keepalived does when it stops, and
// closes the netlink handle.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, k := range slices.SortedFunc(maps.Keys(d.applied), compareKeys) {
		if err := d.h.DelService(ipvsService(k, "")); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete service %s: %w", k, err))
		}
	}
	d.applied = nil
	d.h.Close()
	return errors.Join(errs...)
}

// ServiceStats is what IPVS reports for one virtual service.
type ServiceStats struct {
	Key       director.ServiceKey
	Scheduler string
	Counters  Counters
	Backends  []BackendStats
}

// BackendStats is what IPVS reports for one real server.
type BackendStats struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
	Method director.Method
	// ActiveConns and InactiveConns are IPVS's current connection counts (ipvsadm ActiveConn,
	// InActConn).
	ActiveConns, InactiveConns int
	Counters                   Counters
}

// Counters are IPVS's cumulative counters (ipvsadm --stats); the kernel reports 32 bits of the
// connection and packet counts.
type Counters struct {
	Conns, PacketsIn, PacketsOut uint64
	BytesIn, BytesOut            uint64
}

// Stats reads back from the kernel the services this data plane programmed, sorted by key with
// real servers by address and port.
func (d *Dataplane) Stats() ([]ServiceStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("ipvs stats: data plane closed")
	}
	svcs, err := d.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list ipvs services: %w", err)
	}
	var out []ServiceStats
	for _, is := range svcs {
		k, ok := serviceKey(is)
		if !ok {
			continue
		}
		if _, ours := d.applied[k]; !ours {
			continue
		}
		st := ServiceStats{Key: k, Scheduler: is.SchedName, Counters: counters(ipvs.DstStats(is.Stats))}
		ids, err := d.h.GetDestinations(is)
		if err != nil {
			return nil, fmt.Errorf("list real servers of %s: %w", k, err)
		}
		for _, id := range ids {
			dk, dd, ok := destOf(id)
			if !ok {
				continue
			}
			st.Backends = append(st.Backends, BackendStats{
				Addr: dk.addr, Port: dk.port, Weight: dd.weight, Method: dd.method,
				ActiveConns: id.ActiveConnections, InactiveConns: id.InactiveConnections,
				Counters: counters(id.Stats),
			})
		}
		slices.SortFunc(st.Backends, func(a, b BackendStats) int {
			return compareDests(destKey{a.Addr, a.Port}, destKey{b.Addr, b.Port})
		})
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServiceStats) int { return compareKeys(a.Key, b.Key) })
	return out, nil
}

func counters(s ipvs.DstStats) Counters {
	return Counters{
		Conns: uint64(s.Connections), PacketsIn: uint64(s.PacketsIn), PacketsOut: uint64(s.PacketsOut),
		BytesIn: s.BytesIn, BytesOut: s.BytesOut,
	}
}

func compareKeys(a, b director.ServiceKey) int {
	return cmp.Or(cmp.Compare(a.FWMark, b.FWMark), a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
}

func compareDests(a, b destKey) int {
	return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port))
}

func (k destKey) String() string { return netip.AddrPortFrom(k.addr, k.port).String() }

var _ director.StatsReader = (*Dataplane)(nil)

// TrafficStats implements director.StatsReader from IPVS's counters: packets and bytes are both
// directions (IPVS sees replies only with NAT), new flows are connections, and the live
// connections are IPVS's own ActiveConn/InActConn per real server, summed per service.
func (d *Dataplane) TrafficStats() (director.TrafficStats, error) {
	st, err := d.Stats()
	if err != nil {
		return director.TrafficStats{}, err
	}
	ts := director.TrafficStats{
		Services: make(map[director.ServiceKey]director.Counters, len(st)),
		Backends: make(map[director.ServiceKey]map[netip.AddrPort]director.Counters, len(st)),
	}
	for _, s := range st {
		sc := s.Counters.director()
		m := make(map[netip.AddrPort]director.Counters, len(s.Backends))
		for _, b := range s.Backends {
			bc := b.Counters.director()
			bc.ActiveConns, bc.InactConns = nonNegative(b.ActiveConns), nonNegative(b.InactiveConns)
			sc.ActiveConns += bc.ActiveConns
			sc.InactConns += bc.InactConns
			m[netip.AddrPortFrom(b.Addr, b.Port)] = bc
		}
		ts.Services[s.Key] = sc
		ts.Backends[s.Key] = m
	}
	return ts, nil
}

func (c Counters) director() director.Counters {
	return director.Counters{Packets: c.PacketsIn + c.PacketsOut, Bytes: c.BytesIn + c.BytesOut, NewFlows: c.Conns}
}

// nonNegative converts a connection count the kernel reports as a signed int.
func nonNegative(n int) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
