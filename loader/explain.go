package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
)

var _ director.Explainer = (*Loader)(nil)

// Explain says what the XDP program would do with the next packet from src to dst, following
// its steps (bpf/lb.bpf.c) over the maps the kernel holds: the service lookup, the confirmed
// then the unconfirmed flow table, and for a new flow the selection table entry, computed as
// the program computes it (SourceHash for hashing tables, the per-CPU cursors for round
// robin). It only reads maps, so asking never creates, confirms or moves a flow.
func (l *Loader) Explain(proto director.Proto, src, dst netip.AddrPort) (director.Explanation, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	switch {
	case !src.Addr().IsValid() || !dst.Addr().IsValid():
		return director.Explanation{}, errors.New("explain: source and destination must be addresses")
	case src.Addr().Is4() != dst.Addr().Is4():
		return director.Explanation{}, fmt.Errorf("explain: %s and %s are of different address families", src.Addr(), dst.Addr())
	case proto != director.TCP && proto != director.UDP:
		return director.Explanation{Verdict: "pass", Why: []string{
			fmt.Sprintf("%s is neither TCP nor UDP: the XDP program passes it to the kernel's stack", proto)}}, nil
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return director.Explanation{}, errors.New("explain: loader is closed")
	}
	names := l.backendNames()
	key := director.ServiceKey{VIP: dst.Addr(), Port: dst.Port(), Proto: proto}
	fk := flowKey(proto, src, dst)

	// The service of the destination, else the all-ports service of its address (port 0).
	var svc lbSvcValue
	found := false
	for _, port := range []uint16{dst.Port(), 0} {
		k := director.ServiceKey{VIP: key.VIP, Port: port, Proto: proto}
		sk := svcKey(k)
		err := l.objs.Services.Lookup(&sk, &svc)
		if err == nil {
			key, found = k, true
			break
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return director.Explanation{}, fmt.Errorf("explain: look up service %s: %w", k, err)
		}
	}
	if !found {
		return l.explainNotVIP(fk, key, names)
	}

	ex := director.Explanation{Service: &key, Verdict: "forward"}
	if st := l.services[key]; st != nil {
		ex.Scheduler, ex.Table = st.sched, tableAlgo(st.sched)
	}
	why := func(format string, args ...any) { ex.Why = append(ex.Why, fmt.Sprintf(format, args...)) }
	if key.Port == 0 {
		why("%s is no service of its own; all-ports virtual service %s takes it (service id %d)", dst, key, svc.Id)
	} else {
		why("%s is virtual service %s (service id %d)", dst, key, svc.Id)
	}
	var conf lbSvcConf
	if err := l.objs.SvcConfs.Lookup(svc.Id, &conf); err != nil {
		return director.Explanation{}, fmt.Errorf("explain: read settings of service id %d: %w", svc.Id, err)
	}

	now, err := ktimeNow()
	if err != nil {
		return director.Explanation{}, fmt.Errorf("explain: %w", err)
	}
	// pinned() in lb.bpf.c: the confirmed table first, then the unconfirmed one.
	stale := false
	lookupFlows := func(k *lbFlowKey) (lbFlowValue, bool, error) {
		var fv lbFlowValue
		err := l.objs.Flows.Lookup(k, &fv)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return fv, false, nil
		}
		return fv, err == nil, err
	}
	for _, tbl := range []struct {
		lookup func(*lbFlowKey) (lbFlowValue, bool, error)
		name   string
	}{
		{lookupFlows, director.FlowConfirmed},
		{func(k *lbFlowKey) (lbFlowValue, bool, error) { return lookupUnconfirmed(l.objs.Unconfirmed, k) }, director.FlowUnconfirmed},
	} {
		fv, found, err := tbl.lookup(&fk)
		if err != nil {
			return director.Explanation{}, fmt.Errorf("explain: look up %s flow: %w", tbl.name, err)
		}
		if !found {
			why("flow table hit: no, the %s table does not hold %s -> %s", tbl.name, src, dst)
			continue
		}
		name, known := names[fv.Backend]
		// Unsigned, as in the program; a packet seen after now reads as idle 0.
		idle := time.Duration(0)
		if age := now - fv.LastSeenNs; age < 1<<63 {
			idle = time.Duration(age)
		}
		// expired() in lb.bpf.c: a flow silent past its timeout counts as absent.
		limit := time.Duration(conf.IdleNs)
		if fv.Flags&flowFlagFin != 0 && conf.FinNs != 0 {
			limit = time.Duration(conf.FinNs)
		}
		if limit > 0 && idle > limit {
			why("flow table hit: no, the %s table's entry (to %s) has been idle %v, past its timeout %v: it counts as absent",
				tbl.name, nameOr(name, known, fv.Backend), idle.Round(time.Millisecond), limit)
			continue
		}
		be, usable, err := l.usable(fv.Backend, svc.Id)
		if err != nil {
			return director.Explanation{}, err
		}
		if ex.Pinned == nil {
			ex.Flow, ex.Idle = tbl.name, idle
			if known {
				ex.Pinned = &name
			}
			ex.PinnedUsable = usable
		}
		if !usable {
			why("flow table hit: the %s table pins the flow to %s (backend id %d, idle %v), which is down or gone: the flow is scheduled again",
				tbl.name, nameOr(name, known, fv.Backend), fv.Backend, idle.Round(time.Millisecond))
			stale = stale || tbl.name == director.FlowConfirmed
			continue
		}
		ex.Flow, ex.Idle, ex.Pinned, ex.PinnedUsable = tbl.name, idle, nil, true
		if known {
			ex.Pinned = &name
			ex.RealServer = &name
		}
		ex.Method = methodName(be.Method)
		why("flow table hit: the %s table pins the flow to %s (backend id %d), last packet %v ago",
			tbl.name, nameOr(name, known, fv.Backend), fv.Backend, idle.Round(time.Millisecond))
		if tbl.name == director.FlowUnconfirmed {
			why("a second packet other than a bare SYN confirms the flow")
		}
		why("forwarded to %s by %s", nameOr(name, known, fv.Backend), ex.Method)
		return ex, nil
	}
	if ex.Flow == "" {
		ex.Flow = director.FlowNone
	}

	// persisted() in lb.bpf.c: a persistent client's template, while younger than the timeout,
	// names the real server of its new flows.
	if conf.PersistNs != 0 {
		pk := lbPersistKey{SvcId: svc.Id}
		_, pk.Src = addrKey(src.Addr())
		for i := range pk.Src {
			pk.Src[i] &= conf.PersistMask[i]
		}
		var tv lbFlowValue
		err := l.objs.Persist.Lookup(&pk, &tv)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			why("persistence: no template for the client's network %s", addrFromKey(pk.Src, src.Addr().Is4()))
		case err != nil:
			return director.Explanation{}, fmt.Errorf("explain: look up persistence template: %w", err)
		case now-tv.LastSeenNs > conf.PersistNs:
			why("persistence: the client's template (to %s) is older than persistence_timeout %v",
				nameOr(names[tv.Backend], hasName(names, tv.Backend), tv.Backend), time.Duration(conf.PersistNs))
		default:
			var be lbBackendValue
			if err := l.objs.Backends.Lookup(tv.Backend, &be); err != nil {
				return director.Explanation{}, fmt.Errorf("explain: look up backend %d: %w", tv.Backend, err)
			}
			name, known := names[tv.Backend]
			if be.Flags&beFlagNew == 0 || be.SvcId != svc.Id {
				why("persistence: the client's template names %s, which takes no new flows (down or weight 0): scheduled anew",
					nameOr(name, known, tv.Backend))
				break
			}
			if known {
				ex.RealServer = &name
			}
			ex.Method = methodName(be.Method)
			why("persistence: the client's network %s has a template naming %s, used %v ago (persistence_timeout %v)",
				addrFromKey(pk.Src, src.Addr().Is4()), nameOr(name, known, tv.Backend),
				time.Duration(now-tv.LastSeenNs).Round(time.Millisecond), time.Duration(conf.PersistNs))
			why("forwarded to %s by %s", nameOr(name, known, tv.Backend), ex.Method)
			return ex, nil
		}
	}

	// select_backend() in lb.bpf.c.
	if svc.SelSize == 0 {
		ex.Verdict = "drop"
		why("the service has no eligible real server (all down or weight 0): new flows are dropped (drop_no_backend)")
		return ex, nil
	}
	table, owned, err := l.table(svc.SelSlot)
	if err != nil {
		return director.Explanation{}, fmt.Errorf("explain: look up selection table in slot %d: %w", svc.SelSlot, err)
	}
	if owned {
		defer table.Close()
	}
	sel := &director.Selection{Size: int(svc.SelSize)}
	ex.Selection = sel
	if svc.Flags&svcFlagRR != 0 {
		sel.Method = director.SelectRoundRobin
		var cursors []uint32
		if err := l.objs.RrPos.Lookup(svc.Id, &cursors); err != nil {
			return director.Explanation{}, fmt.Errorf("explain: read round-robin cursors: %w", err)
		}
		for _, c := range cursors {
			sel.Cursors = append(sel.Cursors, int(c%svc.SelSize))
		}
		for i := uint32(0); i < svc.SelSize && i < director.MaxExplainEntries; i++ {
			var id uint32
			if err := table.Lookup(i, &id); err != nil {
				return director.Explanation{}, fmt.Errorf("explain: read selection table entry %d: %w", i, err)
			}
			sel.Entries = append(sel.Entries, names[id])
		}
		why("new flow: %s table of %d entries, indexed by a per-CPU round-robin cursor; the CPU receiving the packet decides, so the real server is not fixed",
			ex.Table, svc.SelSize)
		next := map[int]bool{}
		for cpu, c := range sel.Cursors {
			if next[c] {
				continue
			}
			next[c] = true
			var id uint32
			if err := table.Lookup(uint32(c), &id); err == nil {
				why("next on CPU %d: entry %d, %s", cpu, c, names[id])
			}
		}
		ex.Verdict = "forward"
		return ex, nil
	}

	hashed := src.Addr().String()
	switch conf.Hash {
	case hashDst:
		sel.Method = director.SelectDestHash
		sel.Hash = SourceHash(dst.Addr())
		hashed = dst.Addr().String()
	case hashSrcPort:
		sel.Method = director.SelectSourcePortHash
		sel.Hash = SourcePortHash(src.Addr(), src.Port())
		hashed = src.String()
	default:
		sel.Method = director.SelectSourceHash
		sel.Hash = SourceHash(src.Addr())
	}
	sel.Slot = int(sel.Hash % svc.SelSize)
	var id uint32
	if err := table.Lookup(uint32(sel.Slot), &id); err != nil {
		return director.Explanation{}, fmt.Errorf("explain: read selection table entry %d: %w", sel.Slot, err)
	}
	name, known := names[id]
	why("new flow: %s table of %d entries, by %s; hash(%s) = %#08x, slot %d of %d holds %s (backend id %d)",
		ex.Table, svc.SelSize, sel.Method, hashed, sel.Hash, sel.Slot, svc.SelSize, nameOr(name, known, id), id)
	be, usable, err := l.usable(id, svc.Id)
	if err != nil {
		return director.Explanation{}, err
	}
	if !usable {
		ex.Verdict = "drop"
		why("that backend is not up for this service (a table being replaced): dropped (drop_table_miss)")
		return ex, nil
	}
	if known {
		ex.RealServer = &name
	}
	ex.Method = methodName(be.Method)
	if stale {
		why("the flow stays in the confirmed table with its new real server")
	} else {
		why("the first packet puts the flow in the unconfirmed table")
	}
	if conf.PersistNs != 0 {
		why("persistence: the client's new flows follow it there for persistence_timeout %v", time.Duration(conf.PersistNs))
	}
	why("forwarded to %s by %s", nameOr(name, known, id), ex.Method)
	return ex, nil
}

// explainNotVIP explains a packet matching no service: a reply of a NAT flow, translated back,
// or anything else, passed to the stack.
func (l *Loader) explainNotVIP(fk lbFlowKey, key director.ServiceKey, names map[uint32]netip.AddrPort) (director.Explanation, error) {
	for _, tbl := range []struct {
		m    *ebpf.Map
		name string
	}{{l.objs.NatFlows, director.FlowConfirmed}, {l.objs.NatUnconfirmed, director.FlowUnconfirmed}} {
		var nv lbNatValue
		if err := tbl.m.Lookup(&fk, &nv); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				return director.Explanation{}, fmt.Errorf("explain: look up NAT reply: %w", err)
			}
			continue
		}
		vip := addrFromKey(nv.Vip, fk.Family == afInet)
		from := netip.AddrPortFrom(vip, htons(nv.Vport)) // swapping bytes is its own inverse
		name, known := names[nv.Backend]
		return director.Explanation{Flow: tbl.name, Verdict: "forward", Method: "NAT", Why: []string{
			fmt.Sprintf("%s is no virtual service, but the %s NAT table holds the reply of a flow to %s",
				netip.AddrPortFrom(key.VIP, key.Port), tbl.name, nameOr(name, known, nv.Backend)),
			fmt.Sprintf("its source is translated back to %s and it is forwarded to the client", from),
		}}, nil
	}
	return director.Explanation{Flow: director.FlowNone, Verdict: "pass", Why: []string{
		fmt.Sprintf("not a VIP: no virtual service is %s, so the packet is passed to the stack", key)}}, nil
}

// usable mirrors usable() in lb.bpf.c: the backend may carry a flow of service svcID.
func (l *Loader) usable(id, svcID uint32) (lbBackendValue, bool, error) {
	var be lbBackendValue
	if err := l.objs.Backends.Lookup(id, &be); err != nil {
		return be, false, fmt.Errorf("explain: look up backend %d: %w", id, err)
	}
	return be, be.Flags&beFlagUp != 0 && be.SvcId == svcID, nil
}

// backendNames maps every backend id in use to its real server.
func (l *Loader) backendNames() map[uint32]netip.AddrPort {
	m := map[uint32]netip.AddrPort{}
	for _, st := range l.services {
		for ap, b := range st.backends {
			m[b.id] = ap
		}
	}
	return m
}

func hasName(names map[uint32]netip.AddrPort, id uint32) bool {
	_, ok := names[id]
	return ok
}

func nameOr(ap netip.AddrPort, known bool, id uint32) string {
	if known {
		return ap.String()
	}
	return fmt.Sprintf("backend id %d (no longer configured)", id)
}

func methodName(m uint8) string {
	switch m {
	case methodTUN:
		return director.MethodTUN.String()
	case methodNAT:
		return director.MethodNAT.String()
	}
	return director.MethodDR.String()
}

// flowKey is the flows key of a packet of proto from src to dst.
func flowKey(proto director.Proto, src, dst netip.AddrPort) lbFlowKey {
	k := lbFlowKey{Sport: htons(src.Port()), Dport: htons(dst.Port()), Proto: uint8(proto)}
	k.Family, k.Src = addrKey(src.Addr())
	_, k.Dst = addrKey(dst.Addr())
	return k
}

// addrFromKey is the inverse of addrKey.
func addrFromKey(b [16]uint8, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}
