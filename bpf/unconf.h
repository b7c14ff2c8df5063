/* The table of unconfirmed flows (maps.h unconfirmed): set-associative, UNCONF_WAYS ways a set. */
#ifndef SLUICE_UNCONF_H
#define SLUICE_UNCONF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"

/* Sets in unconfirmed less one (a power of two less one); the loader sets it with the map's
 * size. */
const volatile __u32 unconf_mask = UNCONFIRMED_TABLE_SIZE / UNCONF_WAYS - 1;

/* flow_hash hashes a 5-tuple, five 64-bit words multiplied into one and folded (murmur3's
 * finaliser); loader.flowHash mirrors it. */
static __always_inline __u32 flow_hash(const struct flow_key *key)
{
	const __u64 *w = (const __u64 *)key;
	__u64 h = LB_HASH_SEED;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*key) / sizeof(__u64)); i++)
		h = (h ^ w[i]) * 0x9e3779b97f4a7c15ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (__u32)h;
}

/* unconf_check is the check word of a way holding a flow of hash h with backend word be: never 0,
 * and it changes with both, so a way torn between two writers is not taken for either flow. */
static __always_inline __u32 unconf_check(__u32 h, __u32 be)
{
	return (h ^ (be * 0x9e3779b1U)) | 1;
}

/* Where a flow is, or would go, in unconfirmed. */
struct unconf_ref {
	/* The flow's set; NULL only if the map and unconf_mask disagree. */
	struct unconf_set *set;
	/* flow_hash() of the flow. */
	__u32 hash;
	/* The way holding the flow, or -1. */
	int way;
};

/* key_equal compares two 5-tuples, both 8-byte aligned. */
static __always_inline int key_equal(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

/* unconf_find looks the flow up: ref->way is its way, or -1. */
static __always_inline void unconf_find(const struct flow_key *key, struct unconf_ref *ref)
{
	__u32 idx;

	ref->hash = flow_hash(key);
	ref->way = -1;
	idx = ref->hash & unconf_mask;
	ref->set = bpf_map_lookup_elem(&unconfirmed, &idx);
	if (!ref->set)
		return;
#pragma unroll
	for (int w = 0; w < UNCONF_WAYS; w++) {
		__u32 check = ref->set->check[w];

		if (check && check == unconf_check(ref->hash, ref->set->backend[w]) &&
		    key_equal(&ref->set->key[w], key)) {
			ref->way = w;
			return;
		}
	}
}

/* unconf_get reads the flow at ref's way into fv. */
static __always_inline void unconf_get(const struct unconf_ref *ref, struct flow_value *fv)
{
	int w = ref->way & (UNCONF_WAYS - 1);
	__u32 be = ref->set->backend[w];

	fv->backend = be & ~UNCONF_FIN;
	fv->flags = (be & UNCONF_FIN) ? FLOW_F_FIN : 0;
	fv->last_seen_ns = ref->set->last_seen_ns[w];
}

/* unconf_put writes fv into ref's way; with key, it (re)writes the 5-tuple too. */
static __always_inline void unconf_put(const struct unconf_ref *ref, const struct flow_key *key,
				       const struct flow_value *fv)
{
	int w = ref->way & (UNCONF_WAYS - 1);
	__u32 be = fv->backend | ((fv->flags & FLOW_F_FIN) ? UNCONF_FIN : 0);

	ref->set->check[w] = 0;
	if (key)
		__builtin_memcpy(&ref->set->key[w], key, sizeof(*key));
	ref->set->backend[w] = be;
	ref->set->last_seen_ns[w] = fv->last_seen_ns;
	ref->set->check[w] = unconf_check(ref->hash, be);
}

/* unconf_insert pins a new flow of ref's set (ref->way -1: not there yet) in an empty way, or in
 * the way silent longest. */
static __always_inline void unconf_insert(struct unconf_ref *ref, const struct flow_key *key,
					  const struct flow_value *fv)
{
	__u64 oldest = ~0ULL;
	int victim = 0;

	if (!ref->set)
		return;
	if (ref->way < 0) {
#pragma unroll
		for (int w = 0; w < UNCONF_WAYS; w++) {
			__u64 seen = ref->set->check[w] ? ref->set->last_seen_ns[w] : 0;

			if (seen < oldest) {
				oldest = seen;
				victim = w;
			}
		}
		ref->way = victim;
	}
	unconf_put(ref, key, fv);
}

/* unconf_delete empties ref's way. */
static __always_inline void unconf_delete(const struct unconf_ref *ref)
{
	ref->set->check[ref->way & (UNCONF_WAYS - 1)] = 0;
}

#endif /* SLUICE_UNCONF_H */
