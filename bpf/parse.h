/* Packet parsing: Ethernet, IPv4 (with options), TCP/UDP ports; every read bounds-checked. */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"

/* IPv4 "more fragments" flag, in host order. */
#define IP_MF 0x2000
/* IPv4 fragment offset mask, in host order. */
#define IP_OFFSET 0x1fff

/* What parse_packet learnt about a frame the load balancer may forward. */
struct packet {
	/* Ethernet header, for the rewrite. */
	struct ethhdr *eth;
	/* 5-tuple, also the flows key. */
	struct flow_key flow;
};

/* parse_packet fills pkt and returns 0 when the frame is an unfragmented IPv4 TCP or UDP packet
 * whose headers all lie within the datagram and the frame; else it sets *reason to why it passes
 * and returns -1. */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt,
					enum lb_reason *reason)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	void *l4;
	__u32 hdr_len;
	__u16 tot_len;

	if ((void *)(eth + 1) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	/* VLAN tags land here too: the walking skeleton serves untagged IPv4 only. */
	if (eth->h_proto != bpf_htons(ETH_P_IP)) {
		*reason = PASS_NOT_IPV4;
		return -1;
	}

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	if (ip->version != 4 || ip->ihl < 5) {
		*reason = PASS_BAD_IP;
		return -1;
	}
	hdr_len = ip->ihl * 4;
	l4 = (void *)ip + hdr_len;
	if (l4 > data_end) {
		*reason = PASS_TRUNCATED;
		return -1;
	}
	tot_len = bpf_ntohs(ip->tot_len);
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

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || sizeof(*tcp) > tot_len - hdr_len) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		pkt->flow.sport = tcp->source;
		pkt->flow.dport = tcp->dest;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || sizeof(*udp) > tot_len - hdr_len) {
			*reason = PASS_TRUNCATED;
			return -1;
		}
		pkt->flow.sport = udp->source;
		pkt->flow.dport = udp->dest;
		break;
	}
	default:
		*reason = PASS_NOT_L4;
		return -1;
	}

	pkt->eth = eth;
	__builtin_memcpy(pkt->flow.src, &ip->saddr, sizeof(ip->saddr));
	__builtin_memcpy(pkt->flow.dst, &ip->daddr, sizeof(ip->daddr));
	pkt->flow.proto = ip->protocol;
	pkt->flow.family = LB_AF_INET;
	return 0;
}

#endif /* SLUICE_PARSE_H */
