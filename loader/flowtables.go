package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// unconfWays is UNCONF_WAYS: flows per set of the unconfirmed table.
const unconfWays = 4

// unconfFin is UNCONF_FIN, the FIN bit of a backend word in the unconfirmed table.
const unconfFin = 1 << 31

// ktimeNow reads the program's clock, bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE), in
// nanoseconds: the time stamps of flows and persistence templates.
func ktimeNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// unconfSets is the number of sets of an unconfirmed table holding about entries flows: entries /
// UNCONF_WAYS rounded down to a power of two.
func unconfSets(entries uint32) uint32 {
	sets := max(entries/unconfWays, 1)
	return 1 << (bits.Len32(sets) - 1)
}

// sizeUnconfirmed sizes the unconfirmed table for entries flows (0: the default) and tells the
// program its set mask; the NAT replies' table of unconfirmed flows gets the same number of
// entries.
func sizeUnconfirmed(spec *ebpf.CollectionSpec, entries uint32) error {
	if entries == 0 {
		entries = DefaultUnconfirmedTableSize
	}
	sets := unconfSets(entries)
	spec.Maps[lbMapUnconfirmed].MaxEntries = sets
	spec.Maps[lbMapNatUnconfirmed].MaxEntries = entries
	v, ok := spec.Variables[lbVarUnconfMask]
	if !ok {
		return errors.New("load xdp spec: no unconf_mask")
	}
	if err := v.Set(sets - 1); err != nil {
		return fmt.Errorf("load xdp spec: set unconf_mask: %w", err)
	}
	return nil
}

// flowHash is flow_hash in bpf/unconf.h: the set of a flow in the unconfirmed table.
func flowHash(k *lbFlowKey) uint32 {
	b := unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
	h := uint64(hashSeed)
	for i := 0; i+8 <= len(b); i += 8 {
		h = (h ^ binary.NativeEndian.Uint64(b[i:])) * 0x9e3779b97f4a7c15
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return uint32(h)
}

// unconfCheck is unconf_check in bpf/unconf.h.
func unconfCheck(h, be uint32) uint32 { return (h ^ be*0x9e3779b1) | 1 }

// unconfFlow returns way w of set as a flow, and whether the way holds one.
func unconfFlow(set *lbUnconfSet, w int, h uint32) (lbFlowValue, bool) {
	be := set.Backend[w]
	if set.Check[w] == 0 || set.Check[w] != unconfCheck(h, be) {
		return lbFlowValue{}, false
	}
	v := lbFlowValue{Backend: be &^ unconfFin, LastSeenNs: set.LastSeenNs[w]}
	if be&unconfFin != 0 {
		v.Flags = flowFlagFin
	}
	return v, true
}

// lookupUnconfirmed finds the flow k in the unconfirmed table m, as unconf_find does.
func lookupUnconfirmed(m *ebpf.Map, k *lbFlowKey) (lbFlowValue, bool, error) {
	h := flowHash(k)
	idx := h & (m.MaxEntries() - 1)
	var set lbUnconfSet
	if err := m.Lookup(idx, &set); err != nil {
		return lbFlowValue{}, false, fmt.Errorf("read unconfirmed set %d: %w", idx, err)
	}
	for w := range unconfWays {
		if set.Key[w] != *k {
			continue
		}
		if v, ok := unconfFlow(&set, w, h); ok {
			return v, true, nil
		}
	}
	return lbFlowValue{}, false, nil
}

// unconfBatch is how many sets one batch lookup of the unconfirmed table reads (256 KiB).
const unconfBatch = 1024

// eachUnconfirmed returns a walk over the flows of the unconfirmed table m.
func eachUnconfirmed(m *ebpf.Map) func(func(*lbFlowKey, *lbFlowValue)) error {
	return func(add func(*lbFlowKey, *lbFlowValue)) error {
		return walkUnconfirmed(m, func(_ uint32, set *lbUnconfSet, w int, v lbFlowValue) {
			add(&set.Key[w], &v)
		})
	}
}

// walkUnconfirmed calls fn for every way of the unconfirmed table m that holds a flow, with its
// set's index.
func walkUnconfirmed(m *ebpf.Map, fn func(idx uint32, set *lbUnconfSet, w int, v lbFlowValue)) error {
	n := m.MaxEntries()
	keys := make([]uint32, min(unconfBatch, n))
	sets := make([]lbUnconfSet, len(keys))
	visit := func(idx uint32, set *lbUnconfSet) {
		for w := range unconfWays {
			if set.Check[w] == 0 {
				continue
			}
			if v, ok := unconfFlow(set, w, flowHash(&set.Key[w])); ok {
				fn(idx, set, w, v)
			}
		}
	}
	var cursor ebpf.MapBatchCursor
	for read := uint32(0); read < n; {
		got, err := m.BatchLookup(&cursor, keys, sets, nil)
		for i := range got {
			visit(keys[i], &sets[i])
		}
		read += uint32(got)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && read == 0:
			for idx := range n {
				if err := m.Lookup(idx, &sets[0]); err != nil {
					return fmt.Errorf("read unconfirmed set %d: %w", idx, err)
				}
				visit(idx, &sets[0])
			}
			return nil
		case err != nil:
			return fmt.Errorf("read unconfirmed flows: %w", err)
		case got == 0:
			return nil
		}
	}
	return nil
}

// prefault writes one set in every page of a new, unused unconfirmed table (zeros over zeros)
// through the kernel, before any packet uses it. On the build machines' VM the program's first
// access to each page of a fresh table cost 50-100 µs (most of the first new flows of a 16 MB
// table paid it); a write through the kernel takes that cost at start-up, one through a
// user-space mapping of the same pages did not.
func prefault(m *ebpf.Map) error {
	perPage := max(uint32(os.Getpagesize())/m.ValueSize(), 1)
	var keys []uint32
	for k := uint32(0); k < m.MaxEntries(); k += perPage {
		keys = append(keys, k)
	}
	if _, err := m.BatchUpdate(keys, make([]lbUnconfSet, len(keys)), nil); err != nil {
		return fmt.Errorf("write unconfirmed-flow table: %w", err)
	}
	return nil
}
