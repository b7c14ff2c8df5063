/* Bob Jenkins' lookup3 hash as in the kernel's linux/jhash.h; loader.SourceHash mirrors it. */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

#include "consts.h"

/* Arbitrary initial value of lookup3, as the kernel's. */
#define JHASH_INITVAL 0xdeadbeefU

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

/* jhash_final is lookup3's final mixing of three words. */
#define jhash_final(a, b, c)                                                                       \
	{                                                                                          \
		c ^= b;                                                                            \
		c -= rol32(b, 14);                                                                 \
		a ^= c;                                                                            \
		a -= rol32(c, 11);                                                                 \
		b ^= a;                                                                            \
		b -= rol32(a, 25);                                                                 \
		c ^= b;                                                                            \
		c -= rol32(b, 16);                                                                 \
		a ^= c;                                                                            \
		a -= rol32(c, 4);                                                                  \
		b ^= a;                                                                            \
		b -= rol32(a, 14);                                                                 \
		c ^= b;                                                                            \
		c -= rol32(b, 24);                                                                 \
	}

/* jhash_mix is lookup3's mixing of three words, as the kernel's __jhash_mix. */
#define jhash_mix(a, b, c)                                                                         \
	{                                                                                          \
		a -= c;                                                                            \
		a ^= rol32(c, 4);                                                                  \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rol32(a, 6);                                                                  \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rol32(b, 8);                                                                  \
		b += a;                                                                            \
		a -= c;                                                                            \
		a ^= rol32(c, 16);                                                                 \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rol32(a, 19);                                                                 \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rol32(b, 4);                                                                  \
		b += a;                                                                            \
	}

/* jhash_1word is the kernel's jhash_1word. */
static __always_inline __u32 jhash_1word(__u32 a, __u32 initval)
{
	__u32 b, c;

	initval += JHASH_INITVAL + (1 << 2);
	a += initval;
	b = initval;
	c = initval;
	jhash_final(a, b, c);
	return c;
}

/* jhash_2words is the kernel's jhash_2words. */
static __always_inline __u32 jhash_2words(__u32 a, __u32 b, __u32 initval)
{
	__u32 c;

	initval += JHASH_INITVAL + (2 << 2);
	a += initval;
	b += initval;
	c = initval;
	jhash_final(a, b, c);
	return c;
}

/* port_hash mixes a port in network order into an address hash (sh-port, mh-port). */
static __always_inline __u32 port_hash(__u32 h, __be16 port)
{
	return jhash_2words(h, bpf_ntohs(port), LB_HASH_SEED);
}

/* src_hash_v4 hashes a client IPv4 address given in network order, as IPVS mh does: connections
 * from one client land on one backend whatever their ports. */
static __always_inline __u32 src_hash_v4(__be32 saddr)
{
	return jhash_1word(bpf_ntohl(saddr), LB_HASH_SEED);
}

/* jhash_4words is the kernel's jhash2 of four words. */
static __always_inline __u32 jhash_4words(__u32 w0, __u32 w1, __u32 w2, __u32 w3, __u32 initval)
{
	__u32 a, b, c;

	a = b = c = JHASH_INITVAL + (4 << 2) + initval;
	a += w0;
	b += w1;
	c += w2;
	jhash_mix(a, b, c);
	a += w3;
	jhash_final(a, b, c);
	return c;
}

/* src_hash_v6 hashes a client IPv6 address given in network order: the kernel's jhash2 of its
 * four words, each read as a host-order number. */
static __always_inline __u32 src_hash_v6(const __u8 *saddr)
{
	__be32 w[4];

	__builtin_memcpy(w, saddr, sizeof(w));
	return jhash_4words(bpf_ntohl(w[0]), bpf_ntohl(w[1]), bpf_ntohl(w[2]), bpf_ntohl(w[3]),
			    LB_HASH_SEED);
}

#endif /* SLUICE_HASH_H */
