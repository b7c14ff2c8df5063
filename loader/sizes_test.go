package loader

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/director"
)

// TestTableSizes checks that Options size the connection tables, and that the reverse NAT
// tables follow them entry for entry (a smaller one would drop NAT replies' translations
// before their flows).
func TestTableSizes(t *testing.T) {
	requireBPF(t)
	l, err := New(Options{NoAttach: true, Resolver: newFakeResolver(), FlowTableSize: 4096, UnconfirmedTableSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkSizes(t, []mapSize{
		{"flows", l.objs.Flows.MaxEntries(), 4096},
		{"nat_flows", l.objs.NatFlows.MaxEntries(), 4096},
		{"unconfirmed", l.objs.Unconfirmed.MaxEntries(), 2048 / unconfWays}, // sets
		{"nat_unconfirmed", l.objs.NatUnconfirmed.MaxEntries(), 2048},
	})
}

// mapSize is a map's size and the one a test wants.
type mapSize struct {
	name      string
	got, want uint32
}

// checkSizes reports every map of sizes whose size is not the one wanted.
func checkSizes(t *testing.T, sizes []mapSize) {
	t.Helper()
	for _, m := range sizes {
		if m.got != m.want {
			t.Errorf("%s has %d entries, want %d", m.name, m.got, m.want)
		}
	}
}

// TestServiceAndBackendLimits checks that Options size the per-service, per-backend and
// selection-table maps, that Apply refuses what does not fit them by name, and that New
// refuses sizes beyond the limits.
func TestServiceAndBackendLimits(t *testing.T) {
	requireBPF(t)
	l, err := New(Options{NoAttach: true, Resolver: goldenResolver(), MaxServices: 3, MaxBackends: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkSizes(t, []mapSize{
		{"services", l.objs.Services.MaxEntries(), 3},
		{"svc_confs", l.objs.SvcConfs.MaxEntries(), 3},
		{"rr_pos", l.objs.RrPos.MaxEntries(), 3},
		{"svc_stats", l.objs.SvcStats.MaxEntries(), 3},
		{"sel_tables", l.objs.SelTables.MaxEntries(), 6},
		{"backends", l.objs.Backends.MaxEntries(), 5},
		{"be_stats", l.objs.BeStats.MaxEntries(), 5},
	})

	// Three services of two backends: the third service's second backend is the sixth.
	key := func(port uint16) director.ServiceKey {
		return director.ServiceKey{VIP: vip, Port: port, Proto: director.TCP}
	}
	s := snap(
		svc(key(80), "rr", be(beA, 1, true), be(beB, 1, true)),
		svc(key(81), "mh", be(beA, 1, true), be(beB, 1, true)),
		svc(key(82), "rr", be(beA, 1, true), be(beB, 1, true)),
	)
	err = l.Apply(context.Background(), *s)
	if err == nil || !strings.Contains(err.Error(), "to "+key(82).String()+": more than 5 backends") {
		t.Errorf("sixth backend: %v, want more than 5 backends", err)
	}
	s.Services = append(s.Services[:2], svc(key(82), "rr", be(beA, 1, true)), svc(key(83), "rr", be(beA, 1, true)))
	err = l.Apply(context.Background(), *s)
	if err == nil || !strings.Contains(err.Error(), "add service "+key(83).String()+": more than 3 services") {
		t.Errorf("fourth service: %v, want more than 3 services", err)
	}
	if got := backendOf(t, l, netip.MustParseAddr("192.0.2.9"), 1234); got != beA && got != beB {
		t.Errorf("a service that fits forwards to %s, want %s or %s", got, beA, beB)
	}

	for _, o := range []Options{{MaxServices: MaxServicesLimit + 1}, {MaxBackends: MaxBackendsLimit + 1}} {
		o.NoAttach, o.Resolver = true, goldenResolver()
		if l, err := New(o); err == nil {
			l.Close()
			t.Errorf("New(%+v) accepted sizes beyond the limits", o)
		} else if !strings.Contains(err.Error(), "want 1 to") {
			t.Errorf("New(%+v): %v, want a range", o, err)
		}
	}
}
