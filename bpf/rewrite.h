/* Packet rewrites per forwarding method. */
#ifndef SLUICE_REWRITE_H
#define SLUICE_REWRITE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "parse.h"
#include "structs.h"

/* Hop limit of outer headers, the kernel's default TTL. */
#define TUN_TTL 64
/* IPv4 "don't fragment" flag, in host order. */
#define IP_DF 0x4000

/* rewrite_dr readdresses the frame to the real server: in DR the IP header still carries the VIP,
 * which the real server owns on a non-ARPing interface, so only the MAC addresses change. */
static __always_inline void rewrite_dr(struct ethhdr *eth, const struct backend_value *be)
{
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
}

/* ipv4_csum is the header checksum of a 20-byte IPv4 header whose check field is zero. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* encap_ipip puts an outer IPv4 header from be->tun_src to the real server in front of the IPv4
 * datagram, as the kernel's ipip device would (RFC 2003): TOS, DF and id copied from the inner
 * header. dmac and smac address the new frame. */
static __always_inline int encap_ipip(struct xdp_md *ctx, const struct backend_value *be,
				      const __u8 *dmac, const __u8 *smac)
{
	struct ethhdr *eth;
	struct iphdr *outer, *inner;
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = (void *)(eth + 1);
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > data_end)
		return -1;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	outer->version = 4;
	outer->ihl = sizeof(*outer) / 4;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(*outer));
	outer->id = inner->id;
	outer->frag_off = inner->frag_off & bpf_htons(IP_DF);
	outer->ttl = TUN_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	__builtin_memcpy(&outer->saddr, be->tun_src, sizeof(outer->saddr));
	__builtin_memcpy(&outer->daddr, be->addr, sizeof(outer->daddr));
	outer->check = ipv4_csum(outer);
	return 0;
}

/* encap_ip6ip6 puts an outer IPv6 header from be->tun_src to the real server in front of the
 * IPv6 datagram (RFC 2473), traffic class and flow label copied from the inner header. */
static __always_inline int encap_ip6ip6(struct xdp_md *ctx, const struct backend_value *be,
					const __u8 *dmac, const __u8 *smac)
{
	struct ethhdr *eth;
	struct ipv6hdr *outer, *inner;
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = (void *)(eth + 1);
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > data_end)
		return -1;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	/* Version, traffic class and flow label are the first four bytes of both headers. */
	__builtin_memcpy(outer, inner, 4);
	outer->payload_len = bpf_htons(bpf_ntohs(inner->payload_len) + sizeof(*inner));
	outer->nexthdr = IPPROTO_IPV6;
	outer->hop_limit = TUN_TTL;
	__builtin_memcpy(&outer->saddr, be->tun_src, sizeof(outer->saddr));
	__builtin_memcpy(&outer->daddr, be->addr, sizeof(outer->daddr));
	return 0;
}

/* csum_update folds the change of n 16-bit words from old to new into an Internet checksum
 * (RFC 1624, eqn. 3). One's complement sums do not depend on byte order, so the words are used as
 * they lie in the packet. */
static __always_inline __u16 csum_update(__u16 check, const __u16 *old, const __u16 *new, int n)
{
	__u32 sum = (__u16)~check;
	int i;

#pragma unroll
	for (i = 0; i < n; i++) {
		sum += (__u16)~old[i];
		sum += new[i];
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* nat_rewrite replaces the destination (dst set) or source address and port of the packet with
 * addr and port, updating the IPv4 header checksum and the TCP or UDP checksum incrementally. A
 * UDP-over-IPv4 datagram sent without a checksum (zero) keeps none; a UDP checksum that comes out
 * zero is sent as all ones (RFC 768). */
static __always_inline int nat_rewrite(struct xdp_md *ctx, const struct packet *pkt, int dst,
				       const __u8 *addr, __be16 port)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u16 old_addr[8] = {}, new_addr[8] = {}, old_port, *check;
	int words = pkt->flow.family == LB_AF_INET6 ? 8 : 2;
	__be16 *l4port;

	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = pkt->l4;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		check = &tcp->check;
		l4port = dst ? &tcp->dest : &tcp->source;
	} else {
		struct udphdr *udp = pkt->l4;

		if ((void *)(udp + 1) > data_end)
			return -1;
		check = &udp->check;
		l4port = dst ? &udp->dest : &udp->source;
	}
	old_port = *l4port;

	if (pkt->flow.family == LB_AF_INET6) {
		struct ipv6hdr *ip6 = pkt->l3;
		void *field;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		field = dst ? (void *)&ip6->daddr : (void *)&ip6->saddr;
		__builtin_memcpy(old_addr, field, 16);
		__builtin_memcpy(new_addr, addr, 16);
		__builtin_memcpy(field, addr, 16);
	} else {
		struct iphdr *ip = pkt->l3;
		void *field;

		if ((void *)(ip + 1) > data_end)
			return -1;
		field = dst ? (void *)&ip->daddr : (void *)&ip->saddr;
		__builtin_memcpy(old_addr, field, 4);
		__builtin_memcpy(new_addr, addr, 4);
		__builtin_memcpy(field, addr, 4);
		ip->check = csum_update(ip->check, old_addr, new_addr, 2);
	}

	if (pkt->flow.proto == IPPROTO_UDP && *check == 0 && pkt->flow.family == LB_AF_INET) {
		*l4port = port;
		return 0;
	}
	if (words == 8)
		*check = csum_update(*check, old_addr, new_addr, 8);
	else
		*check = csum_update(*check, old_addr, new_addr, 2);
	*check = csum_update(*check, &old_port, (__u16 *)&port, 1);
	if (pkt->flow.proto == IPPROTO_UDP && *check == 0)
		*check = 0xffff;
	*l4port = port;
	return 0;
}

#endif /* SLUICE_REWRITE_H */
