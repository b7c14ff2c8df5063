// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Sluice XDP load balancer: forwards packets for virtual services to real servers (DR, IPv4). */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "hash.h"
#include "parse.h"
#include "rewrite.h"

/* verdict counts the packet under reason and returns action, so every exit is counted. */
static __always_inline int verdict(enum lb_reason reason, int action)
{
	__u32 key = reason;
	__u64 *cnt = bpf_map_lookup_elem(&reason_stats, &key);

	if (cnt)
		*cnt += 1;
	return action;
}

static __always_inline void count(void *stats_map, __u32 id, __u64 bytes, __u64 new_flow)
{
	struct lb_stats *st = bpf_map_lookup_elem(stats_map, &id);

	if (!st)
		return;
	st->packets += 1;
	st->bytes += bytes;
	st->new_flows += new_flow;
}

/* pinned returns the backend the flow is pinned to when it may still be used, else NULL. */
static __always_inline struct backend_value *pinned(struct flow_key *flow, __u32 svc_id,
						    __u32 *be_id)
{
	struct flow_value *fv = bpf_map_lookup_elem(&flows, flow);
	struct backend_value *be;

	if (!fv)
		return NULL;
	*be_id = fv->backend;
	be = bpf_map_lookup_elem(&backends, be_id);
	if (!be || !(be->flags & BE_F_UP) || be->svc_id != svc_id)
		return NULL;
	fv->last_seen_ns = bpf_ktime_get_ns();
	return be;
}

/* select_backend picks a backend id for a new flow from the service's selection table; it returns
 * a reason to drop when it cannot. */
static __always_inline int select_backend(const struct svc_value *svc, const struct packet *pkt,
					  __u32 *be_id, enum lb_reason *reason)
{
	__u32 slot = svc->sel_slot, idx, *cur, *id;
	void *table;

	if (svc->sel_size == 0) {
		*reason = DROP_NO_BACKEND;
		return -1;
	}
	if (svc->flags & SVC_F_RR) {
		cur = bpf_map_lookup_elem(&rr_pos, &svc->id);
		if (!cur) {
			*reason = DROP_TABLE_MISS;
			return -1;
		}
		idx = *cur % svc->sel_size;
		*cur += 1;
	} else {
		__be32 saddr;

		__builtin_memcpy(&saddr, pkt->flow.src, sizeof(saddr));
		idx = src_hash_v4(saddr) % svc->sel_size;
	}

	table = bpf_map_lookup_elem(&sel_tables, &slot);
	if (!table) {
		*reason = DROP_TABLE_MISS;
		return -1;
	}
	id = bpf_map_lookup_elem(table, &idx);
	if (!id) {
		*reason = DROP_TABLE_MISS;
		return -1;
	}
	*be_id = *id;
	return 0;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct packet pkt = {};
	struct svc_key sk = {};
	struct svc_value svc, *svcp;
	struct backend_value *be;
	struct flow_value fv = {};
	enum lb_reason reason;
	__u32 be_id = 0;
	__u64 new_flow = 0;

	if (parse_packet(data, data_end, &pkt, &reason) < 0)
		return verdict(reason, XDP_PASS);

	__builtin_memcpy(sk.addr, pkt.flow.dst, 4);
	sk.port = pkt.flow.dport;
	sk.proto = pkt.flow.proto;
	sk.family = pkt.flow.family;
	svcp = bpf_map_lookup_elem(&services, &sk);
	if (!svcp)
		return verdict(PASS_NOT_VIP, XDP_PASS);
	svc = *svcp;

	be = pinned(&pkt.flow, svc.id, &be_id);
	if (!be) {
		if (select_backend(&svc, &pkt, &be_id, &reason) < 0)
			return verdict(reason, XDP_DROP);
		be = bpf_map_lookup_elem(&backends, &be_id);
		/* The loader marks a backend up before listing it and down only after the table
		 * that drops it is published, so this is a packet that read the old table just
		 * before. */
		if (!be || !(be->flags & BE_F_UP) || be->svc_id != svc.id)
			return verdict(DROP_TABLE_MISS, XDP_DROP);
		fv.backend = be_id;
		fv.last_seen_ns = bpf_ktime_get_ns();
		bpf_map_update_elem(&flows, &pkt.flow, &fv, BPF_ANY);
		new_flow = 1;
	}

	rewrite_dr(pkt.eth, be);
	count(&svc_stats, svc.id, bytes, new_flow);
	count(&be_stats, be_id, bytes, new_flow);
	if (be->ifindex == ctx->ingress_ifindex)
		return verdict(TX_DR, XDP_TX);
	return verdict(REDIRECT_DR, bpf_redirect(be->ifindex, 0));
}

char _license[] SEC("license") = "Dual BSD/GPL";
