/* Map keys and values shared with Go through bpf2go -type; layouts have no implicit padding. */
#ifndef SLUICE_STRUCTS_H
#define SLUICE_STRUCTS_H

#include <linux/types.h>

/* Key of services: a virtual service as (VIP, port, protocol). */
struct svc_key {
	/* VIP, network order; IPv4 uses the first 4 bytes, the rest is zero. */
	__u8 addr[16];
	/* Destination port, network order. */
	__be16 port;
	/* IPPROTO_TCP or IPPROTO_UDP. */
	__u8 proto;
	/* enum lb_family. */
	__u8 family;
};

/* Value of services: where the service's selection table lives. Replaced as one hash update. */
struct svc_value {
	/* Service id: index into rr_pos and svc_stats. */
	__u32 id;
	/* Slot in sel_tables holding the selection table. */
	__u32 sel_slot;
	/* Entries in that table; 0 means no eligible backend. */
	__u32 sel_size;
	/* enum svc_flags. */
	__u32 flags;
};

/* Value of backends: a real server and how to reach it. */
struct backend_value {
	/* Real server address, network order; IPv4 uses the first 4 bytes. */
	__u8 addr[16];
	/* enum lb_family. */
	__u8 family;
	/* enum backend_flags. */
	__u8 flags;
	/* enum lb_method. */
	__u8 method;
	/* TUN: enum lb_encap. */
	__u8 encap;
	/* DR: egress interface towards the real server. */
	__u32 ifindex;
	/* DR: real server's MAC (TUN takes next hops from the FIB). */
	__u8 dmac[6];
	/* DR: MAC of the egress interface. */
	__u8 smac[6];
	/* Id of the service owning this backend; a flow pinned to a recycled id is re-selected. */
	__u32 svc_id;
	/* TUN: the director's address toward the real server, source of the outer header. */
	__u8 tun_src[16];
	/* NAT: the real server's port, network order. */
	__be16 port;
	/* TUN with GUE: the UDP port the real server decapsulates on, network order. */
	__be16 tun_port;
};

/* Value of the reverse NAT tables, keyed by a reply's 5-tuple (real server to client): the
 * virtual service its source is translated back to. */
struct nat_value {
	/* VIP, network order. */
	__u8 vip[16];
	/* Service port, network order. */
	__be16 vport;
	/* Unused, zero. */
	__u8 pad[2];
	/* Backend id the flow is pinned to. */
	__u32 backend;
};

/* Key of flows: the connection 5-tuple. */
struct flow_key {
	/* Client address, network order. */
	__u8 src[16];
	/* VIP, network order. */
	__u8 dst[16];
	/* Client port, network order. */
	__be16 sport;
	/* Service port, network order. */
	__be16 dport;
	/* IPPROTO_TCP or IPPROTO_UDP. */
	__u8 proto;
	/* enum lb_family. */
	__u8 family;
	/* Unused, zero. */
	__u8 pad[2];
};

/* Value of flows: the backend a connection is pinned to. Also the value of persist: the backend a
 * persistent client was last sent to. */
struct flow_value {
	/* Backend id. */
	__u32 backend;
	/* enum flow_flags. */
	__u32 flags;
	/* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE) of the last packet. */
	__u64 last_seen_ns;
};

/* Ways per set of the unconfirmed table. */
#define UNCONF_WAYS 4

/* One set of the unconfirmed table: the flows whose hash selects the set, in UNCONF_WAYS ways.
 * 256 bytes, four cache lines; a lookup reads the first (check, backend, stamps) and compares a
 * key only where the check word matches. Other CPUs may write a way while it is read: a way
 * counts only while its check word agrees with its key's hash and its backend word, so a torn
 * mix of two flows is not taken for either. */
struct unconf_set {
	/* unconf_check() of the way's flow and backend word; 0: empty. */
	__u32 check[UNCONF_WAYS];
	/* Backend id, ORed with UNCONF_FIN once a FIN or RST was seen. */
	__u32 backend[UNCONF_WAYS];
	/* bpf_ktime_get_coarse_ns of the flow's last packet. */
	__u64 last_seen_ns[UNCONF_WAYS];
	/* The flows' 5-tuples. */
	struct flow_key key[UNCONF_WAYS];
	/* Unused, zero: rounds the set up to 256 bytes. */
	__u8 pad[32];
};

/* Value of svc_conf: a service's settings beyond its selection table, by service id. */
struct svc_conf {
	/* persistence_timeout in nanoseconds; 0: no persistence. */
	__u64 persist_ns;
	/* A flow silent longer than this is forgotten and its next packet scheduled afresh
	 * (lvs_timeouts tcp or udp), in nanoseconds; 0: never. */
	__u64 idle_ns;
	/* TCP: the same after a FIN or RST (lvs_timeouts tcpfin); 0: idle_ns. */
	__u64 fin_ns;
	/* persistence_granularity as a mask ANDed with the client address, network order. */
	__u8 persist_mask[16];
	/* enum svc_hash. */
	__u8 hash;
	/* Unused, zero. */
	__u8 pad[7];
};

/* Key of persist: a persistent service's client, its address masked by the granularity. */
struct persist_key {
	/* Client address AND svc_conf.persist_mask, network order. */
	__u8 src[16];
	/* Service id: each service (the port-0 one too) keeps its own templates. */
	__u32 svc_id;
};

/* Value of svc_stats and be_stats: traffic forwarded, per CPU. */
struct lb_stats {
	/* Packets forwarded. */
	__u64 packets;
	/* Bytes forwarded, Ethernet header included. */
	__u64 bytes;
	/* Flows created (new connections and re-selected ones). */
	__u64 new_flows;
};

#endif /* SLUICE_STRUCTS_H */
