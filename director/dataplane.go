package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrUnsupported marks parts of a snapshot a Dataplane cannot forward yet. Apply returns it
// (wrapped, possibly joined with others) after applying everything else; the director logs it
// and keeps serving what the data plane does support.
var ErrUnsupported = errors.New("not supported by this data plane")

// Dataplane forwards traffic for the services of a Snapshot. The XDP loader implements it, as will
// the IPVS fallback. Apply receives the whole desired state each time and must change only what
// differs from what it applied last; it may be called again with an unchanged snapshot, which
// it uses to refresh what it derives from the system (such as neighbour MAC addresses).
type Dataplane interface {
	Apply(ctx context.Context, s Snapshot) error
	Close() error
}

// Proto is an IP protocol number.
type Proto uint8

// Protocols a service can carry. SCTP is served by the IPVS data plane only.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Method is a forwarding method.
type Method uint8

// Forwarding methods; the XDP data path implements DR so far.
const (
	MethodDR Method = iota
	MethodTUN
	MethodNAT
)

func (m Method) String() string {
	switch m {
	case MethodDR:
		return "DR"
	case MethodTUN:
		return "TUN"
	case MethodNAT:
		return "NAT"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// ServiceKey identifies a virtual service: an address, port and protocol, or a firewall mark.
// A firewall-mark service (keepalived's `virtual_server fwmark N`) has FWMark set, VIP the
// unspecified address of its family (0.0.0.0 or ::), and Port and Proto zero, as IPVS keys it;
// only the IPVS data plane serves it, since XDP runs before netfilter marks packets.
type ServiceKey struct {
	VIP    netip.Addr
	Port   uint16
	Proto  Proto
	FWMark uint32
}

// FWMarkKey is the key of the firewall-mark service mark of the family of ipv6.
func FWMarkKey(mark uint32, ipv6 bool) ServiceKey {
	if ipv6 {
		return ServiceKey{VIP: netip.IPv6Unspecified(), FWMark: mark}
	}
	return ServiceKey{VIP: netip.IPv4Unspecified(), FWMark: mark}
}

// String is "TCP 192.0.2.1:80", or ipvsadm's "FWM 5" ("FWM 5 IPv6") for a firewall mark.
func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		if k.VIP.Is6() {
			return fmt.Sprintf("FWM %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM %d", k.FWMark)
	}
	return fmt.Sprintf("%s %s", k.Proto, netip.AddrPortFrom(k.VIP, k.Port))
}

// Snapshot is the complete desired forwarding state. Services are sorted by key and backends
// by address and port, so two snapshots of the same state compare equal.
type Snapshot struct {
	Services []Service
	// Timeouts are the flow idle timeouts of every service (global_defs lvs_timeouts).
	Timeouts Timeouts
}

// Timeouts are how long a flow may stay silent before it is forgotten and its next packet is
// scheduled as a new connection (keepalived's lvs_timeouts). Zero means the data plane's
// default, IPVS's: TCP 900 s, TCP after a FIN or RST 120 s, UDP 300 s.
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// Service is one virtual service and all of its configured real servers. A service of port 0
// takes every port of its VIP and protocol that no other service names.
type Service struct {
	Key ServiceKey
	// Scheduler is the keepalived lb_algo name ("rr", "wrr", "mh", ...).
	Scheduler string
	// SchedFlags are the scheduler's flags (sh-port, sh-fallback, mh-port, mh-fallback).
	SchedFlags SchedFlags
	// Persistence is persistence_timeout: new connections of a client seen within it go to
	// the real server its last ones went to. Zero means none.
	Persistence time.Duration
	// PersistencePrefix is persistence_granularity as a prefix length: clients in one prefix
	// share their real server. Zero means the whole address (/32, /128).
	PersistencePrefix int
	Backends          []Backend
}

// SchedFlags are IPVS scheduler flags.
type SchedFlags uint8

// Scheduler flags, as keepalived names them for sh and mh.
const (
	// SchedFallback is sh-fallback / mh-fallback (IP_VS_SVC_F_SCHED1): a client whose hashed
	// real server cannot take new connections goes to another one instead of being dropped.
	SchedFallback SchedFlags = 1 << iota
	// SchedPort is sh-port / mh-port (IP_VS_SVC_F_SCHED2): hash the client port too.
	SchedPort
)

// Backend is one real server of a service.
type Backend struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
	Method Method
	// Tunnel is how a MethodTUN backend is encapsulated: IPIP (the zero value) or GUE.
	Tunnel Tunnel
	// Up is false when health checks have failed: the backend gets no new flows, and flows
	// pinned to it are re-balanced (its server no longer answers).
	Up bool
}

// TunnelType is keepalived's TUN type: how packets are encapsulated to a real server.
type TunnelType uint8

// Tunnel types.
const (
	// TunnelIPIP is IPIP for IPv4 and IP6IP6 for IPv6, keepalived's default.
	TunnelIPIP TunnelType = iota
	// TunnelGUE is Generic UDP Encapsulation to Tunnel.Port (keepalived `type gue port N`).
	TunnelGUE
	// TunnelGRE is GRE (keepalived `type gre`), served by the IPVS data plane only.
	TunnelGRE
)

func (t TunnelType) String() string {
	switch t {
	case TunnelIPIP:
		return "ipip"
	case TunnelGUE:
		return "gue"
	case TunnelGRE:
		return "gre"
	}
	return fmt.Sprintf("tunnel(%d)", uint8(t))
}

// Tunnel is the encapsulation of a MethodTUN backend.
type Tunnel struct {
	Type TunnelType
	// Port is the UDP port a GUE real server decapsulates on.
	Port uint16
	// Csum is keepalived's checksum option: "" (nocsum), "csum" or "remcsum".
	Csum string
}

// Eligible reports whether the backend may receive new flows.
func (b Backend) Eligible() bool { return b.Up && b.Weight > 0 }

// Counters are traffic totals a data plane keeps for a service or a real server, and its live
// connections.
type Counters struct {
	Packets, Bytes, NewFlows uint64
	// ActiveConns and InactConns are ipvsadm's ActiveConn and InActConn: connections open now,
	// established and in any other state (closing, handshaking, every UDP flow).
	ActiveConns, InactConns uint64
}

// TrafficStats are a data plane's counters per service, and per real server of each service.
type TrafficStats struct {
	Services map[ServiceKey]Counters
	Backends map[ServiceKey]map[netip.AddrPort]Counters
	// Verdicts counts every packet the data plane saw by what it did and why, e.g.
	// "pass_not_vip", "drop_no_backend", "tx_dr".
	Verdicts map[string]uint64
}

// StatsReader is implemented by data planes that count traffic (sluice list --stats, metrics).
type StatsReader interface {
	TrafficStats() (TrafficStats, error)
}
