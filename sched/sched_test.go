package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTableSequences(t *testing.T) {
	tests := []struct {
		name     string
		algo     string
		backends []Backend
		want     []uint32
	}{
		{
			name:     "rr keeps the given order",
			algo:     "rr",
			backends: []Backend{{ID: 3, Key: "c", Weight: 1}, {ID: 1, Key: "a", Weight: 5}, {ID: 2, Key: "b", Weight: 2}},
			want:     []uint32{3, 1, 2},
		},
		{
			name:     "rr leaves out weight zero and negative",
			algo:     "rr",
			backends: []Backend{{ID: 1, Weight: 1}, {ID: 2, Weight: 0}, {ID: 3, Weight: -1}, {ID: 4, Weight: 1}},
			want:     []uint32{1, 4},
		},
		{
			name:     "rr with no eligible backend",
			algo:     "rr",
			backends: []Backend{{ID: 1, Weight: 0}},
			want:     nil,
		},
		{
			name:     "wrr 4 3 2 is the LVS documentation's AABABCABC",
			algo:     "wrr",
			backends: []Backend{{ID: 1, Weight: 4}, {ID: 2, Weight: 3}, {ID: 3, Weight: 2}},
			want:     []uint32{1, 1, 2, 1, 2, 3, 1, 2, 3},
		},
		{
			name:     "wrr order of backends matters",
			algo:     "wrr",
			backends: []Backend{{ID: 3, Weight: 2}, {ID: 2, Weight: 3}, {ID: 1, Weight: 4}},
			want:     []uint32{1, 2, 1, 3, 2, 1, 3, 2, 1},
		},
		{
			name:     "wrr 5 1",
			algo:     "wrr",
			backends: []Backend{{ID: 1, Weight: 5}, {ID: 2, Weight: 1}},
			want:     []uint32{1, 1, 1, 1, 1, 2},
		},
		{
			name:     "wrr divides by the gcd",
			algo:     "wrr",
			backends: []Backend{{ID: 1, Weight: 400}, {ID: 2, Weight: 200}, {ID: 3, Weight: 600}},
			want:     []uint32{3, 1, 3, 1, 2, 3},
		},
		{
			name:     "wrr equal weights is rr",
			algo:     "wrr",
			backends: []Backend{{ID: 7, Weight: 10}, {ID: 8, Weight: 10}, {ID: 9, Weight: 10}},
			want:     []uint32{7, 8, 9},
		},
		{
			name:     "wrr leaves out weight zero",
			algo:     "wrr",
			backends: []Backend{{ID: 1, Weight: 2}, {ID: 2, Weight: 0}, {ID: 3, Weight: 1}},
			want:     []uint32{1, 1, 3},
		},
		{
			name: "wrr with no backends",
			algo: "wrr",
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Table(tt.algo, tt.backends, 0)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Table(%q) mismatch (-want +got):\n%s", tt.algo, diff)
			}
		})
	}
}

// TestWRRMatchesIPVS compares "wrr" tables with a transcription of ip_vs_wrr_schedule run for
// one period from ip_vs_wrr_init_svc's state.
func TestWRRMatchesIPVS(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		bs := make([]Backend, 1+r.IntN(8))
		for j := range bs {
			bs[j] = Backend{ID: uint32(j), Weight: (1 + r.IntN(6)) * []int{1, 1, 2, 3, 100}[r.IntN(5)]}
		}
		got, err := Table("wrr", bs, 0)
		if err != nil {
			t.Fatalf("Table: %v", err)
		}
		if diff := cmp.Diff(ipvsWRR(bs), got); diff != "" {
			t.Fatalf("case %d %+v (-ipvs +got):\n%s", i, bs, diff)
		}
	}
}

// ipvsWRR returns the first period of picks of ip_vs_wrr_schedule for backends of positive
// weight, none overloaded.
func ipvsWRR(bs []Backend) []uint32 {
	var di, maxW, sum int
	for _, b := range bs {
		di = int(gcd(uint64(di), uint64(b.Weight)))
		maxW = max(maxW, b.Weight)
		sum += b.Weight
	}
	mw := maxW - (di - 1)
	cl, cw := -1, mw // the list head, before the first destination
	var picks []uint32
	for len(picks) < sum/di {
		for {
			if cl++; cl == len(bs) {
				cl = -1
				if cw -= di; cw <= 0 {
					cw = mw
				}
				continue
			}
			if bs[cl].Weight >= cw {
				break
			}
		}
		picks = append(picks, bs[cl].ID)
	}
	return picks
}

func TestTableErrors(t *testing.T) {
	type testCase struct {
		name     string
		algo     string
		backends []Backend
		size     uint32
		want     error // a sentinel, or nil for any error
	}
	tests := []testCase{
		{name: "unknown algorithm", algo: "wlc", backends: backends(3), want: ErrUnknownAlgorithm},
		{name: "unknown algorithm without backends", algo: "lc", want: ErrUnknownAlgorithm},
		{name: "mh size not prime", algo: "mh", backends: backends(3), size: 65536, want: ErrInvalidSize},
		{name: "mh size 1", algo: "mh", backends: backends(1), size: 1, want: ErrInvalidSize},
		{name: "mh size too large", algo: "mh", backends: backends(1), size: 16777259, want: ErrInvalidSize},
		{name: "mh fewer slots than backends", algo: "mh", backends: backends(8), size: 7, want: ErrInvalidSize},
		{name: "mh duplicate key", algo: "mh", backends: []Backend{{ID: 1, Key: "a", Weight: 1}, {ID: 2, Key: "a", Weight: 1}}},
		{name: "rr too many backends", algo: "rr", backends: backends(MaxSequenceLen + 1)},
	}
	if strconv.IntSize > 32 {
		tooHeavy := int64(MaxWeight) + 1 // not a constant: it overflows a 32-bit int
		tests = append(tests, testCase{name: "weight too large", algo: "wrr", backends: []Backend{{ID: 1, Key: "a", Weight: int(tooHeavy)}}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Table(tt.algo, tt.backends, tt.size)
			if err == nil {
				t.Fatalf("Table = %d entries, want an error", len(got))
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Table error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWRRScalesLongPeriods(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "two large coprime weights", weights: []int{MaxWeight, MaxWeight - 1}},
		{name: "one heavy and many light", weights: append([]int{1 << 30}, repeat(1, 1000)...)},
		{name: "many just over the limit", weights: repeat(3, MaxSequenceLen/3+1)},
		{name: "as many backends as entries", weights: append([]int{2}, repeat(1, MaxSequenceLen-1)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []Backend
			var sum float64
			for i, w := range tt.weights {
				bs = append(bs, Backend{ID: uint32(i), Weight: w})
				sum += float64(w)
			}
			got, err := Table("wrr", bs, 0)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			if len(got) > MaxSequenceLen {
				t.Fatalf("len = %d, want at most %d", len(got), MaxSequenceLen)
			}
			count := make([]int, len(bs))
			for _, id := range got {
				count[id]++
			}
			for i, w := range tt.weights {
				if count[i] == 0 {
					t.Fatalf("backend %d (weight %d) has no entry", i, w)
				}
				// Floor loses under one entry per backend; minimum-one bumps and shrinking the
				// target cost at most the number of backends in total, so allow a little more.
				want := float64(w) / sum * float64(len(got))
				if d := float64(count[i]) - want; d > 2 || d < -2-want*float64(len(bs))/float64(MaxSequenceLen) {
					t.Errorf("backend %d (weight %d): %d entries, want about %.1f", i, w, count[i], want)
				}
			}
		})
	}
}

func TestMaglevIndependentOfOrder(t *testing.T) {
	bs := weighted(200, func(i int) int { return 1 + i%5 })
	want, err := Table("mh", bs, 0)
	if err != nil {
		t.Fatalf("Table: %v", err)
	}
	if len(want) != DefaultMaglevSize {
		t.Fatalf("len = %d, want %d", len(want), DefaultMaglevSize)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3 {
		shuffled := append([]Backend(nil), bs...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := Table("mh", shuffled, DefaultMaglevSize)
		if err != nil {
			t.Fatalf("Table: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("shuffle %d: table differs (-want +got):\n%.2000s", i, diff)
		}
	}
}

// TestMaglevGolden pins the hash so that a change that would make directors of different
// versions disagree fails here.
func TestMaglevGolden(t *testing.T) {
	bs := []Backend{
		{ID: 1, Key: "10.0.0.1:80", Weight: 1},
		{ID: 2, Key: "10.0.0.2:80", Weight: 1},
		{ID: 3, Key: "10.0.0.3:80", Weight: 2},
	}
	got, err := Table("mh", bs, 13)
	if err != nil {
		t.Fatalf("Table: %v", err)
	}
	// Computed by an independent implementation of the hash documented in maglev.go.
	want := []uint32{3, 1, 2, 1, 3, 3, 2, 1, 2, 3, 3, 3, 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("table mismatch (-want +got):\n%s", diff)
	}
}

func TestMaglevBalance(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 100, 333, 650} {
		t.Run(fmt.Sprintf("%d equal backends", n), func(t *testing.T) {
			got, err := Table("mh", backends(n), DefaultMaglevSize)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			count := counts(got)
			mean := float64(DefaultMaglevSize) / float64(n)
			for id, c := range count {
				if dev := abs(float64(c)-mean) / mean; dev > 0.01 {
					t.Errorf("backend %d: %d entries, %.2f%% from the mean %.1f", id, c, 100*dev, mean)
				}
			}
			if len(count) != n {
				t.Errorf("%d backends have entries, want %d", len(count), n)
			}
		})
	}
}

func TestMaglevWeightedShares(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "1 2 3 4", weights: []int{1, 2, 3, 4}},
		{name: "one heavy", weights: append([]int{100}, repeat(1, 99)...)},
		{name: "large weights", weights: []int{65535, 30000, 1, 12345}},
		{name: "mixed 300", weights: func() []int {
			var w []int
			for i := range 300 {
				w = append(w, 1+i%7)
			}
			return w
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := weighted(len(tt.weights), func(i int) int { return tt.weights[i] })
			got, err := Table("mh", bs, DefaultMaglevSize)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			var sum int
			for _, w := range tt.weights {
				sum += w
			}
			count := counts(got)
			for i, w := range tt.weights {
				want := float64(w) / float64(sum) * DefaultMaglevSize
				// After R rounds backend i holds R*w/maxW slots less a fraction f_i < 1 of unspent
				// credit. The table fills when the counts sum to size, so the f_i of all n
				// backends are shared out by weight: |count - want| < 1 + w*n/sum.
				bound := 1 + float64(w)*float64(len(tt.weights))/float64(sum)
				if d := abs(float64(count[uint32(i)]) - want); d > bound {
					t.Errorf("backend %d (weight %d): %d entries, want %.1f", i, w, count[uint32(i)], want)
				}
			}
		})
	}
}

func TestMaglevMinimalDisruption(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		weight func(int) int
		remove int
		// maxMoved bounds the fraction of the entries of the remaining backends that change.
		maxMoved float64
	}{
		{name: "100 equal, remove one", n: 100, weight: func(int) int { return 1 }, remove: 37, maxMoved: 0.02},
		{name: "1000 equal, remove one", n: 1000, weight: func(int) int { return 1 }, remove: 999, maxMoved: 0.02},
		{name: "100 weighted, remove one", n: 100, weight: func(i int) int { return 1 + i%4 }, remove: 0, maxMoved: 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := weighted(tt.n, tt.weight)
			before, err := Table("mh", bs, DefaultMaglevSize)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			removed := bs[tt.remove].ID
			bs[tt.remove].Weight = 0
			after, err := Table("mh", bs, DefaultMaglevSize)
			if err != nil {
				t.Fatalf("Table: %v", err)
			}
			var kept, moved int
			for i := range before {
				if after[i] == removed {
					t.Fatalf("slot %d still holds the removed backend", i)
				}
				if before[i] == removed {
					continue
				}
				kept++
				if after[i] != before[i] {
					moved++
				}
			}
			frac := float64(moved) / float64(kept)
			t.Logf("%d of %d entries of remaining backends moved (%.2f%%)", moved, kept, 100*frac)
			if frac > tt.maxMoved {
				t.Errorf("%.2f%% of the remaining backends' entries moved, want at most %.2f%%", 100*frac, 100*tt.maxMoved)
			}
		})
	}
}

func TestIsPrime(t *testing.T) {
	var got []uint32
	for n := range uint32(50) {
		if isPrime(n) {
			got = append(got, n)
		}
	}
	want := []uint32{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("primes below 50 (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		n    uint32
		want bool
	}{
		{65537, true}, {65536, false}, {655373, true}, {4294967291, true}, {4294967295, false},
	} {
		if got := isPrime(tt.n); got != tt.want {
			t.Errorf("isPrime(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func BenchmarkMaglev(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%d backends", n), func(b *testing.B) {
			bs := backends(n)
			for b.Loop() {
				if _, err := Table("mh", bs, DefaultMaglevSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// backends returns n backends of weight 1 with IDs 0..n-1 and address-like keys.
func backends(n int) []Backend { return weighted(n, func(int) int { return 1 }) }

func weighted(n int, weight func(int) int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{
			ID:     uint32(i),
			Key:    fmt.Sprintf("10.%d.%d.%d:80", i>>16&0xff, i>>8&0xff, i&0xff),
			Weight: weight(i),
		}
	}
	return bs
}

func counts(table []uint32) map[uint32]int {
	c := make(map[uint32]int)
	for _, id := range table {
		c[id]++
	}
	return c
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
