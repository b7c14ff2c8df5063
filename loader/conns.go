package loader

// Live connection counts and the connection-count schedulers.
//
// The data path keeps no per-backend counters of open connections: it only pins flows in the
// flows and unconfirmed LRU maps. Userspace counts them by walking both maps, and derives IPVS's
// two numbers from each entry (see classify): ActiveConn, the connections IPVS would have in
// ESTABLISHED, and InActConn, those in any other state. Services scheduled by lc, wlc, sed, nq,
// fo, ovf, lblc or lblcr get their selection table rebuilt from those counts every
// connRefreshPeriod (sched.ConnState.Table), and on every Apply.

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/sched"
)

const (
	// connRefreshPeriod is how often the tables of connection-count schedulers are rebuilt.
	connRefreshPeriod = time.Second
	// synRecvTimeout is IPVS's SYN_RECV timeout: an unconfirmed TCP flow (SYN seen, no ACK yet)
	// silent longer than this is no longer counted.
	synRecvTimeout = 60 * time.Second
	// connCountsReuse is how long counts are reused by the tables of other services.
	connCountsReuse = 100 * time.Millisecond
	// connBatch is how many entries one batch lookup reads.
	connBatch = 4096
)

// FlowCount is the flows pinned to one backend, in ipvsadm's terms.
type FlowCount struct {
	// Active is ActiveConn: confirmed TCP flows with no FIN or RST seen, within the service's
	// TCP idle timeout.
	Active int
	// Inactive is InActConn: TCP flows after a FIN or RST (within the tcpfin timeout), TCP
	// flows still in their handshake (within 60 s), and every UDP flow within the UDP timeout.
	Inactive int
	// UDP is how many of Inactive are UDP flows.
	UDP int
}

// connWatch is the state of the connection counting and of the tables built from it.
type connWatch struct {
	// Guarded by Loader.mu.
	period  time.Duration // between refreshes; 0 means connRefreshPeriod (tests lengthen it)
	running bool
	stop    chan struct{} // closed by stopConns
	done    chan struct{} // closed when the refresh goroutine returns
	stopped bool          // stopConns ran: start nothing more
	at      time.Time     // when counts were read
	counts  map[uint32]FlowCount
	svcs    map[director.ServiceKey]*connService
	lastErr string // last refresh error logged
}

// connService is the scheduling state of one service using a connection-count scheduler.
type connService struct {
	state sched.ConnState
	prev  map[uint32]uint64 // each backend's NewFlows counter at the previous table
	ids   []uint32          // the table in the data path
}

// classify says how IPVS would count a flow entry of a service whose settings are conf, age
// nanoseconds after its last packet: as active (ESTABLISHED), inactive (any other state), or not
// at all (expired: IPVS would have dropped the connection). XDP sees only the client's side of a
// TCP connection, so the states are inferred: a confirmed flow (its handshake's ACK passed) with
// no FIN or RST is ESTABLISHED until the TCP idle timeout; one with a FIN or RST is closing
// (FIN_WAIT, TIME_WAIT, CLOSE) until the tcpfin timeout; an unconfirmed one is SYN_RECV until
// 60 s. IPVS counts every UDP connection as inactive, until the UDP timeout.
func classify(proto uint8, confirmed bool, flags uint32, age uint64, conf lbSvcConf) (active, inactive bool) {
	within := func(limit uint64) bool { return limit == 0 || age <= limit }
	if proto != uint8(director.TCP) {
		return false, within(conf.IdleNs)
	}
	switch {
	case !confirmed:
		return false, within(conf.IdleNs) && age <= uint64(synRecvTimeout)
	case flags&flowFlagFin != 0:
		return false, within(cmp.Or(conf.FinNs, conf.IdleNs))
	}
	return within(conf.IdleNs), false
}

// owner is what a flow pinned to a backend id must match to count for it.
type owner struct {
	key  director.ServiceKey
	conf lbSvcConf
}

// flowCounts returns the flows per backend id, read at most maxAge ago, so that one Apply or
// refresh walks the flow tables once for all its services. l.mu must be held.
func (l *Loader) flowCounts(maxAge time.Duration) (map[uint32]FlowCount, error) {
	if l.conns.counts != nil && time.Since(l.conns.at) <= maxAge {
		return l.conns.counts, nil
	}
	counts, err := l.walkFlows(l.owners())
	if err != nil {
		return nil, err
	}
	l.conns.counts, l.conns.at = counts, time.Now()
	return counts, nil
}

// owners maps every backend id in use to its service. l.mu must be held.
func (l *Loader) owners() map[uint32]owner {
	owners := map[uint32]owner{}
	for _, st := range l.services {
		for _, b := range st.backends {
			owners[b.id] = owner{key: st.key, conf: st.conf}
		}
	}
	return owners
}

// walkFlows counts the flows of both tables for the backends of owners. It needs no lock, but
// the maps must stay open: the refresh goroutine calls it unlocked, and Close waits for that
// goroutine before closing them.
func (l *Loader) walkFlows(owners map[uint32]owner) (map[uint32]FlowCount, error) {
	counts := map[uint32]FlowCount{}
	if len(owners) == 0 {
		return counts, nil
	}
	now, err := ktimeNow()
	if err != nil {
		return nil, err
	}
	if err := countFlows(eachFlow(l.objs.Flows), true, now, owners, counts); err != nil {
		return nil, fmt.Errorf("count flows: %w", err)
	}
	if err := countFlows(eachUnconfirmed(l.objs.Unconfirmed), false, now, owners, counts); err != nil {
		return nil, fmt.Errorf("count unconfirmed flows: %w", err)
	}
	return counts, nil
}

// countFlows adds the flows each yields to counts. A flow counts for its backend only if it is a
// flow of that backend's service (a recycled backend id may still be named by flows of an old
// one).
func countFlows(each func(func(*lbFlowKey, *lbFlowValue)) error, confirmed bool, now uint64, owners map[uint32]owner, counts map[uint32]FlowCount) error {
	return each(func(k *lbFlowKey, v *lbFlowValue) {
		o, ok := owners[v.Backend]
		if !ok || !flowOf(k, o.key) {
			return
		}
		var age uint64
		if now > v.LastSeenNs {
			age = now - v.LastSeenNs
		}
		active, inactive := classify(k.Proto, confirmed, v.Flags, age, o.conf)
		if !active && !inactive {
			return
		}
		c := counts[v.Backend]
		if active {
			c.Active++
		} else {
			c.Inactive++
			if k.Proto == uint8(director.UDP) {
				c.UDP++
			}
		}
		counts[v.Backend] = c
	})
}

// eachFlow returns a walk over the entries of the flow hash table m. It reads at most twice the
// map's size, in batches where the kernel supports them.
func eachFlow(m *ebpf.Map) func(func(*lbFlowKey, *lbFlowValue)) error {
	return func(add func(*lbFlowKey, *lbFlowValue)) error {
		limit := 2 * int(m.MaxEntries())
		keys := make([]lbFlowKey, connBatch)
		vals := make([]lbFlowValue, connBatch)
		var cursor ebpf.MapBatchCursor
		for read := 0; read < limit; {
			n, err := m.BatchLookup(&cursor, keys, vals, nil)
			for i := range n {
				add(&keys[i], &vals[i])
			}
			read += n
			switch {
			case errors.Is(err, ebpf.ErrKeyNotExist):
				return nil
			case errors.Is(err, ebpf.ErrNotSupported) && read == 0:
				return iterateFlows(m, limit, add)
			case err != nil:
				return err
			case n == 0:
				return nil
			}
		}
		return nil
	}
}

// iterateFlows is countFlows for kernels without batch lookups.
func iterateFlows(m *ebpf.Map, limit int, add func(*lbFlowKey, *lbFlowValue)) error {
	var k lbFlowKey
	var v lbFlowValue
	it := m.Iterate()
	for read := 0; read < limit && it.Next(&k, &v); read++ {
		add(&k, &v)
	}
	return it.Err()
}

// flowOf reports whether the flow key k is traffic of service s (a port-0 service takes every
// port).
func flowOf(k *lbFlowKey, s director.ServiceKey) bool {
	fam, addr := addrKey(s.VIP)
	return k.Family == fam && k.Dst == addr && k.Proto == uint8(s.Proto) && (s.Port == 0 || k.Dport == htons(s.Port))
}

// connTable builds the selection table of a service scheduled by the connection-count scheduler
// algo, from the live counts of its eligible backends and the new flows each received since the
// previous table, and makes sure the refresh goroutine runs. It returns the table and the one
// in the data path. l.mu must be held.
func (l *Loader) connTable(st *service, algo string, eligible []sched.Backend) (ids, cur []uint32, err error) {
	if l.conns.svcs == nil {
		l.conns.svcs = map[director.ServiceKey]*connService{}
	}
	cs := l.conns.svcs[st.key]
	if cs == nil {
		cs = &connService{prev: map[uint32]uint64{}}
		l.conns.svcs[st.key] = cs
	}
	counts, err := l.flowCounts(connCountsReuse)
	if err != nil {
		// Counts missing must not stop the service: schedule as if every backend were idle.
		l.logConnErr(err)
		counts = nil
	}
	loads := make([]sched.Load, len(eligible))
	prev := make(map[uint32]uint64, len(eligible))
	for i, b := range eligible {
		c := counts[b.ID]
		// IPVS counts UDP connections as inactive only, which would leave sed, nq and ovf
		// blind to UDP load; the schedulers count them as active instead.
		loads[i] = sched.Load{Active: c.Active + c.UDP, Inactive: c.Inactive - c.UDP}
		if bc, err := l.counters(l.objs.BeStats.Lookup, b.ID); err == nil {
			if p, ok := cs.prev[b.ID]; ok && bc.NewFlows >= p {
				loads[i].New = int(bc.NewFlows - p)
			}
			prev[b.ID] = bc.NewFlows
		}
	}
	cs.prev = prev
	ids, err = cs.state.Table(algo, eligible, loads, time.Now())
	if err != nil {
		return nil, nil, err
	}
	l.startConns()
	return ids, cs.ids, nil
}

// connTableWritten records that the table of key in the data path is now ids.
func (l *Loader) connTableWritten(key director.ServiceKey, ids []uint32) {
	if cs := l.conns.svcs[key]; cs != nil {
		cs.ids = ids
	}
}

// startConns starts the refresh goroutine unless it runs or Close began. l.mu must be held.
func (l *Loader) startConns() {
	if l.conns.running || l.conns.stopped || l.closed {
		return
	}
	l.conns.running = true
	l.conns.stop = make(chan struct{})
	l.conns.done = make(chan struct{})
	go l.refreshLoop(cmp.Or(l.conns.period, connRefreshPeriod), l.conns.stop, l.conns.done)
}

// stopConns stops the refresh goroutine and waits for it; Close calls it before taking l.mu.
func (l *Loader) stopConns() {
	l.mu.Lock()
	l.conns.stopped = true
	running, stop, done := l.conns.running, l.conns.stop, l.conns.done
	l.conns.running = false
	l.mu.Unlock()
	if running {
		close(stop)
		<-done
	}
}

func (l *Loader) refreshLoop(period time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.refreshConns()
		}
	}
}

// refreshConns rebuilds the tables of every service using a connection-count scheduler from
// fresh counts, writing those that changed.
func (l *Loader) refreshConns() {
	// Walk the flow tables without holding l.mu (a large table takes a good part of a
	// second), then rebuild the tables with the counts under it.
	l.mu.Lock()
	if l.closed || !slices.ContainsFunc(slices.Collect(maps.Values(l.services)), usesConns) {
		l.mu.Unlock()
		return
	}
	owners := l.owners()
	l.mu.Unlock()
	counts, err := l.walkFlows(owners)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if err != nil {
		l.logConnErr(err)
		return
	}
	// Backends added meanwhile are counted as idle until the next refresh.
	l.conns.counts, l.conns.at = counts, time.Now()
	var keys []director.ServiceKey
	for key, st := range l.services {
		if usesConns(st) {
			keys = append(keys, key)
		}
	}
	for key := range l.conns.svcs {
		if !slices.Contains(keys, key) {
			delete(l.conns.svcs, key)
		}
	}
	slices.SortFunc(keys, compareKeys)
	var errs []error
	for _, key := range keys {
		st := l.services[key]
		if err := l.syncTable(st, st.sched, st.table); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		l.logConnErr(err)
	} else {
		l.conns.lastErr = ""
	}
}

// usesConns reports whether st's table is built by a connection-count scheduler.
func usesConns(st *service) bool { return sched.IsConnAlgo(st.sched) && st.written }

// logConnErr logs err unless it is the one logged last.
func (l *Loader) logConnErr(err error) {
	if err.Error() != l.conns.lastErr {
		l.log.Warn("refresh connection-count scheduling", "err", err)
		l.conns.lastErr = err.Error()
	}
}

// ConnCounts returns the live flow counts of every backend of every service applied.
func (l *Loader) ConnCounts() (map[director.ServiceKey]map[netip.AddrPort]FlowCount, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("count flows: loader is closed")
	}
	counts, err := l.flowCounts(0)
	if err != nil {
		return nil, err
	}
	out := make(map[director.ServiceKey]map[netip.AddrPort]FlowCount, len(l.services))
	for key, st := range l.services {
		m := make(map[netip.AddrPort]FlowCount, len(st.backends))
		for ap, b := range st.backends {
			m[ap] = counts[b.id]
		}
		out[key] = m
	}
	return out, nil
}
