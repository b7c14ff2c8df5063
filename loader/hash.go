package loader

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// jhashInitval is JHASH_INITVAL of bpf/hash.h.
const jhashInitval = 0xdeadbeef

// SourceHash is the hash the XDP program computes of a client address to index a hashing
// service's (mh) selection table: the entry used is SourceHash(client) % table size. For IPv4 it
// is the kernel's jhash_1word of the address as a host-order number, for IPv6 the kernel's jhash2
// of its four words, seeded with LB_HASH_SEED.
func SourceHash(client netip.Addr) uint32 {
	client = client.Unmap()
	if client.Is4() {
		a4 := client.As4()
		return jhash1Word(binary.BigEndian.Uint32(a4[:]), hashSeed)
	}
	a := client.As16()
	return jhash4Words(binary.BigEndian.Uint32(a[0:]), binary.BigEndian.Uint32(a[4:]),
		binary.BigEndian.Uint32(a[8:]), binary.BigEndian.Uint32(a[12:]), hashSeed)
}

// SourcePortHash is the hash of a client address and port that sh-port and mh-port services
// index their selection table with: the kernel's jhash_2words of SourceHash(client) and the port.
func SourcePortHash(client netip.Addr, port uint16) uint32 {
	return jhash2Words(SourceHash(client), uint32(port), hashSeed)
}

// jhash2Words is the kernel's jhash_2words.
func jhash2Words(a, b, initval uint32) uint32 {
	initval += jhashInitval + 2<<2
	return jhashFinal(a+initval, b+initval, initval)
}

// jhash4Words is the kernel's jhash2 of four words.
func jhash4Words(w0, w1, w2, w3, initval uint32) uint32 {
	a := jhashInitval + 4<<2 + initval
	b, c := a, a
	a += w0
	b += w1
	c += w2
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	a += w3
	return jhashFinal(a, b, c)
}

// jhashFinal is lookup3's final mixing of three words.
func jhashFinal(a, b, c uint32) uint32 {
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

// jhash1Word is the kernel's jhash_1word.
func jhash1Word(a, initval uint32) uint32 {
	initval += jhashInitval + 1<<2
	return jhashFinal(a+initval, initval, initval)
}
