package sched

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPickFollowsIPVS(t *testing.T) {
	three := []Backend{{ID: 1, Weight: 1}, {ID: 2, Weight: 2}, {ID: 3, Weight: 3}}
	tests := []struct {
		name  string
		algo  string
		bs    []Backend
		loads []Load
		want  int
	}{
		{"lc fewest active", "lc", three, []Load{{Active: 3}, {Active: 1}, {Active: 2}}, 1},
		{"lc an active costs 256 inactive", "lc", three, []Load{{Active: 1}, {Inactive: 255}, {Inactive: 256, Active: 0}}, 1},
		{"lc ignores weight", "lc", three, []Load{{Active: 2}, {Active: 2}, {Active: 3}}, 0},
		{"lc first of equals", "lc", three, []Load{{}, {}, {}}, 0},
		{"lc skips weight 0", "lc", []Backend{{ID: 1, Weight: 0}, {ID: 2, Weight: 1}}, []Load{{}, {Active: 5}}, 1},
		{"wlc overhead per weight", "wlc", three, []Load{{Active: 2}, {Active: 3}, {Active: 2}}, 2},
		{"wlc first of equals", "wlc", three, []Load{{Active: 1}, {Active: 2}, {Active: 3}}, 0},
		{"sed counts the next connection", "sed", three, []Load{{Active: 0}, {Active: 1}, {Active: 2}}, 0},
		{"sed ignores inactive", "sed", three, []Load{{Active: 1, Inactive: 100}, {Active: 5}, {Active: 5}}, 0},
		{"sed weighted", "sed", three, []Load{{Active: 1}, {Active: 2}, {Active: 4}}, 1},
		{"nq takes an idle server first", "nq", three, []Load{{Active: 1}, {Active: 5}, {Active: 0}}, 2},
		{"nq else sed", "nq", three, []Load{{Active: 1}, {Active: 2}, {Active: 4}}, 1},
		{"fo highest weight", "fo", three, []Load{{}, {}, {Active: 1000}}, 2},
		{"fo first of equals", "fo", []Backend{{ID: 1, Weight: 5}, {ID: 2, Weight: 5}}, []Load{{Active: 9}, {}}, 0},
		{"ovf highest weight within its weight", "ovf", three, []Load{{}, {}, {Active: 3}}, 2},
		{"ovf overflows past its weight", "ovf", three, []Load{{}, {}, {Active: 4}}, 1},
		{"ovf all overflowing", "ovf", three, []Load{{Active: 2}, {Active: 3}, {Active: 4}}, -1},
		{"none eligible", "wlc", []Backend{{ID: 1}}, []Load{{}}, -1},
		{"unknown", "xx", three, []Load{{}, {}, {}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Pick(tt.algo, tt.bs, tt.loads); got != tt.want {
				t.Errorf("Pick(%s) = %d, want %d", tt.algo, got, tt.want)
			}
		})
	}
}

// count returns how often each ID appears in table.
func count(table []uint32) map[uint32]int {
	m := map[uint32]int{}
	for _, id := range table {
		m[id]++
	}
	return m
}

func TestConnTable(t *testing.T) {
	four := []Backend{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}, {ID: 3, Weight: 1}, {ID: 4, Weight: 1}}
	now := time.Unix(1000, 0)
	tests := []struct {
		name  string
		algo  string
		bs    []Backend
		loads []Load
		// want is the set of backends with entries; wantMost the one with the most.
		want     []uint32
		wantMost uint32
	}{
		{
			name:     "lc steers away from a loaded server",
			algo:     "lc",
			bs:       four,
			loads:    []Load{{Active: 100, New: 10}, {Active: 1, New: 10}, {Active: 1, New: 10}, {Active: 1, New: 10}},
			want:     []uint32{2, 3, 4},
			wantMost: 2,
		},
		{
			name:     "lc gives most to the idle one",
			algo:     "lc",
			bs:       four,
			loads:    []Load{{Active: 10, New: 10}, {Active: 10, New: 10}, {New: 10}, {Active: 10, New: 10}},
			want:     []uint32{1, 2, 3, 4},
			wantMost: 3,
		},
		{
			name:     "wlc by weight when idle",
			algo:     "wlc",
			bs:       []Backend{{ID: 1, Weight: 1}, {ID: 2, Weight: 3}},
			loads:    []Load{{}, {}},
			want:     []uint32{1, 2},
			wantMost: 2,
		},
		{
			name:     "sed skips weight zero",
			algo:     "sed",
			bs:       []Backend{{ID: 1, Weight: 0}, {ID: 2, Weight: 1}},
			loads:    []Load{{}, {Active: 50}},
			want:     []uint32{2},
			wantMost: 2,
		},
		{
			name:     "fo highest weight only",
			algo:     "fo",
			bs:       []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 7}, {ID: 3, Weight: 7}},
			loads:    []Load{{}, {Active: 1000}, {}},
			want:     []uint32{2},
			wantMost: 2,
		},
		{
			name:     "ovf fills the highest weight first",
			algo:     "ovf",
			bs:       []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 100}},
			loads:    []Load{{New: 5}, {Active: 10, New: 5}},
			want:     []uint32{2},
			wantMost: 2,
		},
		{
			name:     "ovf overflows to the next",
			algo:     "ovf",
			bs:       []Backend{{ID: 1, Weight: 20}, {ID: 2, Weight: 10}},
			loads:    []Load{{Active: 21}, {Active: 1}},
			want:     []uint32{2},
			wantMost: 2,
		},
		{
			name:  "ovf all overflowing refuses",
			algo:  "ovf",
			bs:    []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 1}},
			loads: []Load{{Active: 3}, {Active: 2}},
		},
		{
			name:  "nothing eligible",
			algo:  "lc",
			bs:    []Backend{{ID: 1, Weight: 0}},
			loads: []Load{{}},
		},
		{
			name:     "lblc binds to one server",
			algo:     "lblc",
			bs:       four,
			loads:    []Load{{Active: 1}, {}, {}, {}},
			want:     []uint32{2},
			wantMost: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ConnState
			got, err := s.Table(tt.algo, tt.bs, tt.loads, now)
			if err != nil {
				t.Fatal(err)
			}
			c := count(got)
			var ids []uint32
			var most uint32
			for _, b := range tt.bs {
				if c[b.ID] > 0 {
					ids = append(ids, b.ID)
				}
				if c[b.ID] > c[most] {
					most = b.ID
				}
			}
			if diff := cmp.Diff(tt.want, ids); diff != "" {
				t.Errorf("backends in table (-want +got):\n%s\ntable counts %v", diff, c)
			}
			if most != tt.wantMost {
				t.Errorf("most entries for %d, want %d (counts %v)", most, tt.wantMost, c)
			}
		})
	}
}

func TestConnTableShares(t *testing.T) {
	// Idle wlc servers share new flows by weight, as the exact scheduler does.
	var s ConnState
	bs := []Backend{{ID: 1, Weight: 1}, {ID: 2, Weight: 3}}
	got, err := s.Table("wlc", bs, []Load{{}, {}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint32{2, 1, 2, 2}, got); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestConnTableInterleaves(t *testing.T) {
	// Any run of k entries gives each backend its share of k to within two entries, so the part
	// of the table one refresh period uses is representative.
	bs := []Backend{{ID: 1, Weight: 501}, {ID: 2, Weight: 300}, {ID: 3, Weight: 150}, {ID: 4, Weight: 73}}
	table := smooth(bs)
	if len(table) != 1024 {
		t.Fatalf("table of %d entries, want 1024", len(table))
	}
	for _, k := range []int{10, 100, 333} {
		for start := 0; start < len(table); start += 37 {
			c := map[uint32]int{}
			for j := range k {
				c[table[(start+j)%len(table)]]++
			}
			for _, b := range bs {
				want := float64(k*b.Weight) / 1024
				if d := float64(c[b.ID]) - want; d > 2 || d < -2 {
					t.Fatalf("entries %d..%d: backend %d has %d, want %.1f±2", start, start+k, b.ID, c[b.ID], want)
				}
			}
		}
	}
}

func TestLBLC(t *testing.T) {
	bs := []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 2}, {ID: 3, Weight: 2}}
	var s ConnState
	now := time.Unix(0, 0)
	step := func(loads []Load) []uint32 {
		t.Helper()
		now = now.Add(time.Second)
		got, err := s.Table("lblc", bs, loads, now)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if diff := cmp.Diff([]uint32{1}, step([]Load{{}, {}, {}})); diff != "" {
		t.Errorf("first binding (-want +got):\n%s", diff)
	}
	// Busier than the others but within its weight: stays.
	if diff := cmp.Diff([]uint32{1}, step([]Load{{Active: 2}, {}, {}})); diff != "" {
		t.Errorf("within weight (-want +got):\n%s", diff)
	}
	// Over its weight while another is under half of its own: moves to the wlc choice.
	if diff := cmp.Diff([]uint32{3}, step([]Load{{Active: 3}, {Active: 1}, {}})); diff != "" {
		t.Errorf("overloaded (-want +got):\n%s", diff)
	}
	// Over its weight but nobody is under half: stays.
	if diff := cmp.Diff([]uint32{3}, step([]Load{{Active: 1}, {Active: 1}, {Active: 9}})); diff != "" {
		t.Errorf("everyone busy (-want +got):\n%s", diff)
	}
	// Its server drained (weight 0): moves.
	bs[2].Weight = 0
	if diff := cmp.Diff([]uint32{1}, step([]Load{{Active: 1}, {Active: 1}, {Active: 9}})); diff != "" {
		t.Errorf("drained (-want +got):\n%s", diff)
	}
}

func TestLBLCR(t *testing.T) {
	bs := []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 2}, {ID: 3, Weight: 2}}
	var s ConnState
	now := time.Unix(0, 0)
	step := func(d time.Duration, loads []Load) []uint32 {
		t.Helper()
		now = now.Add(d)
		got, err := s.Table("lblcr", bs, loads, now)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ids := func(table []uint32) []uint32 {
		var out []uint32
		c := count(table)
		for _, b := range bs {
			if c[b.ID] > 0 {
				out = append(out, b.ID)
			}
		}
		return out
	}
	if diff := cmp.Diff([]uint32{1}, ids(step(time.Second, []Load{{}, {}, {}}))); diff != "" {
		t.Errorf("first set (-want +got):\n%s", diff)
	}
	// The set's least loaded member is overloaded: the wlc choice joins the set and, idle, takes
	// the new flows.
	if diff := cmp.Diff([]uint32{2}, ids(step(time.Second, []Load{{Active: 3, New: 3}, {}, {Active: 1}}))); diff != "" {
		t.Errorf("widened (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{1, 2}, s.set); diff != "" {
		t.Errorf("set (-want +got):\n%s", diff)
	}
	// Unchanged for LBLCRExpiration: the most loaded member leaves.
	step(LBLCRExpiration+time.Second, []Load{{Active: 2}, {Active: 1}, {Active: 1}})
	if diff := cmp.Diff([]uint32{2}, s.set); diff != "" {
		t.Errorf("set after expiry (-want +got):\n%s", diff)
	}
}

func TestConnTableErrors(t *testing.T) {
	var s ConnState
	if _, err := s.Table("wrr", []Backend{{ID: 1, Weight: 1}}, []Load{{}}, time.Time{}); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("wrr: err = %v, want ErrUnknownAlgorithm", err)
	}
	if _, err := s.Table("lc", []Backend{{ID: 1, Weight: 1}}, nil, time.Time{}); err == nil {
		t.Error("loads of the wrong length: no error")
	}
	if _, err := s.Table("lc", []Backend{{ID: 1, Weight: MaxWeight + 1}}, []Load{{}}, time.Time{}); err == nil {
		t.Error("weight over MaxWeight: no error")
	}
	if _, err := s.Table("lc", []Backend{{ID: 1, Weight: 1}}, []Load{{Active: -1}}, time.Time{}); err == nil {
		t.Error("negative count: no error")
	}
}

func TestIsConnAlgo(t *testing.T) {
	for _, a := range []string{"lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr"} {
		if !IsConnAlgo(a) {
			t.Errorf("IsConnAlgo(%q) = false", a)
		}
	}
	for _, a := range []string{"rr", "wrr", "mh", "sh", "dh", ""} {
		if IsConnAlgo(a) {
			t.Errorf("IsConnAlgo(%q) = true", a)
		}
	}
}

// BenchmarkConnTable is one refresh of a service of 100 backends.
func BenchmarkConnTable(b *testing.B) {
	bs := make([]Backend, 100)
	loads := make([]Load, len(bs))
	for i := range bs {
		bs[i] = Backend{ID: uint32(i), Weight: 1 + i%4}
		loads[i] = Load{Active: 50 + i, Inactive: i, New: 10 + i%7}
	}
	var s ConnState
	now := time.Unix(0, 0)
	for b.Loop() {
		now = now.Add(time.Second)
		if _, err := s.Table("wlc", bs, loads, now); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzConnTable checks that any counts and weights give a table of eligible backends only, of
// bounded length, or an error, never a panic.
func FuzzConnTable(f *testing.F) {
	f.Add(uint8(0), []byte{1, 0, 0, 0, 2, 5, 1, 3, 0, 9, 9, 9}, int64(1))
	f.Add(uint8(5), []byte{0, 0, 0, 0, 255, 255, 255, 255}, int64(0))
	algos := []string{"lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr"}
	f.Fuzz(func(t *testing.T, a uint8, data []byte, step int64) {
		algo := algos[int(a)%len(algos)]
		var bs []Backend
		var loads []Load
		for i := 0; i+3 < len(data) && len(bs) < 64; i += 4 {
			bs = append(bs, Backend{ID: uint32(len(bs)), Weight: int(data[i]) - 16})
			loads = append(loads, Load{Active: int(data[i+1]) * 100, Inactive: int(data[i+2]), New: int(data[i+3]) * 7})
		}
		var s ConnState
		now := time.Unix(0, 0)
		for range 3 {
			now = now.Add(time.Duration(step))
			table, err := s.Table(algo, bs, loads, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(table) > ConnResolution+len(bs) {
				t.Fatalf("table of %d entries", len(table))
			}
			for _, id := range table {
				if bs[id].Weight <= 0 {
					t.Fatalf("backend %d of weight %d in the table", id, bs[id].Weight)
				}
			}
		}
	})
}
