/* Limits, flags and verdict reasons shared by the XDP program and the Go loader. */
#ifndef SLUICE_CONSTS_H
#define SLUICE_CONSTS_H

/* Most virtual services the data path holds; service ids index per-service arrays. */
#define MAX_SERVICES 4096
/* Most real servers over all services; backend ids index per-backend arrays. */
#define MAX_BACKENDS 16384
/* Selection-table slots: two per service so a new table is filled before the old one is freed. */
#define SEL_SLOTS (2 * MAX_SERVICES)
/* Default connection-table size; the loader may override it before loading. */
#define FLOW_TABLE_SIZE 262144
/* Default number of flows the table of unconfirmed flows (seen once, or only as SYNs) holds: a
 * SYN flood churns this table and never the connection table. The loader may override it before
 * loading. The table has UNCONFIRMED_TABLE_SIZE / UNCONF_WAYS sets, a power of two. */
#define UNCONFIRMED_TABLE_SIZE 262144
/* Bit of unconf_set.backend: a FIN or RST was seen (FLOW_F_FIN of a flows entry). */
#define UNCONF_FIN (1U << 31)
/* Size of the persistence table: one template per (service, masked client address). */
#define PERSIST_TABLE_SIZE 65536
/* Most IPv6 extension headers walked before the transport header; more are passed. */
#define MAX_EXT_HDRS 6
/* Seed of the source-address hash; loader.SourceHash must use the same value. */
#define LB_HASH_SEED 0x51c3e5ebU

/* Address family of a service key, flow key or backend (the Linux AF_* values). */
enum lb_family {
	/* IPv4; the address sits in the first 4 bytes of a 16-byte field. */
	LB_AF_INET = 2,
	/* IPv6. */
	LB_AF_INET6 = 10,
};

/* Bits of svc_value.flags. */
enum svc_flags {
	/* Pick new flows with a per-CPU round-robin cursor (rr, wrr); else hash the source (mh). */
	SVC_F_RR = 1 << 0,
};

/* What svc_conf.hash makes a hashing service (SVC_F_RR clear) hash to pick a backend. */
enum svc_hash {
	/* The client address (sh, mh: IPVS's default). */
	SVC_HASH_SRC = 0,
	/* The client address and port (sh-port, mh-port). */
	SVC_HASH_SRC_PORT = 1,
	/* The destination address (dh). */
	SVC_HASH_DST = 2,
};

/* Bits of backend_value.flags. */
enum backend_flags {
	/* Backend is healthy and its next hop resolved: pinned flows may keep using it. */
	BE_F_UP = 1 << 0,
	/* Backend may take new flows (up, weight above 0): persistence templates may send to it. */
	BE_F_NEW = 1 << 1,
};

/* Bits of flow_value.flags. */
enum flow_flags {
	/* A FIN or RST was seen: the flow expires after svc_conf.fin_ns of silence. */
	FLOW_F_FIN = 1 << 0,
};

/* Forwarding method of a backend, as director.Method. */
enum lb_method {
	/* Direct routing: rewrite the MAC addresses only. */
	LB_METHOD_DR = 0,
	/* Tunnelling: encapsulate in IPIP (IPv4) or IP6IP6 (IPv6) to the real server. */
	LB_METHOD_TUN = 1,
	/* Masquerading: rewrite the destination to the real server, and its replies' source back.
	 */
	LB_METHOD_NAT = 2,
};

/* Encapsulation of a TUN backend (backend_value.encap), keepalived's TUN type. */
enum lb_encap {
	/* IPIP (IPv4) or IP6IP6 (IPv6), the kernel's ipip and ip6tnl devices. */
	LB_ENCAP_IPIP = 0,
	/* GUE (draft-ietf-intarea-gue) variant 0 over UDP to backend_value.tun_port, as IPVS sends
	 * it: the kernel's fou device in gue mode decapsulates it. */
	LB_ENCAP_GUE = 1,
};

/* Bits of the single lb_globals entry, written by the loader. */
enum global_flags {
	/* Some backend forwards by NAT: packets of no service may be replies to translate back.
	 * Clear, the reverse-NAT tables are not looked up at all. */
	GLOBAL_F_NAT = 1 << 0,
};

/* Why the program returned its verdict; reason_stats counts packets per reason. */
enum lb_reason {
	/* Neither IPv4 nor IPv6: ARP, VLAN-tagged and other ethertypes pass untouched. */
	PASS_NOT_IP = 0,
	/* IP but neither TCP nor UDP. */
	PASS_NOT_L4,
	/* No service for (destination address, port, protocol). */
	PASS_NOT_VIP,
	/* Ethernet, IP (options, extension headers), TCP or UDP header or the datagram runs past
	 * its bounds. */
	PASS_TRUNCATED,
	/* Malformed IP: version not 4 (6), IHL < 5, total length shorter than the header, IPv6
	 * jumbogram. */
	PASS_BAD_IP,
	/* IP fragment (MF set or offset non-zero): ports are unknown, the kernel handles it. */
	PASS_FRAGMENT,
	/* IPv6 with more than MAX_EXT_HDRS extension headers before the transport header. */
	PASS_EXT_HDRS,
	/* ICMP frag-needed or ICMPv6 packet-too-big about a VIP flow the tables do not hold, or
	 * whose backend is NAT (not translated yet). */
	PASS_ICMP,
	/* TUN, NAT: the kernel has no neighbour entry for the next hop; the rewritten packet goes
	 * to the stack, which forwards it once the neighbour resolves. */
	PASS_NO_NEIGH,
	/* TUN, NAT: the rewritten packet exceeds the route's MTU and is an ICMP error or a NAT
	 * reply; the original goes to the stack. */
	PASS_FRAG_NEEDED,
	/* Service hit but it has no eligible backend. */
	DROP_NO_BACKEND,
	/* Maps disagree (missing slot, table entry or backend): a loader bug or a racing update. */
	DROP_TABLE_MISS,
	/* TUN, NAT: the FIB has no usable route onward, or forwarding is off on ingress. */
	DROP_NO_ROUTE,
	/* TUN: the frame could not be grown for the outer header. */
	DROP_ENCAP,
	/* Forwarded by DR out of the interface it came in on (ICMP errors of DR flows too). */
	TX_DR,
	/* Forwarded by DR out of another interface. */
	REDIRECT_DR,
	/* Forwarded by TUN out of the interface it came in on. */
	TX_TUN,
	/* Forwarded by TUN out of another interface. */
	REDIRECT_TUN,
	/* Forwarded by NAT to the real server out of the interface it came in on. */
	TX_NAT,
	/* Forwarded by NAT to the real server out of another interface. */
	REDIRECT_NAT,
	/* A NAT real server's reply, translated back, out of the interface it came in on. */
	TX_NAT_REPLY,
	/* A NAT real server's reply, translated back, out of another interface. */
	REDIRECT_NAT_REPLY,
	/* TUN, NAT: the rewritten packet exceeds the route's MTU and may not be fragmented (IPv4
	 * with DF, or IPv6): an ICMP frag-needed or ICMPv6 packet-too-big from the VIP with the
	 * MTU left (inside the tunnel) goes back to the client. */
	TX_ICMP_TOO_BIG,
	/* TUN, NAT: the rewritten packet exceeds the route's MTU but is IPv4 without DF: it goes
	 * to the stack rewritten (TUN: with DF clear), still addressed to this host, and the stack
	 * fragments it on its way to the real server. */
	PASS_TO_FRAGMENT,
	/* Number of reasons; sizes reason_stats. */
	REASON_MAX,
};

#endif /* SLUICE_CONSTS_H */
