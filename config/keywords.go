package config

import "strings"

// Keywords keepalived 2.2 knows but Sluice does not act on yet, per block. Each earns one
// "parsed, not supported yet" warning instead of the "unknown keyword" one, and all of them are
// candidates for "did you mean". Taken from keepalived.conf(5) and keepalived's parsers.
var (
	topLevelUnsupported = []string{
		"child_wait_time", "garp_group", "instance", "interface_up_down_delays", "linkbeat_interfaces",
		"namespace_with_ipsets", "net_namespace", "net_namespace_ipvs", "SSL", "static_ipaddress",
		"static_routes", "static_rules", "track_process", "use_pid_dir",
		"vrrp_track_process",
	}
	topLevelSupported = []string{"bfd_instance", "global_defs", "virtual_server", "vrrp_instance", "include",
		"track_file", "virtual_server_group", "vrrp_script", "vrrp_sync_group", "vrrp_track_file"}

	globalDefsUnsupported = []string{
		"bfd_cpu_affinity", "bfd_no_swap", "bfd_priority", "bfd_process_name", "bfd_rlimit_rttime",
		"bfd_rt_priority", "checker_cpu_affinity", "checker_log_all_failures", "checker_no_swap",
		"checker_priority", "checker_process_name", "checker_rlimit_rttime", "checker_rt_priority",
		"config_save_dir", "data_use_instance", "dbus_service_name", "default_interface",
		"disable_local_igmp", "dynamic_interfaces", "enable_dbus",
		"enable_snmp_checker", "enable_snmp_keepalived", "enable_snmp_rfc", "enable_snmp_rfcv2",
		"enable_snmp_rfcv3", "enable_snmp_vrrp", "enable_traps", "fifo_write_vrrp_states_on_reload",
		"include_check", "linkbeat_use_polling", "lvs_flush", "lvs_flush_on_stop",
		"lvs_netlink_cmd_rcv_bufs", "lvs_netlink_cmd_rcv_bufs_force", "lvs_netlink_monitor_rcv_bufs",
		"lvs_netlink_monitor_rcv_bufs_force", "log_unknown_vrids", "lvs_sync_daemon", "max_auto_priority", "min_auto_priority_delay",
		"net_namespace", "net_namespace_ipvs", "nftables", "nftables_counters", "nftables_ifindex",
		"nftables_ipvs", "nftables_ipvs_priority", "nftables_ipvs_start_fwmark", "nftables_priority",
		"no_checker_emails", "process_monitor_rcv_bufs",
		"process_monitor_rcv_bufs_force", "process_names", "quorum_max", "random_seed",
		"reload_check_config", "reload_file", "reload_repeat", "reload_time_file", "rs_init_notifies",
		"shutdown_script", "shutdown_script_timeout", "snmp_socket", "startup_script",
		"startup_script_timeout", "terminate_delay",
		"tmp_config_directory", "umask", "vmac_addr_prefix", "vmac_prefix",
		"vrrp_cpu_affinity", "vrrp_down_timer_adverts", "vrrp_garp_extra_if", "vrrp_garp_interval",
		"vrrp_garp_lower_prio_delay", "vrrp_garp_lower_prio_repeat",
		"vrrp_garp_master_refresh", "vrrp_garp_master_refresh_repeat",
		"vrrp_gna_interval", "vrrp_higher_prio_send_advert", "vrrp_ipsets", "vrrp_iptables",
		"vrrp_lower_prio_no_advert", "vrrp_min_garp",
		"vrrp_netlink_cmd_rcv_bufs", "vrrp_netlink_cmd_rcv_bufs_force",
		"vrrp_netlink_monitor_rcv_bufs", "vrrp_netlink_monitor_rcv_bufs_force", "vrrp_no_swap",
		"vrrp_notify_priority_changes",
		"vrrp_priority", "vrrp_process_name", "vrrp_rlimit_rttime", "vrrp_rt_priority",
		"vrrp_rx_bufs_multiplier", "vrrp_rx_bufs_policy", "vrrp_skip_check_adv_addr",
		"vrrp_startup_delay", "vrrp_strict",
	}
	globalDefsSupported = []string{
		"enable_script_security", "lvs_notify_fifo", "lvs_notify_fifo_script", "lvs_timeouts",
		"no_email_faults", "notification_email", "notification_email_from", "notify_fifo",
		"notify_fifo_script", "router_id", "script_user", "smtp_alert", "smtp_alert_checker",
		"smtp_alert_vrrp", "smtp_connect_timeout", "smtp_helo_name", "smtp_server",
		"vrrp_check_unicast_src", "vrrp_mcast_group4", "vrrp_mcast_group6", "vrrp_notify_fifo", "vrrp_notify_fifo_script",
	}

	virtualServerUnsupported = []string{
		"flag-3", "ip_family",
		"ops", "persistence_engine",
		"smtp_alert", "snmp_name",
		"virtualhost", "warmup",
	}
	virtualServerSupported = []string{
		"alpha", "ha_suspend", "hysteresis", "omega", "quorum", "quorum_down", "quorum_up",
		"sorry_server", "sorry_server_inhibit", "sorry_server_lvs_method",
		"connect_timeout", "delay_before_retry", "delay_loop", "flag-1", "flag-2", "inhibit_on_failure",
		"lb_algo", "lb_kind", "lvs_method", "lvs_sched", "mh-fallback", "mh-port",
		"persistence_granularity", "persistence_timeout", "protocol", "real_server", "retry",
		"sh-fallback", "sh-port", "weight",
	}

	// checkers are the health checkers a real_server may hold; all run.
	checkers = []string{
		"BFD_CHECK", "DNS_CHECK", "FILE_CHECK", "HTTP_GET", "MISC_CHECK", "PING_CHECK",
		"SMTP_CHECK", "SSL_GET", "TCP_CHECK", "UDP_CHECK",
	}
	realServerUnsupported = []string{
		"lthreshold", "snmp_name",
		"uthreshold", "virtualhost", "warmup",
	}
	realServerSupported = []string{
		"alpha",
		"connect_timeout", "delay_before_retry", "delay_loop", "inhibit_on_failure", "lb_kind",
		"lvs_method", "notify_down", "notify_up", "retry", "smtp_alert", "weight",
	}

	tcpCheckUnsupported = []string{"bind_if", "bind_port", "fwmark", "log_all_failures", "warmup"}
	tcpCheckSupported   = []string{
		"alpha",
		"bindto", "connect_ip", "connect_port", "connect_timeout", "delay_before_retry",
		"delay_loop", "nb_get_retry", "retry",
	}

	vrrpInstanceUnsupported = []string{
		"accept", "debug", "down_timer_adverts",
		"garp_extra_if", "garp_lower_prio_delay", "garp_lower_prio_repeat", "garp_master_refresh_repeat",
		"gna_interval", "kernel_rx_buf_size", "linkbeat_use_polling",
		"lower_prio_no_advert", "native_ipv6", "no_accept", "notify_deleted",
		"notify_master_rx_lower_pri", "notify_priority_changes", "old_unicast_checksum", "promote_secondaries",
		"skip_check_adv_addr", "strict_mode",
		"track_process", "track_src_ip",
		"use_ipvlan", "use_vmac_addr", "virtual_routes",
		"virtual_rules",
	}
	vrrpInstanceSupported = []string{
		"advert_int", "authentication", "garp_master_delay", "garp_master_refresh", "garp_master_repeat",
		"notify", "notify_backup", "notify_fault", "notify_master", "notify_stop", "smtp_alert",
		"dont_track_primary", "higher_prio_send_advert", "track_bfd", "track_file", "track_interface", "track_script",
		"interface", "mcast_dst_ip", "mcast_src_ip", "nopreempt", "preempt", "preempt_delay", "priority", "state",
		"unicast_peer", "unicast_src_ip", "unicast_ttl", "use_vmac", "version", "virtual_ipaddress", "virtual_router_id",
		"vmac_xmit_base", "check_unicast_src", "unicast_fault_no_peer", "virtual_ipaddress_excluded",
	}
)

// ipvsSchedulers are the IPVS scheduler names keepalived 2.2 accepts for lb_algo / lvs_sched.
var ipvsSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the candidate closest to word when it is close enough to be a likely typo.
// Case is ignored, so tcp_check suggests TCP_CHECK.
func suggest(word string, candidates ...[]string) string {
	lw := strings.ToLower(word)
	if len(lw) > 64 {
		return "" // no keyword is that long; keep the quadratic distance cheap
	}
	best, bestD := "", -1
	for _, list := range candidates {
		for _, c := range list {
			d := editDistance(lw, strings.ToLower(c))
			if bestD < 0 || d < bestD {
				best, bestD = c, d
			}
		}
	}
	limit := 2
	if len(lw) >= 12 {
		limit = 3
	}
	if bestD < 0 || bestD > limit || bestD >= len(lw) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
