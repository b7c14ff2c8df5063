// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Sluice XDP load balancer: forwards packets for virtual services to real servers (DR, TUN and
 * NAT, IPv4 and IPv6). */

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

/* usable returns the backend id names when it may still carry a flow of service svc_id. */
static __always_inline struct backend_value *usable(__u32 be_id, __u32 svc_id)
{
	struct backend_value *be = bpf_map_lookup_elem(&backends, &be_id);

	if (!be || !(be->flags & BE_F_UP) || be->svc_id != svc_id)
		return NULL;
	return be;
}

/* Where pinned found a flow. */
enum flow_state {
	/* In no table, or pinned to a backend that may no longer carry it. */
	FLOW_NONE,
	/* In flows, but its backend is gone: re-selected into flows, it stays protected. */
	FLOW_STALE_CONFIRMED,
	/* In flows or unconfirmed with a usable backend. */
	FLOW_PINNED,
};

/* nat_key is the 5-tuple of a reply from backend be to the client of the forward flow. */
static __always_inline void nat_key(const struct packet *pkt, const struct backend_value *be,
				    struct flow_key *key)
{
	__builtin_memcpy(key->src, be->addr, sizeof(key->src));
	__builtin_memcpy(key->dst, pkt->flow.src, sizeof(key->dst));
	key->sport = be->port;
	key->dport = pkt->flow.sport;
	key->proto = pkt->flow.proto;
	key->family = pkt->flow.family;
}

/* remember_nat records how to translate replies of a NAT flow back, in nat_flows when the flow
 * is confirmed, else in nat_unconfirmed. */
static __always_inline void remember_nat(const struct packet *pkt, const struct backend_value *be,
					 __u32 be_id, int confirmed)
{
	struct flow_key key = {};
	struct nat_value nv = {};

	if (be->method != LB_METHOD_NAT)
		return;
	nat_key(pkt, be, &key);
	__builtin_memcpy(nv.vip, pkt->flow.dst, sizeof(nv.vip));
	nv.vport = pkt->flow.dport;
	nv.backend = be_id;
	if (confirmed) {
		bpf_map_update_elem(&nat_flows, &key, &nv, BPF_ANY);
		bpf_map_delete_elem(&nat_unconfirmed, &key);
	} else {
		bpf_map_update_elem(&nat_unconfirmed, &key, &nv, BPF_ANY);
	}
}

/* pinned returns the backend the flow is pinned to when it may still be used, else NULL. A flow
 * found in unconfirmed is promoted into flows by any packet but a bare SYN: a handshake's ACK, or
 * the second packet of a UDP flow. A spoofed source never sends that packet, so a flood fills
 * unconfirmed alone. */
static __always_inline struct backend_value *pinned(struct packet *pkt, __u32 svc_id, __u32 *be_id,
						    enum flow_state *state)
{
	struct flow_value *fv = bpf_map_lookup_elem(&flows, &pkt->flow);
	struct backend_value *be;
	__u64 now = bpf_ktime_get_ns();

	*state = FLOW_NONE;
	if (fv) {
		*be_id = fv->backend;
		be = usable(*be_id, svc_id);
		if (be) {
			fv->last_seen_ns = now;
			*state = FLOW_PINNED;
			return be;
		}
		*state = FLOW_STALE_CONFIRMED;
	}
	fv = bpf_map_lookup_elem(&unconfirmed, &pkt->flow);
	if (!fv)
		return NULL;
	*be_id = fv->backend;
	be = usable(*be_id, svc_id);
	if (!be)
		return NULL;
	fv->last_seen_ns = now;
	if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN) {
		struct flow_value nv = {.backend = *be_id, .last_seen_ns = now};

		if (bpf_map_update_elem(&flows, &pkt->flow, &nv, BPF_ANY) == 0) {
			bpf_map_delete_elem(&unconfirmed, &pkt->flow);
			remember_nat(pkt, be, *be_id, 1);
		}
	}
	*state = FLOW_PINNED;
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
		__u32 h;

		if (pkt->flow.family == LB_AF_INET6) {
			h = src_hash_v6(pkt->flow.src);
		} else {
			__be32 saddr;

			__builtin_memcpy(&saddr, pkt->flow.src, sizeof(saddr));
			h = src_hash_v4(saddr);
		}
		idx = h % svc->sel_size;
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

/* fib_route looks up the next hop from src to dst (family's addresses, network order) for a
 * datagram of tot_len bytes arriving on the ingress interface. */
static __always_inline int fib_route(struct xdp_md *ctx, struct bpf_fib_lookup *fib, __u8 family,
				     const __u8 *src, const __u8 *dst, __u32 tot_len, __u8 proto)
{
	fib->family = family;
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = proto;
	fib->tot_len = tot_len;
	if (family == LB_AF_INET6) {
		__builtin_memcpy(fib->ipv6_src, src, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, dst, sizeof(fib->ipv6_dst));
	} else {
		__builtin_memcpy(&fib->ipv4_src, src, sizeof(fib->ipv4_src));
		__builtin_memcpy(&fib->ipv4_dst, dst, sizeof(fib->ipv4_dst));
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* forward_nat translates the packet to a NAT backend's address and port (dst set) or, for a
 * reply, its source back to the virtual service, and sends it along the FIB's next hop. As for
 * TUN, a next hop without a neighbour entry passes the translated packet to the stack. */
static __always_inline int forward_nat(struct xdp_md *ctx, const struct packet *pkt, int dst,
				       const __u8 *addr, __be16 port, __u32 svc_id, __u32 be_id,
				       __u64 bytes, __u64 new_flow)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth;
	void *data_end;
	int rc;

	if (dst)
		rc = fib_route(ctx, &fib, pkt->flow.family, pkt->flow.src, addr, pkt->ip_len,
			       pkt->flow.proto);
	else
		rc = fib_route(ctx, &fib, pkt->flow.family, addr, pkt->flow.dst, pkt->ip_len,
			       pkt->flow.proto);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return verdict(PASS_FRAG_NEEDED, XDP_PASS);
	default:
		return verdict(DROP_NO_ROUTE, XDP_DROP);
	}
	if (nat_rewrite(ctx, pkt, dst, addr, port) < 0)
		return verdict(PASS_TRUNCATED, XDP_PASS);
	if (dst) {
		count(&svc_stats, svc_id, bytes, new_flow);
		count(&be_stats, be_id, bytes, new_flow);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return verdict(PASS_NO_NEIGH, XDP_PASS);

	data_end = (void *)(long)ctx->data_end;
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > data_end)
		return verdict(PASS_TRUNCATED, XDP_PASS);
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return verdict(dst ? TX_NAT : TX_NAT_REPLY, XDP_TX);
	return verdict(dst ? REDIRECT_NAT : REDIRECT_NAT_REPLY, bpf_redirect(fib.ifindex, 0));
}

/* reply_nat translates a NAT real server's reply back to its virtual service; packets of no NAT
 * flow pass untouched. */
static __always_inline int reply_nat(struct xdp_md *ctx, const struct packet *pkt)
{
	struct nat_value *nv = bpf_map_lookup_elem(&nat_flows, &pkt->flow);
	__u8 vip[16];
	__be16 vport;

	if (!nv)
		nv = bpf_map_lookup_elem(&nat_unconfirmed, &pkt->flow);
	if (!nv)
		return verdict(PASS_NOT_VIP, XDP_PASS);
	__builtin_memcpy(vip, nv->vip, sizeof(vip));
	vport = nv->vport;
	return forward_nat(ctx, pkt, 0, vip, vport, 0, 0, 0, 0);
}

/* forward_tun encapsulates the packet to a TUN backend along the FIB's next hop. A next hop
 * without a neighbour entry passes the encapsulated packet to the stack, which resolves the
 * neighbour and forwards it. */
static __always_inline int forward_tun(struct xdp_md *ctx, const struct packet *pkt,
				       const struct backend_value *be, __u32 svc_id, __u32 be_id,
				       __u64 bytes, __u64 new_flow)
{
	struct bpf_fib_lookup fib = {};
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	int v6 = pkt->flow.family == LB_AF_INET6, rc, err;

	fib.family = pkt->flow.family;
	fib.ifindex = ctx->ingress_ifindex;
	if (v6) {
		fib.l4_protocol = IPPROTO_IPV6;
		fib.tot_len = pkt->ip_len + sizeof(struct ipv6hdr);
		__builtin_memcpy(fib.ipv6_src, be->tun_src, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, be->addr, sizeof(fib.ipv6_dst));
	} else {
		fib.l4_protocol = IPPROTO_IPIP;
		fib.tot_len = pkt->ip_len + sizeof(struct iphdr);
		__builtin_memcpy(&fib.ipv4_src, be->tun_src, sizeof(fib.ipv4_src));
		__builtin_memcpy(&fib.ipv4_dst, be->addr, sizeof(fib.ipv4_dst));
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(smac, fib.smac, ETH_ALEN);
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		/* Still addressed to this host, so that the stack takes it in to forward. */
		__builtin_memcpy(dmac, pkt->eth->h_dest, ETH_ALEN);
		__builtin_memcpy(smac, pkt->eth->h_source, ETH_ALEN);
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return verdict(PASS_FRAG_NEEDED, XDP_PASS);
	default:
		return verdict(DROP_NO_ROUTE, XDP_DROP);
	}

	if (v6)
		err = encap_ip6ip6(ctx, be, dmac, smac);
	else
		err = encap_ipip(ctx, be, dmac, smac);
	if (err < 0)
		return verdict(DROP_ENCAP, XDP_DROP);
	count(&svc_stats, svc_id, bytes, new_flow);
	count(&be_stats, be_id, bytes, new_flow);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return verdict(PASS_NO_NEIGH, XDP_PASS);
	if (fib.ifindex == ctx->ingress_ifindex)
		return verdict(TX_TUN, XDP_TX);
	return verdict(REDIRECT_TUN, bpf_redirect(fib.ifindex, 0));
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
	enum flow_state state;
	__u32 be_id = 0;
	__u64 new_flow = 0;

	if (parse_packet(data, data_end, &pkt, &reason) < 0)
		return verdict(reason, XDP_PASS);

	__builtin_memcpy(sk.addr, pkt.flow.dst, sizeof(sk.addr));
	sk.port = pkt.flow.dport;
	sk.proto = pkt.flow.proto;
	sk.family = pkt.flow.family;
	svcp = bpf_map_lookup_elem(&services, &sk);
	if (!svcp)
		return reply_nat(ctx, &pkt);
	svc = *svcp;

	/* An ICMP error about a flow goes to the backend that sent the packet quoted in it, so
	 * that its path MTU discovery works; it never creates or confirms a flow. */
	if (pkt.icmp_err) {
		struct flow_value *pf = bpf_map_lookup_elem(&flows, &pkt.flow);

		if (!pf)
			pf = bpf_map_lookup_elem(&unconfirmed, &pkt.flow);
		if (!pf)
			return verdict(PASS_ICMP, XDP_PASS);
		be_id = pf->backend;
		be = usable(be_id, svc.id);
		if (!be || be->method == LB_METHOD_NAT)
			return verdict(PASS_ICMP, XDP_PASS);
		if (be->method == LB_METHOD_TUN)
			return forward_tun(ctx, &pkt, be, svc.id, be_id, bytes, 0);
		rewrite_dr(pkt.eth, be);
		count(&svc_stats, svc.id, bytes, 0);
		count(&be_stats, be_id, bytes, 0);
		if (be->ifindex == ctx->ingress_ifindex)
			return verdict(TX_DR, XDP_TX);
		return verdict(REDIRECT_DR, bpf_redirect(be->ifindex, 0));
	}

	be = pinned(&pkt, svc.id, &be_id, &state);
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
		/* A confirmed flow re-selected after its backend went stays confirmed; a new one
		 * waits in unconfirmed for a second packet. */
		if (state == FLOW_STALE_CONFIRMED)
			bpf_map_update_elem(&flows, &pkt.flow, &fv, BPF_ANY);
		else
			bpf_map_update_elem(&unconfirmed, &pkt.flow, &fv, BPF_ANY);
		remember_nat(&pkt, be, be_id, state == FLOW_STALE_CONFIRMED);
		new_flow = 1;
	}

	if (be->method == LB_METHOD_TUN)
		return forward_tun(ctx, &pkt, be, svc.id, be_id, bytes, new_flow);
	if (be->method == LB_METHOD_NAT) {
		__u8 addr[16];

		__builtin_memcpy(addr, be->addr, sizeof(addr));
		return forward_nat(ctx, &pkt, 1, addr, be->port, svc.id, be_id, bytes, new_flow);
	}
	rewrite_dr(pkt.eth, be);
	count(&svc_stats, svc.id, bytes, new_flow);
	count(&be_stats, be_id, bytes, new_flow);
	if (be->ifindex == ctx->ingress_ifindex)
		return verdict(TX_DR, XDP_TX);
	return verdict(REDIRECT_DR, bpf_redirect(be->ifindex, 0));
}

char _license[] SEC("license") = "Dual BSD/GPL";
