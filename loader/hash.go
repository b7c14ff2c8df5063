package loader

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// jhashInitval is JHASH_INITVAL of bpf/hash.h.
const jhashInitval = 0xdeadbeef

// SourceHash is the hash the XDP program computes of a client address to index a hashing
// service's (mh) selection table: the entry used is SourceHash(client) % table size. It is the
// kernel's jhash_1word of the address as a host-order number, seeded with LB_HASH_SEED.
func SourceHash(client netip.Addr) uint32 {
	a4 := client.Unmap().As4()
	return jhash1Word(binary.BigEndian.Uint32(a4[:]), hashSeed)
}

// jhash1Word is the kernel's jhash_1word.
func jhash1Word(a, initval uint32) uint32 {
	initval += jhashInitval + 1<<2
	a += initval
	b, c := initval, initval
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
