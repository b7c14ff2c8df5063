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

/* Bytes of a GUE header with no optional fields (variant 0, hlen 0). */
#define GUE_HDR_LEN 4
/* Bytes GUE adds in front of the inner datagram besides the outer IP header: UDP and GUE. */
#define GUE_OVERHEAD (sizeof(struct udphdr) + GUE_HDR_LEN)

/* gue_fill writes the UDP and GUE headers of a GUE packet carrying inner_len bytes of an inner
 * datagram of protocol proto (IPPROTO_IPIP or IPPROTO_IPV6). The UDP checksum is zero: keepalived's
 * default (nocsum), which the kernel's fou sockets accept over IPv4 and IPv6. */
static __always_inline void gue_fill(struct udphdr *udp, const struct backend_value *be,
				     __be16 sport, __u32 inner_len, __u8 proto)
{
	__u8 *gue = (void *)(udp + 1);

	udp->source = sport;
	udp->dest = be->tun_port;
	udp->len = bpf_htons(inner_len + GUE_OVERHEAD);
	udp->check = 0;
	/* Version 0, C clear, no optional fields; the protocol of the inner datagram; no flags. */
	gue[0] = 0;
	gue[1] = proto;
	gue[2] = 0;
	gue[3] = 0;
}

/* encap_gue4 puts outer IPv4, UDP and GUE headers from be->tun_src to the real server's
 * be->tun_port in front of the IPv4 datagram, as IPVS's GUE tunnel does: TOS, DF and id copied
 * from the inner header, the UDP source port sport chosen from the flow for ECMP entropy. */
static __always_inline int encap_gue4(struct xdp_md *ctx, const struct backend_value *be,
				      const __u8 *dmac, const __u8 *smac, __be16 sport)
{
	struct ethhdr *eth;
	struct iphdr *outer, *inner;
	struct udphdr *udp;
	void *data, *data_end;
	__u32 inner_len;

	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + GUE_OVERHEAD)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = (void *)(eth + 1);
	udp = (void *)(outer + 1);
	inner = (void *)udp + GUE_OVERHEAD;
	if ((void *)(inner + 1) > data_end)
		return -1;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	inner_len = ntohs_bounded(inner->tot_len);
	outer->version = 4;
	outer->ihl = sizeof(*outer) / 4;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(inner_len + sizeof(*outer) + GUE_OVERHEAD);
	outer->id = inner->id;
	outer->frag_off = inner->frag_off & bpf_htons(IP_DF);
	outer->ttl = TUN_TTL;
	outer->protocol = IPPROTO_UDP;
	outer->check = 0;
	__builtin_memcpy(&outer->saddr, be->tun_src, sizeof(outer->saddr));
	__builtin_memcpy(&outer->daddr, be->addr, sizeof(outer->daddr));
	outer->check = ipv4_csum(outer);
	gue_fill(udp, be, sport, inner_len, IPPROTO_IPIP);
	return 0;
}

/* encap_gue6 puts outer IPv6, UDP and GUE headers in front of the IPv6 datagram, traffic class
 * and flow label copied from the inner header. */
static __always_inline int encap_gue6(struct xdp_md *ctx, const struct backend_value *be,
				      const __u8 *dmac, const __u8 *smac, __be16 sport)
{
	struct ethhdr *eth;
	struct ipv6hdr *outer, *inner;
	struct udphdr *udp;
	void *data, *data_end;
	__u32 inner_len;

	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct ipv6hdr) + GUE_OVERHEAD)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = (void *)(eth + 1);
	udp = (void *)(outer + 1);
	inner = (void *)udp + GUE_OVERHEAD;
	if ((void *)(inner + 1) > data_end)
		return -1;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	inner_len = ntohs_bounded(inner->payload_len) + sizeof(*inner);
	__builtin_memcpy(outer, inner, 4);
	outer->payload_len = bpf_htons(inner_len + GUE_OVERHEAD);
	outer->nexthdr = IPPROTO_UDP;
	outer->hop_limit = TUN_TTL;
	__builtin_memcpy(&outer->saddr, be->tun_src, sizeof(outer->saddr));
	__builtin_memcpy(&outer->daddr, be->addr, sizeof(outer->daddr));
	gue_fill(udp, be, sport, inner_len, IPPROTO_IPV6);
	return 0;
}

/* Bytes of the too-big datagram an ICMP too-big error built here quotes: the IP header and
 * the transport ports and more, which is what the client's stack needs to find the flow. */
#define TOO_BIG_QUOTE 64
/* ICMP type and code of "destination unreachable: fragmentation needed", and ICMPv6 type of
 * "packet too big". */
#define ICMP_TYPE_UNREACH  3
#define ICMP_CODE_FRAG	   4
#define ICMPV6_TYPE_TOOBIG 2
/* Bytes of an ICMP or ICMPv6 error header. */
#define ICMP_ERR_HDR 8

/* csum_words adds n 16-bit words at p to a one's complement sum. */
static __always_inline __u32 csum_words(__u32 sum, const __u16 *p, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		sum += p[i];
	return sum;
}

/* csum_fold folds a 32-bit one's complement sum to the 16-bit checksum. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* too_big4 turns the frame, an IPv4 datagram of ip_len bytes from client to vip (network order),
 * into an ICMP "fragmentation needed" error from vip back to the client announcing mtu (RFC
 * 1191), quoting the datagram's first TOO_BIG_QUOTE bytes, addressed back to the sender. */
static __always_inline int too_big4(struct xdp_md *ctx, __u32 ip_len, __be32 client, __be32 vip,
				    __u16 mtu)
{
	const int len = sizeof(struct ethhdr) + sizeof(struct iphdr) + ICMP_ERR_HDR + TOO_BIG_QUOTE;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	struct iphdr *ip;
	__u8 *icmp;

	if (ip_len < TOO_BIG_QUOTE || (void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_tail(ctx, (int)(sizeof(struct ethhdr) + TOO_BIG_QUOTE) -
					     (int)(data_end - data)))
		return -1;
	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + ICMP_ERR_HDR)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + len > data_end)
		return -1;
	eth = data;
	ip = (void *)(eth + 1);
	icmp = (void *)(ip + 1);

	/* The old Ethernet header lies under the new IP and ICMP headers: read it first. */
	__builtin_memcpy(eth->h_source, (__u8 *)data + sizeof(struct iphdr) + ICMP_ERR_HDR,
			 ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = sizeof(*ip) / 4;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(*ip) + ICMP_ERR_HDR + TOO_BIG_QUOTE);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = TUN_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = vip;
	ip->daddr = client;
	ip->check = ipv4_csum(ip);

	icmp[0] = ICMP_TYPE_UNREACH;
	icmp[1] = ICMP_CODE_FRAG;
	icmp[2] = 0;
	icmp[3] = 0;
	icmp[4] = 0;
	icmp[5] = 0;
	icmp[6] = mtu >> 8;
	icmp[7] = mtu & 0xff;
	*(__u16 *)(icmp + 2) =
		csum_fold(csum_words(0, (const __u16 *)icmp, (ICMP_ERR_HDR + TOO_BIG_QUOTE) / 2));
	return 0;
}

/* too_big6 is too_big4 for IPv6: an ICMPv6 "packet too big" from vip to the client (RFC 4443). */
static __always_inline int too_big6(struct xdp_md *ctx, __u32 ip_len, const __u8 *client,
				    const __u8 *vip, __u32 mtu)
{
	const int len =
		sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + ICMP_ERR_HDR + TOO_BIG_QUOTE;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	struct ipv6hdr *ip6;
	__u32 sum;
	__u8 *icmp;

	if (ip_len < TOO_BIG_QUOTE || (void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_tail(ctx, (int)(sizeof(struct ethhdr) + TOO_BIG_QUOTE) -
					     (int)(data_end - data)))
		return -1;
	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct ipv6hdr) + ICMP_ERR_HDR)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + len > data_end)
		return -1;
	eth = data;
	ip6 = (void *)(eth + 1);
	icmp = (void *)(ip6 + 1);

	__builtin_memcpy(eth->h_source, (__u8 *)data + sizeof(struct ipv6hdr) + ICMP_ERR_HDR,
			 ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	__builtin_memset(ip6, 0, 4);
	ip6->version = 6;
	ip6->payload_len = bpf_htons(ICMP_ERR_HDR + TOO_BIG_QUOTE);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = TUN_TTL;
	__builtin_memcpy(&ip6->saddr, vip, sizeof(ip6->saddr));
	__builtin_memcpy(&ip6->daddr, client, sizeof(ip6->daddr));

	icmp[0] = ICMPV6_TYPE_TOOBIG;
	icmp[1] = 0;
	icmp[2] = 0;
	icmp[3] = 0;
	icmp[4] = mtu >> 24;
	icmp[5] = (mtu >> 16) & 0xff;
	icmp[6] = (mtu >> 8) & 0xff;
	icmp[7] = mtu & 0xff;
	/* Pseudo-header (RFC 8200 section 8.1): addresses, upper-layer length, next header. */
	sum = csum_words(0, (const __u16 *)&ip6->saddr, 16);
	sum += bpf_htons(ICMP_ERR_HDR + TOO_BIG_QUOTE);
	sum += bpf_htons(IPPROTO_ICMPV6);
	sum = csum_words(sum, (const __u16 *)icmp, (ICMP_ERR_HDR + TOO_BIG_QUOTE) / 2);
	*(__u16 *)(icmp + 2) = csum_fold(sum);
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

/* nat_icmp_rewrite translates an ICMP or ICMPv6 error about a NAT flow as nat_rewrite translates
 * the flow's packets, as IPVS does: toward the real server (dst set) the outer destination and
 * the quoted packet's source address and port become addr and port; toward the client the outer
 * source and the quoted packet's destination become the VIP and service port. The checksums of
 * the outer IPv4 header, the quoted IPv4 header, the quoted transport header when the error
 * quotes it (a UDP zero checksum stays zero) and the ICMP message follow incrementally. */
static __always_inline int nat_icmp_rewrite(struct xdp_md *ctx, const struct packet *pkt, int dst,
					    const __u8 *addr, __be16 port)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u16 old_addr[8] = {}, new_addr[8] = {}, old_port, old_l4 = 0, new_l4 = 0, *icheck;
	__u8 *icmp = pkt->l4;
	__be16 *ports, *l4port;
	__u16 *l4check = NULL;
	void *outer_field, *in_field;

	if ((void *)(icmp + ICMP_HDR_LEN) > data_end)
		return -1;
	icheck = (__u16 *)(icmp + 2);
	if (pkt->flow.family == LB_AF_INET6) {
		struct ipv6hdr *ip6 = pkt->l3, *in6 = (void *)(icmp + ICMP_HDR_LEN);
		__u16 old_outer[8];

		if ((void *)(ip6 + 1) > data_end || (void *)(in6 + 1) > data_end)
			return -1;
		ports = (void *)(in6 + 1);
		if ((void *)(ports + 2) > data_end)
			return -1;
		outer_field = dst ? (void *)&ip6->daddr : (void *)&ip6->saddr;
		in_field = dst ? (void *)&in6->saddr : (void *)&in6->daddr;
		/* The outer address may be a router's, the quoted one is the flow's. */
		__builtin_memcpy(old_outer, outer_field, 16);
		__builtin_memcpy(old_addr, in_field, 16);
		__builtin_memcpy(new_addr, addr, 16);
		__builtin_memcpy(outer_field, addr, 16);
		__builtin_memcpy(in_field, addr, 16);
		/* The ICMPv6 checksum covers the outer address (pseudo-header) and the quoted one.
		 */
		*icheck = csum_update(*icheck, old_outer, new_addr, 8);
		*icheck = csum_update(*icheck, old_addr, new_addr, 8);
	} else {
		struct iphdr *ip = pkt->l3, *in = (void *)(icmp + ICMP_HDR_LEN);
		__u16 old_check;

		if ((void *)(ip + 1) > data_end || (void *)(in + 1) > data_end)
			return -1;
		if (in->ihl < 5)
			return -1;
		ports = (void *)in + in->ihl * 4;
		if ((void *)(ports + 2) > data_end)
			return -1;
		outer_field = dst ? (void *)&ip->daddr : (void *)&ip->saddr;
		in_field = dst ? (void *)&in->saddr : (void *)&in->daddr;
		__builtin_memcpy(old_addr, in_field, 4);
		__builtin_memcpy(new_addr, addr, 4);
		/* The outer address may be a router's: fold in what it was. */
		ip->check = csum_update(ip->check, (__u16 *)outer_field, new_addr, 2);
		__builtin_memcpy(outer_field, addr, 4);
		__builtin_memcpy(in_field, addr, 4);
		old_check = in->check;
		in->check = csum_update(in->check, old_addr, new_addr, 2);
		*icheck = csum_update(*icheck, old_addr, new_addr, 2);
		*icheck = csum_update(*icheck, &old_check, &in->check, 1);
	}

	l4port = dst ? &ports[0] : &ports[1];
	old_port = *l4port;
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)ports;

		if ((void *)(tcp + 1) <= data_end)
			l4check = &tcp->check;
	} else {
		struct udphdr *udp = (void *)ports;

		if ((void *)(udp + 1) <= data_end &&
		    (udp->check || pkt->flow.family == LB_AF_INET6))
			l4check = &udp->check;
	}
	if (l4check) {
		old_l4 = *l4check;
		if (pkt->flow.family == LB_AF_INET6)
			new_l4 = csum_update(old_l4, old_addr, new_addr, 8);
		else
			new_l4 = csum_update(old_l4, old_addr, new_addr, 2);
		new_l4 = csum_update(new_l4, &old_port, (__u16 *)&port, 1);
		if (pkt->flow.proto == IPPROTO_UDP && new_l4 == 0)
			new_l4 = 0xffff;
		*l4check = new_l4;
		*icheck = csum_update(*icheck, &old_l4, &new_l4, 1);
	}
	*l4port = port;
	*icheck = csum_update(*icheck, &old_port, (__u16 *)&port, 1);
	return 0;
}

#endif /* SLUICE_REWRITE_H */
