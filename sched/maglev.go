package sched

// Maglev hashing, from section 3.4 of the Maglev paper.
//
// Each backend gets a permutation of the table's slots, defined by an offset and a skip
// (size prime, so every skip in [1, size) visits every slot). Backends take turns claiming the
// next free slot of their permutation until the table is full. Because a backend's permutation
// depends only on its own Key, removing one backend mostly frees its own slots: others keep
// theirs, so established flows hashed to them stay put even on a director without flow state.
//
// The hashes are fixed so that directors agree:
//
//	offset = H(0x6f, Key) mod size          // 0x6f is 'o'
//	skip   = H(0x73, Key) mod (size-1) + 1  // 0x73 is 's'
//	H(seed, Key) = fmix64(FNV-1a-64 over the byte seed followed by the bytes of Key)
//
// fmix64 is MurmurHash3's 64-bit finalizer; FNV-1a alone mixes the last bytes of a key poorly,
// and backend keys often differ only there ("10.0.0.2:80", "10.0.0.3:80").

const (
	offsetSeed = 'o'
	skipSeed   = 's'

	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// keyHash is H(seed, key) above.
func keyHash(seed byte, key string) uint64 {
	h := uint64(fnvOffset64)
	h ^= uint64(seed)
	h *= fnvPrime64
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime64
	}
	return fmix64(h)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// maglev fills a table of size entries (prime, >= len(backends)) from backends sorted by Key.
//
// Weights follow Katran's MaglevHashV2: in each round every backend adds its weight to a
// credit and claims one slot per whole multiple of the largest weight. With equal weights this
// is the paper's algorithm, where shares differ by at most one slot; otherwise each backend
// claims slots at a rate proportional to its weight, spread evenly over the rounds, which keeps
// the permutation walks (and so the disruption on change) as in the unweighted case.
func maglev(backends []Backend, size uint32) []uint32 {
	m := uint64(size)
	n := len(backends)
	pos := make([]uint64, n)  // the next slot of each backend's permutation
	skip := make([]uint64, n) // the permutation's step
	credit := make([]uint64, n)
	var maxW uint64
	for i, b := range backends {
		pos[i] = keyHash(offsetSeed, b.Key) % m
		skip[i] = keyHash(skipSeed, b.Key)%(m-1) + 1
		maxW = max(maxW, uint64(b.Weight))
	}

	table := make([]uint32, size)
	taken := make([]bool, size)
	for filled := uint64(0); ; {
		for i, b := range backends {
			credit[i] += uint64(b.Weight)
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			for taken[pos[i]] {
				pos[i] = (pos[i] + skip[i]) % m
			}
			taken[pos[i]] = true
			table[pos[i]] = b.ID
			pos[i] = (pos[i] + skip[i]) % m
			if filled++; filled == m {
				return table
			}
		}
	}
}
