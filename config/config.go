// Package config parses keepalived.conf (keepalived.conf(5), keepalived 2.2) into a typed Config.
//
// The walking skeleton understands global_defs, virtual_server, real_server and TCP_CHECK, and
// reads vrrp_instance only far enough to know which VIPs VRRP owns. Every other keyword is kept
// out of the typed result with one warning, never silently dropped; where ignoring it would
// change what is served (virtual_server fwmark or group, protocol SCTP, $NAME substitution) it
// is an error instead. Errors and warnings carry file:line:col, and Parse reports every error
// it finds, not just the first.
//
// Defaults and limits follow keepalived 2.2 (what `keepalived -t` accepts), including its
// surprises, each with a warning: a virtual_server without `protocol` is UDP.
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
	Warnings       []Warning
}

// GlobalDefs is the subset of global_defs Sluice uses.
type GlobalDefs struct {
	RouterID string
}

// Protocol is a transport protocol of a virtual server.
type Protocol string

// Protocols keepalived accepts for virtual_server.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// LBKind is a forwarding method (lb_kind / lvs_method).
type LBKind string

// Forwarding methods.
const (
	DR  LBKind = "DR"
	NAT LBKind = "NAT"
	TUN LBKind = "TUN"
)

// VirtualServer is one `virtual_server IP PORT { ... }` block.
type VirtualServer struct {
	Pos       Pos
	Addr      netip.Addr
	Port      uint16
	Protocol  Protocol      // default UDP, as keepalived (with a warning: most configs mean TCP)
	LBAlgo    string        // lb_algo / lvs_sched; default "wlc" as in keepalived
	LBKind    LBKind        // lb_kind / lvs_method; default NAT as in keepalived
	DelayLoop time.Duration // default 60s
	// Persistence is persistence_timeout; zero means none.
	Persistence time.Duration
	RealServers []RealServer
}

// RealServer is one `real_server IP PORT { ... }` block.
type RealServer struct {
	Pos    Pos
	Addr   netip.Addr
	Port   uint16
	Weight int    // default 1
	LBKind LBKind // per-real-server override; empty means the virtual server's
	// InhibitOnFailure sets weight 0 instead of removing the server when its checks fail.
	InhibitOnFailure bool
	// DelayLoop overrides the virtual server's delay_loop when non-zero.
	DelayLoop time.Duration
	TCPChecks []TCPCheck
	// UnsupportedCheckers names each checker block Sluice does not run yet (HTTP_GET,
	// MISC_CHECK, ...), once per block, so the director can tell that the server's health is
	// not fully known rather than trusting TCPChecks alone.
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
}
