// Package config parses keepalived.conf (keepalived.conf(5), keepalived 2.2) into a typed Config.
//
// It reads the whole language: includes, @ID conditional lines, $NAME parameters (multi-line,
// nested, predefined ${_PWD} and friends), ~SEQ / ~LST generators, and every block keepalived
// 2.2 knows: global_defs, virtual_server (by address, fwmark or group), virtual_server_group,
// real_server with every checker, vrrp_instance, vrrp_script, vrrp_sync_group, track_file, SSL.
// What Sluice does not act on yet is still typed, and warned about once ("parsed, not supported
// yet"); unknown keywords are warnings with a did-you-mean. Errors and warnings carry
// file:line:col, and Parse reports every error it finds, not just the first.
//
// The contract, checked by a differential test against keepalived itself: every file
// `keepalived -t` accepts, Parse accepts. Defaults and corrections follow keepalived 2.2,
// including its surprises, each with a warning: a virtual_server without `protocol` is UDP;
// nopreempt with state MASTER is cleared. See docs/config.md.
package config

import (
	"fmt"
	"net/netip"
	"time"
)

// Pos is a position in a configuration file.
type Pos struct {
	File string
	Line int // 1-based
	Col  int // 1-based, in bytes
}

// String is file:line:col; a zero line or column (a whole-file problem) is left out.
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem found in a configuration file.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every error found while reading a file; Parse returns it as its error.
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	return fmt.Sprintf("%s (and %d more errors)", l[0].Error(), len(l)-1)
}

// Warning is something accepted but worth the operator's attention (unsupported or unknown keyword).
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return w.Pos.String() + ": " + w.Msg }

// Config is a parsed keepalived.conf.
type Config struct {
	Global         GlobalDefs
	VirtualServers []VirtualServer
	VRRPInstances  []VRRPInstance
	// OtherVirtualServers are `virtual_server fwmark N` and `virtual_server group NAME`
	// services; their Addr is zero. The director serves a group as one service per address
	// and port of its virtual_server_group (Group.Services), and firewall marks on the IPVS
	// data plane only (XDP runs before netfilter marks packets).
	OtherVirtualServers []VirtualServer
	VirtualServerGroups []VirtualServerGroup
	VRRPScripts         []VRRPScript
	VRRPSyncGroups      []VRRPSyncGroup
	TrackFiles          []TrackFile
	// BFDInstances are the bfd_instance blocks, which BFD_CHECK and track_bfd name.
	BFDInstances []BFDInstance
	// SSL is the top-level SSL block SSL_GET checkers use; nil when absent.
	SSL      *SSLConfig
	Warnings []Warning
}

// SSLConfig is the top-level SSL block; empty fields mean keepalived generates the context.
type SSLConfig struct {
	Password    string
	CA          string
	Certificate string
	Key         string
}

// GlobalDefs is the subset of global_defs Sluice reads; other keywords are warned about.
type GlobalDefs struct {
	RouterID              string
	NotificationEmail     []string
	NotificationEmailFrom string
	SMTPServer            string // HOST [PORT] as written
	SMTPConnectTimeout    time.Duration
	SMTPHeloName          string
	SMTPAlert             *bool
	// SMTPAlertVRRP and SMTPAlertChecker are smtp_alert_vrrp / smtp_alert_checker: the
	// defaults for vrrp_instance and real_server alerts; nil when not set.
	SMTPAlertVRRP    *bool
	SMTPAlertChecker *bool
	// NoEmailFaults is no_email_faults: no alert for a FAULT transition.
	NoEmailFaults bool
	// NotifyFIFO, VRRPNotifyFIFO and LVSNotifyFIFO are notify_fifo, vrrp_notify_fifo and
	// lvs_notify_fifo with their *_script; a zero Path means none.
	NotifyFIFO     NotifyFIFO
	VRRPNotifyFIFO NotifyFIFO
	LVSNotifyFIFO  NotifyFIFO
	// VRRPMcastGroup4/6 are the advertisement groups; zero means 224.0.0.18 / ff02::12.
	VRRPMcastGroup4 netip.Addr
	VRRPMcastGroup6 netip.Addr
	// VRRPVersion is the default version for instances; zero means 2.
	VRRPVersion           int
	VRRPStrict            bool
	VRRPGARPMasterDelay   *time.Duration
	VRRPGARPMasterRepeat  *int
	VRRPGARPMasterRefresh *time.Duration
	VRRPGARPInterval      time.Duration
	VRRPGNAInterval       time.Duration
	VRRPSkipCheckAdvAddr  bool
	VRRPStartupDelay      time.Duration
	ScriptUser            string
	ScriptGroup           string
	EnableScriptSecurity  bool
	DynamicInterfaces     bool
	MaxAutoPriority       int
	LVSSyncDaemon         string // INTERFACE [inst] VRRP_INSTANCE [id N] ... as written
	// LVSTimeouts is lvs_timeouts: flow idle timeouts; zero fields keep the default.
	LVSTimeouts LVSTimeouts
	// VRRPCheckUnicastSrc is vrrp_check_unicast_src: check_unicast_src for every instance.
	VRRPCheckUnicastSrc bool
}

// LVSTimeouts are keepalived's lvs_timeouts: how long a connection may stay idle (TCP), idle
// after a FIN (TCPFin) and how long a UDP flow lives without packets. Zero means the default.
type LVSTimeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// ScriptUser is the optional `username [groupname]` after a notify script; an empty User
// means global_defs script_user.
type ScriptUser struct {
	User  string
	Group string
}

// NotifyFIFO is a notify_fifo (or vrrp_/lvs_notify_fifo) line and its *_fifo_script.
type NotifyFIFO struct {
	Path string
	// User and Group own the FIFO when it is created; empty: script_user.
	User, Group string
	// Script reads the FIFO, started with its path as the last argument; empty: none.
	Script     string
	ScriptUser ScriptUser
}

// Protocol is a transport protocol of a virtual server.
type Protocol string

// Protocols keepalived accepts for virtual_server. SCTP is served by the IPVS data plane only.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Tunnel is lb_kind TUN's `type ipip|gue port N|gre [nocsum|csum|remcsum]`; zero is ipip.
type Tunnel struct {
	Type TunnelType
	Port uint16 // gue: the UDP port the real server decapsulates on
	Csum string // "", "nocsum", "csum" or "remcsum" (gue only)
}

// TunnelType is a TUN encapsulation.
type TunnelType string

// Tunnel types; the empty type is ipip.
const (
	TunnelIPIP TunnelType = "ipip"
	TunnelGUE  TunnelType = "gue"
	TunnelGRE  TunnelType = "gre"
)

// LBKind is a forwarding method (lb_kind / lvs_method).
type LBKind string

// Forwarding methods.
const (
	DR  LBKind = "DR"
	NAT LBKind = "NAT"
	TUN LBKind = "TUN"
)

// VirtualServer is one `virtual_server IP PORT { ... }` block (or, in
// Config.OtherVirtualServers, `virtual_server fwmark N` / `virtual_server group NAME`).
type VirtualServer struct {
	Pos          Pos
	Addr         netip.Addr
	Port         uint16
	FWMark       uint32        // virtual_server fwmark N; zero otherwise
	FWMarkFamily string        // inet or inet6 after the mark; empty when not given
	Group        string        // virtual_server group NAME; empty otherwise
	Protocol     Protocol      // default UDP, as keepalived (with a warning: most configs mean TCP)
	LBAlgo       string        // lb_algo / lvs_sched; default "wlc" as in keepalived
	LBKind       LBKind        // lb_kind / lvs_method; default NAT as in keepalived
	Tunnel       Tunnel        // lb_kind TUN's type and options
	DelayLoop    time.Duration // default 60s
	// Persistence is persistence_timeout; zero means none.
	Persistence time.Duration
	RealServers []RealServer

	// Quorum is the minimum total weight of live servers for the service to be up; default 1.
	Quorum     int
	Hysteresis int
	QuorumUp   string // script run when quorum is gained: the command line, quotes removed
	QuorumDown string
	// QuorumUpUser and QuorumDownUser are the users given after the scripts.
	QuorumUpUser, QuorumDownUser ScriptUser
	// SorryServer replaces every real server while quorum is lost; nil when not set.
	SorryServer *SorryServer
	HASuspend   bool
	// PersistenceGranularity is the persistence netmask as a prefix length; zero: a host (/32, /128).
	PersistenceGranularity int
	// SchedPort is sh-port / mh-port (or flag-2): sh and mh hash the client port too.
	SchedPort bool
	// SchedFallback is sh-fallback / mh-fallback (or flag-1): a client whose hashed real
	// server cannot take it goes to another instead of being refused.
	SchedFallback bool
	Alpha         bool // every real server starts down
	Omega         bool // run quorum_down / notify_down on shutdown
	Virtualhost   string
	SMTPAlert     *bool
}

// VirtualServerGroup is a virtual_server_group block.
type VirtualServerGroup struct {
	Pos     Pos
	Name    string
	Entries []VSGroupEntry
}

// MaxGroupAddresses is how many addresses a virtual_server_group may expand to in all: the
// XDP data plane holds 1024 services, and a range beyond that is almost always a typo.
const MaxGroupAddresses = 1024

// VSGroupEntry is one line of a virtual_server_group: an address range and port, or a fwmark.
type VSGroupEntry struct {
	First  netip.Addr // first address of the range; zero for a fwmark entry
	Last   netip.Addr // last address (== First for a single address)
	Port   uint16
	FWMark uint32
	Family string // inet or inet6 after a fwmark; empty when not given
}

// RealServer is one `real_server IP PORT { ... }` block.
type RealServer struct {
	Pos    Pos
	Addr   netip.Addr
	Port   uint16
	Weight int    // default 1
	LBKind LBKind // per-real-server override; empty means the virtual server's
	Tunnel Tunnel // with LBKind TUN: its type and options
	// InhibitOnFailure sets weight 0 instead of removing the server when its checks fail.
	InhibitOnFailure bool
	// DelayLoop overrides the virtual server's delay_loop when non-zero.
	DelayLoop time.Duration
	TCPChecks []TCPCheck
	// Checkers is every checker block in file order, of every kind (TCP_CHECK included), with
	// inherited settings resolved. The director runs the kinds it implements.
	Checkers   []Checker
	NotifyUp   string // script run when the server comes up: the command line, quotes removed
	NotifyDown string
	// NotifyUpUser and NotifyDownUser are the users given after the scripts.
	NotifyUpUser, NotifyDownUser ScriptUser
	// SMTPAlert is the real server's smtp_alert; nil when not set.
	SMTPAlert   *bool
	UThreshold  int // maximum connections; zero: none
	LThreshold  int
	Alpha       bool   // start down until checks pass (real_server alpha, else virtual_server's)
	Virtualhost string // for HTTP_GET / SSL_GET: the real server's, else the virtual server's
	// UnsupportedCheckers names each checker block Sluice does not run yet, once per block, so
	// the director can tell that the server's health is not fully known; every checker runs
	// now, so it is empty. Their settings are in Checkers.
	UnsupportedCheckers []string
}

// TCPCheck is a TCP_CHECK block: a check passes when a TCP connection is established.
type TCPCheck struct {
	Pos            Pos
	ConnectIP      netip.Addr    // zero: the real server's address
	ConnectPort    uint16        // zero: the real server's port
	BindTo         netip.Addr    // zero: chosen by the kernel
	ConnectTimeout time.Duration // default 5s
	Retry          int           // retry / nb_get_retry; default 1
	// DelayBeforeRetry is delay_before_retry; default 1s.
	DelayBeforeRetry time.Duration
	// DelayLoop overrides the real server's interval when non-zero.
	DelayLoop time.Duration
}

// VRRPInstance is the part of a vrrp_instance the skeleton uses: which VIPs VRRP owns.
type VRRPInstance struct {
	Pos              Pos
	Name             string
	Interface        string
	VirtualRouterID  int
	Priority         int
	State            string
	VirtualAddresses []netip.Prefix

	// VIPs is virtual_ipaddress in full (same addresses as VirtualAddresses, with options).
	VIPs         []VirtualIP
	ExcludedVIPs []VirtualIP // virtual_ipaddress_excluded
	Version      int         // 2 or 3: vrrp_instance version, else global vrrp_version, else 2
	AdvertInt    time.Duration
	NoPreempt    bool // already cleared, with a warning, where keepalived clears it
	PreemptDelay time.Duration
	Auth         *VRRPAuth // nil: none (always nil for version 3)
	UnicastSrcIP netip.Addr
	UnicastPeers []UnicastPeer
	UnicastTTL   int
	McastSrcIP   netip.Addr
	McastDstIP   netip.Addr // mcast_dst_ip: the instance's advert group; unset: global_defs'

	// CheckUnicastSrc is check_unicast_src: drop unicast adverts from a source that is not a
	// unicast_peer (global_defs vrrp_check_unicast_src turns it on for every instance).
	CheckUnicastSrc bool
	// UnicastFaultNoPeer is unicast_fault_no_peer: with no unicast_peer the instance is in
	// FAULT instead of multicasting.
	UnicastFaultNoPeer bool

	TrackInterfaces []TrackInterface
	TrackScripts    []TrackRef
	TrackFiles      []TrackRef
	TrackProcesses  []TrackRef
	TrackBFDs       []TrackRef

	GARPMasterDelay         time.Duration // default 5s, or global vrrp_garp_master_delay
	GARPMasterRepeat        int           // default 5, or global vrrp_garp_master_repeat
	GARPMasterRefresh       time.Duration // zero: no refresh
	GARPMasterRefreshRepeat int

	Notify           Notify
	UseVMAC          bool
	VMACName         string // empty: keepalived's vrrp.VRID
	VMACXmitBase     bool
	DontTrackPrimary bool
	Accept           *bool // nil: keepalived's default (accept unless strict)
	StrictMode       bool
	// HigherPrioSendAdvert is higher_prio_send_advert: a master yielding to a higher priority
	// sends one advert first.
	HigherPrioSendAdvert bool
	// SMTPAlert is smtp_alert; false also when not set, so global_defs smtp_alert_vrrp and
	// smtp_alert decide.
	SMTPAlert bool
}
