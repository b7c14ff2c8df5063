package loader

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestFillTable checks that a selection table written through its mapping (BPF_F_MMAPABLE) reads
// back entry for entry through the map, element stride and page rounding included, as does one
// written by a batch update (a small table, or a template without the flag).
func TestFillTable(t *testing.T) {
	requireBPF(t)
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := spec.Maps[lbMapSelTables].InnerMap
	if tmpl.Flags&unix.BPF_F_MMAPABLE == 0 {
		t.Fatalf("selection-table template flags %#x lack BPF_F_MMAPABLE", tmpl.Flags)
	}
	noMmap := tmpl.Copy()
	noMmap.Flags &^= unix.BPF_F_MMAPABLE
	for _, tc := range []struct {
		name string
		spec *ebpf.MapSpec
		n    int
	}{
		{"mmap, smallest", tmpl, mmapMinEntries},
		{"mmap, two pages and one entry", tmpl, 1025},
		{"mmap, Maglev size", tmpl, 65537},
		{"batch update, small table", tmpl, 1},
		{"batch update, small table of two pages", tmpl, mmapMinEntries - 1},
		{"batch update, template without BPF_F_MMAPABLE", noMmap, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := make([]uint32, tc.n)
			for i := range ids {
				ids[i] = uint32(i*2654435761) ^ 0xa5a5a5a5
			}
			ms := tc.spec.Copy()
			ms.MaxEntries = uint32(tc.n)
			m, err := ebpf.NewMap(ms)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := fillTable(m, ms, ids); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, want := range ids {
				var got uint32
				if err := m.Lookup(uint32(i), &got); err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				if got != want && bad < 5 {
					t.Errorf("entry %d is %#x, want %#x", i, got, want)
					bad++
				}
			}
		})
	}
}
