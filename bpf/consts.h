/* Limits, flags and verdict reasons shared by the XDP program and the Go loader. */
#ifndef SLUICE_CONSTS_H
#define SLUICE_CONSTS_H

/* Most virtual services the data path holds; service ids index per-service arrays. */
#define MAX_SERVICES 1024
/* Most real servers over all services; backend ids index per-backend arrays. */
#define MAX_BACKENDS 4096
/* Selection-table slots: two per service so a new table is filled before the old one is freed. */
#define SEL_SLOTS (2 * MAX_SERVICES)
/* Default connection-table size; the loader may override it before loading. */
#define FLOW_TABLE_SIZE 262144
/* Seed of the source-address hash; loader.SourceHash must use the same value. */
#define LB_HASH_SEED 0x51c3e5ebU

/* Address family of a service key, flow key or backend (the Linux AF_* values). */
enum lb_family {
	/* IPv4; the address sits in the first 4 bytes of a 16-byte field. */
	LB_AF_INET = 2,
	/* IPv6; not forwarded yet. */
	LB_AF_INET6 = 10,
};

/* Bits of svc_value.flags. */
enum svc_flags {
	/* Pick new flows with a per-CPU round-robin cursor (rr, wrr); else hash the source (mh). */
	SVC_F_RR = 1 << 0,
};

/* Bits of backend_value.flags. */
enum backend_flags {
	/* Backend is healthy and its next hop resolved: pinned flows may keep using it. */
	BE_F_UP = 1 << 0,
};

/* Forwarding method of a backend, as director.Method. */
enum lb_method {
	/* Direct routing: rewrite the MAC addresses only. */
	LB_METHOD_DR = 0,
};

/* Why the program returned its verdict; reason_stats counts packets per reason. */
enum lb_reason {
	/* Not IPv4: ARP, IPv6, VLAN-tagged and other ethertypes pass untouched. */
	PASS_NOT_IPV4 = 0,
	/* IPv4 but neither TCP nor UDP. */
	PASS_NOT_L4,
	/* No service for (destination address, port, protocol). */
	PASS_NOT_VIP,
	/* Ethernet, IPv4 (with options), TCP or UDP header or the datagram runs past its bounds. */
	PASS_TRUNCATED,
	/* Malformed IPv4: version is not 4, IHL < 5, or total length shorter than the header. */
	PASS_BAD_IP,
	/* IPv4 fragment (MF set or offset non-zero): ports are unknown, the kernel handles it. */
	PASS_FRAGMENT,
	/* Service hit but it has no eligible backend. */
	DROP_NO_BACKEND,
	/* Maps disagree (missing slot, table entry or backend): a loader bug or a racing update. */
	DROP_TABLE_MISS,
	/* Forwarded by DR out of the interface it came in on. */
	TX_DR,
	/* Forwarded by DR out of another interface. */
	REDIRECT_DR,
	/* Number of reasons; sizes reason_stats. */
	REASON_MAX,
};

#endif /* SLUICE_CONSTS_H */
