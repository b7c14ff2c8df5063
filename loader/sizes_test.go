package loader

import "testing"

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
	for _, m := range []struct {
		name      string
		got, want uint32
	}{
		{"flows", l.objs.Flows.MaxEntries(), 4096},
		{"nat_flows", l.objs.NatFlows.MaxEntries(), 4096},
		{"unconfirmed", l.objs.Unconfirmed.MaxEntries(), 2048},
		{"nat_unconfirmed", l.objs.NatUnconfirmed.MaxEntries(), 2048},
	} {
		if m.got != m.want {
			t.Errorf("%s has %d entries, want %d", m.name, m.got, m.want)
		}
	}
}
