/* Bob Jenkins' lookup3 hash as in the kernel's linux/jhash.h; loader.SourceHash mirrors it. */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <linux/types.h>

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

/* src_hash_v4 hashes a client IPv4 address given in network order, as IPVS mh does: connections
 * from one client land on one backend whatever their ports. */
static __always_inline __u32 src_hash_v4(__be32 saddr)
{
	return jhash_1word(bpf_ntohl(saddr), LB_HASH_SEED);
}

#endif /* SLUICE_HASH_H */
