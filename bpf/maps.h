/* BPF maps of the load balancer. The loader writes all but flows and the statistics. */
#ifndef SLUICE_MAPS_H
#define SLUICE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "structs.h"

/* Virtual services; a HASH so that an update swaps the whole value and readers never see half. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} services SEC(".maps");

/* Real servers by backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_value);
} backends SEC(".maps");

/* Template of a selection table (backend ids); BPF_F_INNER_MAP lets each service size its own,
 * BPF_F_MMAPABLE lets the loader fill a new table with one copy instead of a write per entry. */
struct sel_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
};

/* Selection tables by slot; a new table fills a free slot before the service points at it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, SEL_SLOTS);
	__type(key, __u32);
	__array(values, struct sel_table);
} sel_tables SEC(".maps");

/* Connection table pinning confirmed flows to their backend: a flow enters it only when a second
 * packet that is not a bare SYN arrives, so spoofed SYNs and one-packet floods never evict it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_SIZE);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* Unconfirmed flows: pinned by their first packet until confirmed, in a set-associative table
 * indexed by flow_hash() (unconf.h): finding a flow or making room for one reads one set, with
 * no locks and no LRU lists, so a flood costs a cache line or two per packet. A flood churns this
 * table alone; a new flow takes an empty way of its set or the one silent longest, so an entry
 * lives until UNCONF_WAYS newer flows have hashed to its set. BPF_F_MMAPABLE aligns the sets to
 * cache lines (the data area starts on a page). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNCONFIRMED_TABLE_SIZE / UNCONF_WAYS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct unconf_set);
} unconfirmed SEC(".maps");

/* Reverse translations of confirmed NAT flows, promoted with them. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_SIZE);
	__type(key, struct flow_key);
	__type(value, struct nat_value);
} nat_flows SEC(".maps");

/* Reverse translations of unconfirmed NAT flows: a SYN's reply comes before the flow confirms. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UNCONFIRMED_TABLE_SIZE);
	__type(key, struct flow_key);
	__type(value, struct nat_value);
} nat_unconfirmed SEC(".maps");

/* Per-service settings by service id; written before the service entry that uses the id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct svc_conf);
} svc_confs SEC(".maps");

/* Persistence templates (IPVS's): the backend a client of a persistent service was last sent to
 * and when; a new connection of that client reuses it while it is younger than the timeout. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PERSIST_TABLE_SIZE);
	__type(key, struct persist_key);
	__type(value, struct flow_value);
} persist SEC(".maps");

/* Round-robin cursor per service, per CPU so that it needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} rr_pos SEC(".maps");

/* Forwarded traffic per service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct lb_stats);
} svc_stats SEC(".maps");

/* Forwarded traffic per backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_stats);
} be_stats SEC(".maps");

/* Settings of the whole data path: one entry of enum global_flags. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lb_globals SEC(".maps");

/* Packets per enum lb_reason: every verdict is counted here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} reason_stats SEC(".maps");

#endif /* SLUICE_MAPS_H */
