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
#include "unconf.h"
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

/* nat_port is the port a NAT flow goes to on backend be: its own, or for a real server of port 0
 * (of an all-ports service) the one the client asked for. */
static __always_inline __be16 nat_port(const struct packet *pkt, const struct backend_value *be)
{
	return be->port ? be->port : pkt->flow.dport;
}

/* nat_key is the 5-tuple of a reply from backend be to the client of the forward flow. */
static __always_inline void nat_key(const struct packet *pkt, const struct backend_value *be,
				    struct flow_key *key)
{
	__builtin_memcpy(key->src, be->addr, sizeof(key->src));
	__builtin_memcpy(key->dst, pkt->flow.src, sizeof(key->dst));
	key->sport = nat_port(pkt, be);
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

/* older reports whether a time stamp is more than limit before now. Another CPU may have stamped
 * it just after this one read now: a stamp in the future is not old. */
static __always_inline int older(__u64 now, __u64 stamp, __u64 limit)
{
	return (__s64)(now - stamp) > (__s64)limit;
}

/* expired reports whether the packet starts over a flow: one silent since fv->last_seen_ns for
 * longer than its service's idle timeout (lvs_timeouts), or a bare SYN reusing the ports of a
 * flow that was closing (IPVS's conn_reuse_mode). The packet is then scheduled as a new flow. */
static __always_inline int expired(const struct flow_value *fv, const struct packet *pkt,
				   const struct svc_conf *conf, __u64 now)
{
	__u64 limit = conf->idle_ns;

	if (fv->flags & FLOW_F_FIN) {
		if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			return 1;
		if (conf->fin_ns)
			limit = conf->fin_ns;
	}
	return limit && older(now, fv->last_seen_ns, limit);
}

/* touch refreshes a flow entry with the packet: its time, and a FIN or RST seen. The coarse
 * clock moves every few milliseconds, so most packets find the time already written and leave
 * the entry's cache line clean. */
static __always_inline void touch(struct flow_value *fv, const struct packet *pkt, __u64 now)
{
	if (fv->last_seen_ns != now)
		fv->last_seen_ns = now;
	if ((pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) && !(fv->flags & FLOW_F_FIN))
		fv->flags |= FLOW_F_FIN;
}

/* PERSIST_EPOCH_SHIFT: a flow refreshes its client's persistence template on its first packet
 * in each 2^30 ns (about one second) of the clock, so that busy flows do not look the template up
 * on every packet. */
#define PERSIST_EPOCH_SHIFT 30

/* new_epoch reports whether now is in a later refresh epoch than the flow's last packet. */
static __always_inline int new_epoch(const struct flow_value *fv, __u64 now)
{
	return (now >> PERSIST_EPOCH_SHIFT) != (fv->last_seen_ns >> PERSIST_EPOCH_SHIFT);
}

/* pinned returns the backend the flow is pinned to when it may still be used, else NULL. A flow
 * found in unconfirmed is promoted into flows by any packet but a bare SYN: a handshake's ACK, or
 * the second packet of a UDP flow. A spoofed source never sends that packet, so a flood fills
 * unconfirmed alone. A flow idle past its timeout counts as absent. *epoch is set when the packet
 * is the flow's first in a refresh epoch. ref is where the flow is, or would go, in unconfirmed. */
static __always_inline struct backend_value *pinned(struct packet *pkt, const struct svc_conf *conf,
						    __u32 svc_id, __u32 *be_id,
						    enum flow_state *state, __u64 now, int *epoch,
						    struct unconf_ref *ref)
{
	struct flow_value *fv = bpf_map_lookup_elem(&flows, &pkt->flow);
	struct flow_value uv;
	struct backend_value *be;

	*state = FLOW_NONE;
	if (fv && expired(fv, pkt, conf, now)) {
		/* Gone, so that the next packets find the flow this one starts. */
		bpf_map_delete_elem(&flows, &pkt->flow);
	} else if (fv) {
		*be_id = fv->backend;
		be = usable(*be_id, svc_id);
		if (be) {
			*epoch = new_epoch(fv, now);
			touch(fv, pkt, now);
			*state = FLOW_PINNED;
			return be;
		}
		*state = FLOW_STALE_CONFIRMED;
	}
	unconf_find(&pkt->flow, ref);
	if (ref->way < 0)
		return NULL;
	unconf_get(ref, &uv);
	if (expired(&uv, pkt, conf, now))
		return NULL;
	*be_id = uv.backend;
	be = usable(*be_id, svc_id);
	if (!be)
		return NULL;
	*epoch = new_epoch(&uv, now);
	touch(&uv, pkt, now);
	if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN &&
	    bpf_map_update_elem(&flows, &pkt->flow, &uv, BPF_ANY) == 0) {
		unconf_delete(ref);
		remember_nat(pkt, be, *be_id, 1);
	} else {
		/* A bare SYN (or a promotion that failed) stays unconfirmed, refreshed. */
		unconf_put(ref, NULL, &uv);
	}
	*state = FLOW_PINNED;
	return be;
}

/* persist_key_of is the persistence template key of the packet's client for service svc_id. */
static __always_inline void persist_key_of(const struct packet *pkt, const struct svc_conf *conf,
					   __u32 svc_id, struct persist_key *key)
{
	__u32 src[4], mask[4];

	__builtin_memcpy(src, pkt->flow.src, sizeof(src));
	__builtin_memcpy(mask, conf->persist_mask, sizeof(mask));
	src[0] &= mask[0];
	src[1] &= mask[1];
	src[2] &= mask[2];
	src[3] &= mask[3];
	__builtin_memcpy(key->src, src, sizeof(key->src));
	key->svc_id = svc_id;
}

/* persisted returns the backend the client's template names when the template is younger than
 * the persistence timeout and the backend may take new flows (up, weight above 0), else NULL. */
static __always_inline struct backend_value *persisted(const struct persist_key *key,
						       const struct svc_conf *conf, __u32 svc_id,
						       __u32 *be_id, __u64 now)
{
	struct flow_value *tv = bpf_map_lookup_elem(&persist, key);
	struct backend_value *be;
	__u32 id;

	if (!tv || older(now, tv->last_seen_ns, conf->persist_ns))
		return NULL;
	id = tv->backend;
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be || !(be->flags & BE_F_NEW) || be->svc_id != svc_id)
		return NULL;
	tv->last_seen_ns = now;
	*be_id = id;
	return be;
}

/* refresh_persist keeps a persistent client's template alive while its flows carry traffic, as
 * IPVS keeps a template while it controls connections, and restores one the LRU evicted. Flows
 * call it about once a second (new_epoch). */
static __always_inline void refresh_persist(const struct persist_key *key, __u32 be_id, __u64 now)
{
	struct flow_value *tv = bpf_map_lookup_elem(&persist, key);

	if (!tv) {
		struct flow_value nv = {.backend = be_id, .last_seen_ns = now};

		bpf_map_update_elem(&persist, key, &nv, BPF_ANY);
		return;
	}
	if (tv->backend == be_id)
		tv->last_seen_ns = now;
}

/* select_backend picks a backend id for a new flow from the service's selection table; it returns
 * a reason to drop when it cannot. */
static __always_inline int select_backend(const struct svc_value *svc, const struct svc_conf *conf,
					  const struct packet *pkt, __u32 *be_id,
					  enum lb_reason *reason)
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
		const __u8 *addr = conf->hash == SVC_HASH_DST ? pkt->flow.dst : pkt->flow.src;
		__u32 h;

		if (pkt->flow.family == LB_AF_INET6) {
			h = src_hash_v6(addr);
		} else {
			__be32 a4;

			__builtin_memcpy(&a4, addr, sizeof(a4));
			h = src_hash_v4(a4);
		}
		if (conf->hash == SVC_HASH_SRC_PORT)
			h = port_hash(h, pkt->flow.sport);
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

/* may_fragment reports whether the packet is IPv4 without DF: routers may fragment it. */
static __always_inline int may_fragment(struct xdp_md *ctx, const struct packet *pkt)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = pkt->l3;

	if (pkt->flow.family != LB_AF_INET || (void *)(ip + 1) > data_end)
		return 0;
	return !(ip->frag_off & bpf_htons(IP_DF));
}

/* send_too_big answers a client's packet that may not be fragmented and that its rewrite makes
 * too big for the route onward with an ICMP frag-needed or ICMPv6 packet-too-big from the VIP
 * announcing mtu, the room left for the client's datagrams. */
static __always_inline int send_too_big(struct xdp_md *ctx, const struct packet *pkt, __u32 mtu)
{
	__be32 client, vip;

	if (pkt->flow.family == LB_AF_INET6) {
		if (too_big6(ctx, pkt->ip_len, pkt->flow.src, pkt->flow.dst, mtu) < 0)
			return verdict(PASS_FRAG_NEEDED, XDP_PASS);
		return verdict(TX_ICMP_TOO_BIG, XDP_TX);
	}
	__builtin_memcpy(&client, pkt->flow.src, sizeof(client));
	__builtin_memcpy(&vip, pkt->flow.dst, sizeof(vip));
	if (too_big4(ctx, pkt->ip_len, client, vip, mtu) < 0)
		return verdict(PASS_FRAG_NEEDED, XDP_PASS);
	return verdict(TX_ICMP_TOO_BIG, XDP_TX);
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
	int rc, rc2;

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
		/* Replies and errors go to the stack, which answers or fragments them. */
		if (!dst || pkt->icmp_err || !fib.mtu_result)
			return verdict(PASS_FRAG_NEEDED, XDP_PASS);
		if (!may_fragment(ctx, pkt))
			return send_too_big(ctx, pkt, fib.mtu_result);
		break;
	default:
		return verdict(DROP_NO_ROUTE, XDP_DROP);
	}
	if (pkt->icmp_err)
		rc2 = nat_icmp_rewrite(ctx, pkt, dst, addr, port);
	else
		rc2 = nat_rewrite(ctx, pkt, dst, addr, port);
	if (rc2 < 0)
		return verdict(PASS_TRUNCATED, XDP_PASS);
	if (dst) {
		count(&svc_stats, svc_id, bytes, new_flow);
		count(&be_stats, be_id, bytes, new_flow);
	}
	/* Both keep the frame addressed to this host, so that the stack takes it in to forward. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return verdict(PASS_NO_NEIGH, XDP_PASS);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return verdict(PASS_TO_FRAGMENT, XDP_PASS);

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

/* tun_overhead is the bytes backend be's tunnel puts in front of a datagram of the family. */
static __always_inline __u32 tun_overhead(const struct backend_value *be, int v6)
{
	__u32 ip = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);

	return be->encap == LB_ENCAP_GUE ? ip + GUE_OVERHEAD : ip;
}

/* gue_sport is the UDP source port of a flow's GUE packets: a hash of its client address and
 * port, in 32768-65535, so that routers spread flows over equal-cost paths (as the kernel's
 * udp_flow_src_port does) while one flow keeps one path. */
static __always_inline __be16 gue_sport(const struct packet *pkt)
{
	__u32 h;

	if (pkt->flow.family == LB_AF_INET6) {
		h = src_hash_v6(pkt->flow.src);
	} else {
		__be32 a4;

		__builtin_memcpy(&a4, pkt->flow.src, sizeof(a4));
		h = src_hash_v4(a4);
	}
	h = port_hash(h, pkt->flow.sport);
	return bpf_htons(0x8000 | (h & 0x7fff));
}

/* encap puts backend be's tunnel headers in front of the datagram. */
static __always_inline int encap(struct xdp_md *ctx, const struct packet *pkt,
				 const struct backend_value *be, const __u8 *dmac, const __u8 *smac)
{
	int v6 = pkt->flow.family == LB_AF_INET6;

	if (be->encap == LB_ENCAP_GUE) {
		__be16 sport = gue_sport(pkt);

		if (v6)
			return encap_gue6(ctx, be, dmac, smac, sport);
		return encap_gue4(ctx, be, dmac, smac, sport);
	}
	if (v6)
		return encap_ip6ip6(ctx, be, dmac, smac);
	return encap_ipip(ctx, be, dmac, smac);
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
	int v6 = pkt->flow.family == LB_AF_INET6, rc;

	fib.family = pkt->flow.family;
	fib.ifindex = ctx->ingress_ifindex;
	fib.tot_len = pkt->ip_len + tun_overhead(be, v6);
	if (be->encap == LB_ENCAP_GUE)
		fib.l4_protocol = IPPROTO_UDP;
	else
		fib.l4_protocol = v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	if (v6) {
		__builtin_memcpy(fib.ipv6_src, be->tun_src, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, be->addr, sizeof(fib.ipv6_dst));
	} else {
		__builtin_memcpy(&fib.ipv4_src, be->tun_src, sizeof(fib.ipv4_src));
		__builtin_memcpy(&fib.ipv4_dst, be->addr, sizeof(fib.ipv4_dst));
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(smac, fib.smac, ETH_ALEN);
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		/* Errors go to the stack. A datagram routers may fragment goes to the stack
		 * encapsulated, DF clear, to be fragmented as a router would; any other gets an
		 * error announcing the room left inside the tunnel. */
		if (pkt->icmp_err || fib.mtu_result <= tun_overhead(be, v6))
			return verdict(PASS_FRAG_NEEDED, XDP_PASS);
		if (!may_fragment(ctx, pkt))
			return send_too_big(ctx, pkt, fib.mtu_result - tun_overhead(be, v6));
		/* fall through */
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		/* Still addressed to this host, so that the stack takes it in to forward. */
		__builtin_memcpy(dmac, pkt->eth->h_dest, ETH_ALEN);
		__builtin_memcpy(smac, pkt->eth->h_source, ETH_ALEN);
		break;
	default:
		return verdict(DROP_NO_ROUTE, XDP_DROP);
	}

	if (encap(ctx, pkt, be, dmac, smac) < 0)
		return verdict(DROP_ENCAP, XDP_DROP);
	count(&svc_stats, svc_id, bytes, new_flow);
	count(&be_stats, be_id, bytes, new_flow);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return verdict(PASS_NO_NEIGH, XDP_PASS);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return verdict(PASS_TO_FRAGMENT, XDP_PASS);
	if (fib.ifindex == ctx->ingress_ifindex)
		return verdict(TX_TUN, XDP_TX);
	return verdict(REDIRECT_TUN, bpf_redirect(fib.ifindex, 0));
}

/* nat_enabled reports whether some backend forwards by NAT (GLOBAL_F_NAT): without one, packets
 * of no service cannot be replies to translate, and the reverse-NAT tables are not looked up. */
static __always_inline int nat_enabled(void)
{
	__u32 key = 0, *flags = bpf_map_lookup_elem(&lb_globals, &key);

	return flags && (*flags & GLOBAL_F_NAT);
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
	struct svc_conf *conf;
	struct persist_key pk = {};
	struct backend_value *be;
	struct flow_value fv = {};
	struct unconf_ref ref = {};
	enum lb_reason reason;
	enum flow_state state;
	__u32 be_id = 0;
	__u64 new_flow = 0, now;
	int epoch = 0;

	if (parse_packet(data, data_end, &pkt, &reason) < 0)
		return verdict(reason, XDP_PASS);

	__builtin_memcpy(sk.addr, pkt.flow.dst, sizeof(sk.addr));
	sk.port = pkt.flow.dport;
	sk.proto = pkt.flow.proto;
	sk.family = pkt.flow.family;
	svcp = bpf_map_lookup_elem(&services, &sk);
	if (!svcp) {
		/* An all-ports service (virtual_server IP 0) takes the ports no service names. */
		sk.port = 0;
		svcp = bpf_map_lookup_elem(&services, &sk);
		if (!svcp) {
			if (!nat_enabled())
				return verdict(PASS_NOT_VIP, XDP_PASS);
			return reply_nat(ctx, &pkt);
		}
	}
	svc = *svcp;

	/* An ICMP error about a flow goes to the backend that sent the packet quoted in it, so
	 * that its path MTU discovery works; it never creates or confirms a flow. */
	if (pkt.icmp_err) {
		struct flow_value *pf;

		if (pkt.icmp_err != ICMP_ERR_TOO_BIG)
			return verdict(PASS_NOT_L4, XDP_PASS);
		pf = bpf_map_lookup_elem(&flows, &pkt.flow);
		if (pf) {
			be_id = pf->backend;
		} else {
			unconf_find(&pkt.flow, &ref);
			if (ref.way < 0)
				return verdict(PASS_ICMP, XDP_PASS);
			unconf_get(&ref, &fv);
			be_id = fv.backend;
		}
		be = usable(be_id, svc.id);
		if (!be)
			return verdict(PASS_ICMP, XDP_PASS);
		if (be->method == LB_METHOD_TUN)
			return forward_tun(ctx, &pkt, be, svc.id, be_id, bytes, 0);
		if (be->method == LB_METHOD_NAT) {
			__u8 addr[16];

			__builtin_memcpy(addr, be->addr, sizeof(addr));
			return forward_nat(ctx, &pkt, 1, addr, nat_port(&pkt, be), svc.id, be_id,
					   bytes, 0);
		}
		rewrite_dr(pkt.eth, be);
		count(&svc_stats, svc.id, bytes, 0);
		count(&be_stats, be_id, bytes, 0);
		if (be->ifindex == ctx->ingress_ifindex)
			return verdict(TX_DR, XDP_TX);
		return verdict(REDIRECT_DR, bpf_redirect(be->ifindex, 0));
	}

	conf = bpf_map_lookup_elem(&svc_confs, &svc.id);
	if (!conf)
		return verdict(DROP_TABLE_MISS, XDP_DROP);
	now = bpf_ktime_get_coarse_ns();
	if (conf->persist_ns)
		persist_key_of(&pkt, conf, svc.id, &pk);

	be = pinned(&pkt, conf, svc.id, &be_id, &state, now, &epoch, &ref);
	if (be) {
		if (conf->persist_ns && epoch)
			refresh_persist(&pk, be_id, now);
	} else {
		if (conf->persist_ns)
			be = persisted(&pk, conf, svc.id, &be_id, now);
		if (!be) {
			if (select_backend(&svc, conf, &pkt, &be_id, &reason) < 0)
				return verdict(reason, XDP_DROP);
			be = bpf_map_lookup_elem(&backends, &be_id);
			/* The loader marks a backend up before listing it and down only after the
			 * table that drops it is published, so this is a packet that read the old
			 * table just before. */
			if (!be || !(be->flags & BE_F_UP) || be->svc_id != svc.id)
				return verdict(DROP_TABLE_MISS, XDP_DROP);
			if (conf->persist_ns) {
				struct flow_value tv = {.backend = be_id, .last_seen_ns = now};

				bpf_map_update_elem(&persist, &pk, &tv, BPF_ANY);
			}
		}
		fv.backend = be_id;
		fv.last_seen_ns = now;
		if (pkt.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			fv.flags = FLOW_F_FIN;
		/* A confirmed flow re-selected after its backend went stays confirmed; a new one
		 * waits in unconfirmed for a second packet. */
		if (state == FLOW_STALE_CONFIRMED)
			bpf_map_update_elem(&flows, &pkt.flow, &fv, BPF_ANY);
		else
			unconf_insert(&ref, &pkt.flow, &fv);
		remember_nat(&pkt, be, be_id, state == FLOW_STALE_CONFIRMED);
		new_flow = 1;
	}

	if (be->method == LB_METHOD_TUN)
		return forward_tun(ctx, &pkt, be, svc.id, be_id, bytes, new_flow);
	if (be->method == LB_METHOD_NAT) {
		__u8 addr[16];

		__builtin_memcpy(addr, be->addr, sizeof(addr));
		return forward_nat(ctx, &pkt, 1, addr, nat_port(&pkt, be), svc.id, be_id, bytes,
				   new_flow);
	}
	rewrite_dr(pkt.eth, be);
	count(&svc_stats, svc.id, bytes, new_flow);
	count(&be_stats, be_id, bytes, new_flow);
	if (be->ifindex == ctx->ingress_ifindex)
		return verdict(TX_DR, XDP_TX);
	return verdict(REDIRECT_DR, bpf_redirect(be->ifindex, 0));
}

char _license[] SEC("license") = "Dual BSD/GPL";
