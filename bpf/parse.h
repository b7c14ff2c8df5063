/* Packet parsing: Ethernet, IPv4 (with options) or IPv6 (with extension headers), TCP/UDP ports;
 * every read bounds-checked against the frame and the datagram. */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"

/* IPv4 "more fragments" flag, in host order. */
#define IP_MF 0x2000
/* IPv4 fragment offset mask, in host order. */
#define IP_OFFSET 0x1fff
/* IPv6 fragment header's offset mask, in host order. */
#define IP6_OFFSET 0xfff8
/* IPv6 fragment header's "more fragments" flag, in host order. */
#define IP6_MF 0x0001

/* IPv6 fragment header (RFC 8200 section 4.5); the uapi headers do not export it. */
struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* What parse_packet learnt about a frame the load balancer may forward. */
struct packet {
	/* Ethernet header, for the rewrite. */
	struct ethhdr *eth;
	/* IPv4 or IPv6 header, for NAT. */
	void *l3;
	/* TCP or UDP header, for NAT. */
	void *l4;
	/* 5-tuple, also the flows key. */
	struct flow_key flow;
	/* IP datagram length, header included (IPv4 total length, IPv6 40 + payload length). */
	__u32 ip_len;
	/* TCP flags byte (FIN, SYN, RST, PSH, ACK, ...); 0 for UDP. */
	__u8 tcp_flags;
	/* Set for an ICMP or ICMPv6 error (enum icmp_err): flow is then the 5-tuple of the packet
	 * quoted in it, reversed (a VIP's reply quoted gives the client's flow to the VIP). */
	__u8 icmp_err;
};

/* What kind of ICMP error a packet is (packet.icmp_err). */
enum icmp_err {
	/* Not an ICMP error. */
	ICMP_ERR_NONE = 0,
	/* ICMP fragmentation needed or ICMPv6 packet too big: forwarded to the flow's backend
	 * whatever its method, for its path MTU discovery. */
	ICMP_ERR_TOO_BIG,
	/* Another error (destination or port unreachable, time exceeded, parameter problem):
	 * only translated for NAT flows. */
	ICMP_ERR_OTHER,
};

/* TCP flag bits of the flags byte. */
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* ntohs_bounded is bpf_ntohs with a result the verifier knows is below 65536: Linux 6.1's
 * verifier (Debian 12) forgets the bounds of a byte-swapped register and then refuses packet
 * pointer arithmetic with it. The mask, hidden from the compiler by the asm, restates them. */
static __always_inline __u32 ntohs_bounded(__be16 v)
{
	__u32 x = bpf_ntohs(v);

	asm volatile("" : "+r"(x));
	return x & 0xffff;
}

/* parse_ipv4 checks the IPv4 header at ip, fills the addresses and returns the transport
 * header's offset from ip and the datagram's length, or -1 with *reason set. */
static __always_inline int parse_ipv4(void *data_end, struct iphdr *ip, struct packet *pkt,
				      __u32 *l4_off, __u32 *dgram_len, __u8 *proto,
				      enum lb_reason *reason)
{
	__u32 hdr_len;
	__u32 tot_len;

	if ((void *)(ip + 1) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	if (ip->version != 4 || ip->ihl < 5) {
		*reason = PASS_BAD_IP;
		return -1;
	}
	hdr_len = ip->ihl * 4;
	if ((void *)ip + hdr_len > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	tot_len = ntohs_bounded(ip->tot_len);
	if (tot_len < hdr_len) {
		*reason = PASS_BAD_IP;
		return -1;
	}
	/* Frames may carry Ethernet padding after the datagram, never less than the datagram. */
	if ((void *)ip + tot_len > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		*reason = PASS_FRAGMENT;
		return -1;
	}
	*l4_off = hdr_len;
	*dgram_len = tot_len;
	*proto = ip->protocol;
	__builtin_memcpy(pkt->flow.src, &ip->saddr, sizeof(ip->saddr));
	__builtin_memcpy(pkt->flow.dst, &ip->daddr, sizeof(ip->daddr));
	pkt->flow.family = LB_AF_INET;
	return 0;
}

/* parse_ipv6 checks the IPv6 header at ip6 and walks at most MAX_EXT_HDRS extension headers
 * (hop-by-hop, routing, destination options, atomic fragment); it returns like parse_ipv4. */
static __always_inline int parse_ipv6(void *data_end, struct ipv6hdr *ip6, struct packet *pkt,
				      __u32 *l4_off, __u32 *dgram_len, __u8 *proto,
				      enum lb_reason *reason)
{
	__u32 off = sizeof(*ip6), len;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6 + 1) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	/* A zero payload length announces a jumbogram, which Ethernet cannot carry. */
	if (ip6->version != 6 || ip6->payload_len == 0) {
		*reason = PASS_BAD_IP;
		return -1;
	}
	len = sizeof(*ip6) + ntohs_bounded(ip6->payload_len);
	if ((void *)ip6 + len > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < MAX_EXT_HDRS; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ipv6_opt_hdr *h = (void *)ip6 + off;

			if ((void *)(h + 1) > data_end || off + sizeof(*h) > len) {
				*reason = PASS_TRUNCATED;
				return -1;
			}
			nexthdr = h->nexthdr;
			off += (h->hdrlen + 1) * 8;
			break;
		}
		case IPPROTO_FRAGMENT: {
			struct ipv6_frag_hdr *f = (void *)ip6 + off;

			if ((void *)(f + 1) > data_end || off + sizeof(*f) > len) {
				*reason = PASS_TRUNCATED;
				return -1;
			}
			/* An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946). */
			if (f->frag_off & bpf_htons(IP6_OFFSET | IP6_MF)) {
				*reason = PASS_FRAGMENT;
				return -1;
			}
			nexthdr = f->nexthdr;
			off += sizeof(*f);
			break;
		}
		default:
			goto done;
		}
	}
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_FRAGMENT:
		*reason = PASS_EXT_HDRS;
		return -1;
	}
done:
	if (off > len) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	*l4_off = off;
	*dgram_len = len;
	*proto = nexthdr;
	__builtin_memcpy(pkt->flow.src, &ip6->saddr, sizeof(ip6->saddr));
	__builtin_memcpy(pkt->flow.dst, &ip6->daddr, sizeof(ip6->daddr));
	pkt->flow.family = LB_AF_INET6;
	return 0;
}

/* ICMP type and code of "fragmentation needed" (RFC 792), and ICMPv6 "packet too big" (RFC 4443).
 */
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED  4
#define ICMPV6_PKT_TOOBIG 2
/* Other ICMP errors (RFC 792) and ICMPv6 errors (RFC 4443) quoting the packet they are about. */
#define ICMP_SOURCE_QUENCH  4
#define ICMP_TIME_EXCEEDED  11
#define ICMP_PARAMETERPROB  12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_TIME_EXCEED  3
#define ICMPV6_PARAMPROB    4
/* Bytes of an ICMP or ICMPv6 header before the quoted packet. */
#define ICMP_HDR_LEN 8

/* parse_icmp_err fills pkt->flow from the packet quoted in an ICMP error at icmp, reversed: the
 * quoted packet went from a VIP's service port to a client, its flow is the client's. Only the
 * quoted IP header and the transport ports are read, all within the frame. */
static __always_inline int parse_icmp_err(void *data_end, void *icmp, int v6, struct packet *pkt,
					  enum lb_reason *reason)
{
	__u8 *hdr = icmp;
	__be16 *ports;
	__u8 proto;

	if ((void *)(hdr + ICMP_HDR_LEN) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	if (v6 ? hdr[0] == ICMPV6_PKT_TOOBIG
	       : hdr[0] == ICMP_DEST_UNREACH && hdr[1] == ICMP_FRAG_NEEDED) {
		pkt->icmp_err = ICMP_ERR_TOO_BIG;
	} else if (v6 ? hdr[0] == ICMPV6_DEST_UNREACH || hdr[0] == ICMPV6_TIME_EXCEED ||
				   hdr[0] == ICMPV6_PARAMPROB
		      : hdr[0] == ICMP_DEST_UNREACH || hdr[0] == ICMP_SOURCE_QUENCH ||
				   hdr[0] == ICMP_TIME_EXCEEDED || hdr[0] == ICMP_PARAMETERPROB) {
		pkt->icmp_err = ICMP_ERR_OTHER;
	} else {
		*reason = PASS_NOT_L4;
		return -1;
	}
	if (v6) {
		struct ipv6hdr *in6 = icmp + ICMP_HDR_LEN;

		if ((void *)(in6 + 1) > data_end) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		proto = in6->nexthdr;
		ports = (void *)(in6 + 1);
		__builtin_memcpy(pkt->flow.src, &in6->daddr, sizeof(in6->daddr));
		__builtin_memcpy(pkt->flow.dst, &in6->saddr, sizeof(in6->saddr));
	} else {
		struct iphdr *in = icmp + ICMP_HDR_LEN;

		if ((void *)(in + 1) > data_end) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		if (in->version != 4 || in->ihl < 5) {
			*reason = PASS_BAD_IP;
			return -1;
		}
		proto = in->protocol;
		ports = (void *)in + in->ihl * 4;
		__builtin_memset(pkt->flow.src, 0, sizeof(pkt->flow.src));
		__builtin_memset(pkt->flow.dst, 0, sizeof(pkt->flow.dst));
		__builtin_memcpy(pkt->flow.src, &in->daddr, sizeof(in->daddr));
		__builtin_memcpy(pkt->flow.dst, &in->saddr, sizeof(in->saddr));
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
		*reason = PASS_NOT_L4;
		return -1;
	}
	if ((void *)(ports + 2) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	pkt->flow.sport = ports[1];
	pkt->flow.dport = ports[0];
	pkt->flow.proto = proto;
	return 0;
}

/* parse_packet fills pkt and returns 0 when the frame is an unfragmented IPv4 or IPv6 TCP or UDP
 * packet whose headers all lie within the datagram and the frame; else it sets *reason to why it
 * passes and returns -1. */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt,
					enum lb_reason *reason)
{
	struct ethhdr *eth = data;
	void *ip, *l4;
	__u32 l4_off = 0, dgram_len = 0;
	__u8 proto = 0;

	if ((void *)(eth + 1) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	ip = (void *)(eth + 1);
	/* VLAN tags land in the default case: Sluice serves untagged frames only. */
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		if (parse_ipv4(data_end, ip, pkt, &l4_off, &dgram_len, &proto, reason) < 0)
			return -1;
		break;
	case bpf_htons(ETH_P_IPV6):
		if (parse_ipv6(data_end, ip, pkt, &l4_off, &dgram_len, &proto, reason) < 0)
			return -1;
		break;
	default:
		*reason = PASS_NOT_IP;
		return -1;
	}
	l4 = ip + l4_off;

	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || sizeof(*tcp) > dgram_len - l4_off) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		pkt->flow.sport = tcp->source;
		pkt->flow.dport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || sizeof(*udp) > dgram_len - l4_off) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		pkt->flow.sport = udp->source;
		pkt->flow.dport = udp->dest;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if ((proto == IPPROTO_ICMPV6) != (pkt->flow.family == LB_AF_INET6)) {
			*reason = PASS_NOT_L4;
			return -1;
		}
		if (ICMP_HDR_LEN > dgram_len - l4_off) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		if (parse_icmp_err(data_end, l4, proto == IPPROTO_ICMPV6, pkt, reason) < 0)
			return -1;
		/* Never rewritten, but the verifier cannot tell that from icmp_err. */
		pkt->eth = eth;
		pkt->l3 = ip;
		pkt->l4 = l4;
		pkt->ip_len = dgram_len;
		return 0;
	default:
		*reason = PASS_NOT_L4;
		return -1;
	}

	pkt->eth = eth;
	pkt->l3 = ip;
	pkt->l4 = l4;
	pkt->ip_len = dgram_len;
	pkt->flow.proto = proto;
	return 0;
}

#endif /* SLUICE_PARSE_H */
