package loader

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestApplyBatchesBackends checks the batched backend writes of one service: a real server listed
// twice is one backend, removed real servers are cleared in the map and their ids freed, and a
// freed id given to a new real server starts with zero counters on every CPU.
func TestApplyBatchesBackends(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beA, 1, true), be(beC, 1, true))))
	ids := backendIDs(l, tcp80)
	if len(ids) != 3 {
		t.Fatalf("backends %v, want A, B and C once each", ids)
	}
	if got := readTable(t, l, tcp80); len(got) != 3 {
		t.Errorf("table %v, want 3 entries", got)
	}
	for a, id := range ids {
		var bv lbBackendValue
		if err := l.objs.Backends.Lookup(id, &bv); err != nil {
			t.Fatal(err)
		}
		if bv.Flags&beFlagUp == 0 || bv.SvcId != l.services[tcp80].val.Id {
			t.Errorf("backend %s (id %d) = %+v, want up in service %d", a, id, bv, l.services[tcp80].val.Id)
		}
	}

	// Traffic counted for B and C, which are then removed.
	gone := []uint32{ids[netip.AddrPortFrom(beB, 80).String()], ids[netip.AddrPortFrom(beC, 80).String()]}
	for _, id := range gone {
		vals := make([]lbLbStats, l.ncpu)
		for i := range vals {
			vals[i] = lbLbStats{Packets: 7, Bytes: 700, NewFlows: 1}
		}
		if err := l.objs.BeStats.Put(id, vals); err != nil {
			t.Fatal(err)
		}
	}
	l.writes = 0
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true))))
	// Two backends cleared, and the table swap: fill, slot, service entry, old slot.
	if l.writes != 6 {
		t.Errorf("removing two backends: %d writes, want 6", l.writes)
	}
	if diff := cmp.Diff(map[string]uint32{netip.AddrPortFrom(beA, 80).String(): ids[netip.AddrPortFrom(beA, 80).String()]}, backendIDs(l, tcp80)); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	for _, id := range gone {
		var bv lbBackendValue
		if err := l.objs.Backends.Lookup(id, &bv); err != nil {
			t.Fatal(err)
		}
		if bv != (lbBackendValue{}) {
			t.Errorf("removed backend %d not cleared: %+v", id, bv)
		}
	}

	// B and C come back, on the freed ids, with clean counters.
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true))))
	back := backendIDs(l, tcp80)
	got := []uint32{back[netip.AddrPortFrom(beB, 80).String()], back[netip.AddrPortFrom(beC, 80).String()]}
	slices.Sort(gone)
	slices.Sort(got)
	if diff := cmp.Diff(gone, got); diff != "" {
		t.Errorf("ids of the returning backends (-freed +got):\n%s", diff)
	}
	for _, id := range got {
		var vals []lbLbStats
		if err := l.objs.BeStats.Lookup(id, &vals); err != nil {
			t.Fatal(err)
		}
		for cpu, v := range vals {
			if v != (lbLbStats{}) {
				t.Errorf("backend id %d, CPU %d: counters %+v, want zero", id, cpu, v)
			}
		}
	}
}
