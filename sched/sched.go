// Package sched computes the backend selection tables of the XDP data path.
//
// The data path picks a backend for a new flow by indexing a per-service table with the flow's
// hash (or a round-robin counter); it never runs a scheduling algorithm itself. This package
// builds those tables in userspace, as Katran does. Table is a pure function of its inputs and
// uses only fixed, documented hashes, so every director given the same configuration computes
// the same table and a flow lands on the same backend whichever director the router picks.
//
// Algorithms, by their keepalived lb_algo names:
//
//   - "rr": every backend once, in the order given.
//   - "wrr": the sequence IPVS's weighted round-robin (ip_vs_wrr.c) produces in one period.
//   - "mh": a Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software
//     Network Load Balancer", NSDI 2016), weighted as in Katran's MaglevHashV2.
package sched

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Backend is one real server as the selection table sees it.
type Backend struct {
	// ID is the value stored in the table; the data path maps it to the real server.
	ID uint32
	// Key identifies the backend identically on every director, e.g. "10.0.0.2:80". Maglev
	// hashes it, so it must not depend on anything local to one director.
	Key string
	// Weight is the backend's relative share; backends with Weight <= 0 get no entries.
	Weight int
}

const (
	// DefaultMaglevSize is the Maglev table size used when Table is given size 0. It is the
	// prime the Maglev paper evaluates: with up to ~650 equal backends every backend's share is
	// within 1% of the mean.
	DefaultMaglevSize = 65537
	// MaxMaglevSize bounds the Maglev table size (64 MiB of uint32 entries).
	MaxMaglevSize = 1 << 24
	// MaxSequenceLen bounds the length of "rr" and "wrr" tables. A "wrr" period longer than
	// this is shortened by scaling the weights down proportionally (see Table).
	MaxSequenceLen = 1 << 16
	// MaxWeight is the largest weight accepted; IPVS stores weights as a signed 32-bit int.
	MaxWeight = math.MaxInt32
)

// Errors that callers branch on.
var (
	// ErrUnknownAlgorithm is returned for an algorithm this package cannot build a table for;
	// the caller chooses the fallback.
	ErrUnknownAlgorithm = errors.New("unknown scheduling algorithm")
	// ErrInvalidSize is returned when a Maglev size is not a prime in [2, MaxMaglevSize] or is
	// smaller than the number of backends.
	ErrInvalidSize = errors.New("invalid table size")
)

// Table returns the selection table of algo for backends.
//
// Backends with Weight <= 0 are left out; when none remains Table returns (nil, nil). size is
// the Maglev table size and must be prime (0 means DefaultMaglevSize); "rr" and "wrr" ignore
// it and return their natural length, at most MaxSequenceLen.
//
// "rr" and "wrr" keep the order of backends, so the caller should sort them (IPVS uses the
// order servers were added; keepalived adds them in configuration order). "mh" sorts by Key
// itself, so its result does not depend on the order given, and rejects duplicate Keys.
//
// "wrr" first divides the weights by their greatest common divisor, as IPVS does. If the
// period (the sum of the reduced weights) is still longer than MaxSequenceLen, each weight w
// becomes max(1, floor(w*L/sum)), where L starts at MaxSequenceLen and is lowered by the
// overshoot until the new weights fit; they are then divided by their gcd again. Every backend
// keeps at least one entry and shares stay proportional up to that rounding.
func Table(algo string, backends []Backend, size uint32) ([]uint32, error) {
	var eligible []Backend
	for _, b := range backends {
		if b.Weight > MaxWeight {
			return nil, fmt.Errorf("backend %q: weight %d exceeds %d", b.Key, b.Weight, MaxWeight)
		}
		if b.Weight > 0 {
			eligible = append(eligible, b)
		}
	}
	switch algo {
	case "rr", "wrr":
		if len(eligible) > MaxSequenceLen {
			return nil, fmt.Errorf("%s table for %d backends: more than %d", algo, len(eligible), MaxSequenceLen)
		}
		if len(eligible) == 0 {
			return nil, nil
		}
		if algo == "rr" {
			return roundRobin(eligible), nil
		}
		return weightedRoundRobin(eligible), nil
	case "mh":
		if size == 0 {
			size = DefaultMaglevSize
		}
		if size > MaxMaglevSize || !isPrime(size) {
			return nil, fmt.Errorf("maglev table size %d: %w: must be a prime no larger than %d", size, ErrInvalidSize, MaxMaglevSize)
		}
		if uint64(len(eligible)) > uint64(size) {
			return nil, fmt.Errorf("maglev table size %d for %d backends: %w", size, len(eligible), ErrInvalidSize)
		}
		if len(eligible) == 0 {
			return nil, nil
		}
		slices.SortFunc(eligible, func(a, b Backend) int { return cmp.Compare(a.Key, b.Key) })
		for i := 1; i < len(eligible); i++ {
			if eligible[i].Key == eligible[i-1].Key {
				return nil, fmt.Errorf("maglev table: duplicate backend key %q", eligible[i].Key)
			}
		}
		return maglev(eligible, size), nil
	}
	return nil, fmt.Errorf("table for %q: %w", algo, ErrUnknownAlgorithm)
}

func roundRobin(backends []Backend) []uint32 {
	t := make([]uint32, len(backends))
	for i, b := range backends {
		t[i] = b.ID
	}
	return t
}

// weightedRoundRobin returns one period of ip_vs_wrr_schedule: the current weight cw walks down
// from the largest weight to the smallest in steps of the weights' gcd, and each step picks, in
// order, every backend whose weight is at least cw. Weights 4, 3, 2 give A A B A B C A B C.
// Dividing by the gcd first and stepping by 1 yields the same sequence.
func weightedRoundRobin(backends []Backend) []uint32 {
	w := make([]uint64, len(backends))
	for i, b := range backends {
		w[i] = uint64(b.Weight)
	}
	sum := reduce(w)
	if sum > MaxSequenceLen {
		total := sum
		scaled := make([]uint64, len(w))
		// Shrink the target until the floored, at-least-one weights fit; each pass lowers the
		// target by the overshoot, and a target of 0 leaves every weight at 1, which fits.
		for target := uint64(MaxSequenceLen); ; {
			sum = 0
			for i, x := range w {
				scaled[i] = max(1, x*target/total)
				sum += scaled[i]
			}
			if sum <= MaxSequenceLen {
				break
			}
			target -= min(target, sum-MaxSequenceLen)
		}
		w = scaled
		sum = reduce(w)
	}
	// Walking every backend at every cw costs max weight times backends; instead keep the
	// backends with w >= cw, in the given order, and extend that list as cw reaches their weight.
	byWeight := make([]int, len(w))
	for i := range byWeight {
		byWeight[i] = i
	}
	slices.SortStableFunc(byWeight, func(a, b int) int { return cmp.Compare(w[b], w[a]) })
	var picked []int // indexes of backends with w >= cw, ascending
	t := make([]uint32, 0, sum)
	for cw, next := w[byWeight[0]], 0; cw > 0; cw-- {
		if next < len(byWeight) && w[byWeight[next]] >= cw {
			for ; next < len(byWeight) && w[byWeight[next]] >= cw; next++ {
				picked = append(picked, byWeight[next])
			}
			slices.Sort(picked)
		}
		for _, i := range picked {
			t = append(t, backends[i].ID)
		}
	}
	return t
}

// reduce divides w by the gcd of its elements and returns the new sum.
func reduce(w []uint64) uint64 {
	var g uint64
	for _, x := range w {
		g = gcd(g, x)
	}
	var sum uint64
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	return sum
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint32(3); uint64(d)*uint64(d) <= uint64(n); d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
