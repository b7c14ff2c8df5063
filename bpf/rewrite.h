/* Packet rewrites per forwarding method. */
#ifndef SLUICE_REWRITE_H
#define SLUICE_REWRITE_H

#include <linux/if_ether.h>

#include "structs.h"

/* rewrite_dr readdresses the frame to the real server: in DR the IP header still carries the VIP,
 * which the real server owns on a non-ARPing interface, so only the MAC addresses change. */
static __always_inline void rewrite_dr(struct ethhdr *eth, const struct backend_value *be)
{
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
}

#endif /* SLUICE_REWRITE_H */
