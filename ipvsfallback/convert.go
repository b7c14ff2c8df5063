package ipvsfallback

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
)

// DefaultScheduler is the scheduler of a service whose lb_algo is empty: keepalived's default.
const DefaultScheduler = "wlc"

// Schedulers are the IPVS schedulers (kernel modules ip_vs_NAME) a service may name; keepalived's
// lb_algo values are these same names.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// desired validates a snapshot service and returns what IPVS should hold for it.
func desired(svc director.Service) (*service, error) {
	switch {
	case svc.Key.FWMark != 0:
		// A firewall-mark service: IPVS keys it by mark and family only.
		if svc.Key.Port != 0 || svc.Key.Proto != 0 {
			return nil, fmt.Errorf("firewall-mark service with a port or protocol")
		}
	case !servedProto(svc.Key.Proto):
		return nil, fmt.Errorf("protocol %s: %w", svc.Key.Proto, ErrUnsupported)
	}
	if !svc.Key.VIP.IsValid() {
		return nil, fmt.Errorf("invalid virtual address")
	}
	sched := svc.Scheduler
	if sched == "" {
		sched = DefaultScheduler
	}
	if !validScheduler(sched) {
		return nil, fmt.Errorf("unknown scheduler %q (IPVS has %v)", sched, Schedulers)
	}
	s := &service{sched: sched, persist: persistenceFor(svc), dests: make(map[destKey]dest, len(svc.Backends))}
	for _, b := range svc.Backends {
		k := destKey{b.Addr.Unmap(), b.Port}
		if !k.addr.IsValid() {
			return nil, fmt.Errorf("real server with invalid address")
		}
		if b.Weight < 0 {
			return nil, fmt.Errorf("real server %s: negative weight %d", k, b.Weight)
		}
		if _, err := fwdFlags(b.Method); err != nil {
			return nil, fmt.Errorf("real server %s: %w", k, err)
		}
		if b.Method == director.MethodTUN && b.Tunnel.Type != director.TunnelIPIP {
			// moby/ipvs has no IPVS_DEST_ATTR_TUN_TYPE: the kernel would tunnel with ipip.
			return nil, fmt.Errorf("real server %s: tunnel type %s: %w", k, b.Tunnel.Type, ErrUnsupported)
		}
		if _, dup := s.dests[k]; dup {
			return nil, fmt.Errorf("real server %s listed twice", k)
		}
		if !b.Up {
			continue // keepalived removes a failed server unless inhibit_on_failure gave it weight 0
		}
		s.dests[k] = dest{weight: b.Weight, method: b.Method}
	}
	return s, nil
}

// servedProto reports whether IPVS services of protocol p are Sluice's: TCP, UDP and SCTP.
func servedProto(p director.Proto) bool {
	return p == director.TCP || p == director.UDP || p == director.SCTP
}

func validScheduler(name string) bool {
	for _, s := range Schedulers {
		if s == name {
			return true
		}
	}
	return false
}

// ipvsService is the netlink form of a service key. IPVS checks the netmask of IPv6 services
// even without persistence, so it gets the host mask of its family. A firewall-mark service is
// its mark and family (ipvsadm -f MARK [-6]); netlink then carries no address, port or protocol.
func ipvsService(k director.ServiceKey, sched string) *ipvs.Service {
	vip := k.VIP.Unmap()
	s := &ipvs.Service{
		Address:   net.IP(vip.AsSlice()),
		Protocol:  uint16(k.Proto),
		Port:      k.Port,
		FWMark:    k.FWMark,
		SchedName: sched,
	}
	if vip.Is4() {
		s.AddressFamily, s.Netmask = unix.AF_INET, 0xffffffff
	} else {
		s.AddressFamily, s.Netmask = unix.AF_INET6, 128
	}
	return s
}

// IPVS service flags (IP_VS_SVC_F_*) Sluice sets; the kernel adds others (HASHED) of its own.
const (
	svcFlagPersistent = 0x0001
	svcFlagSched1     = 0x0008 // sh-fallback, mh-fallback
	svcFlagSched2     = 0x0010 // sh-port, mh-port
	svcFlagsOwned     = svcFlagPersistent | svcFlagSched1 | svcFlagSched2
)

// persistenceFor is what IPVS should hold for svc's persistence_timeout, persistence_granularity
// and scheduler flags. The netmask matters only with persistence; it is zero without.
func persistenceFor(svc director.Service) persistence {
	var p persistence
	v4 := svc.Key.VIP.Unmap().Is4()
	if svc.SchedFlags&director.SchedFallback != 0 {
		p.flags |= svcFlagSched1
	}
	if svc.SchedFlags&director.SchedPort != 0 {
		p.flags |= svcFlagSched2
	}
	if svc.Persistence <= 0 {
		return p
	}
	bits := 128
	if v4 {
		bits = 32
	}
	p.flags |= svcFlagPersistent
	p.timeout = uint32(max(svc.Persistence.Round(time.Second)/time.Second, 1))
	if svc.PersistencePrefix > 0 && svc.PersistencePrefix < bits {
		bits = svc.PersistencePrefix
	}
	if v4 {
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-bits))
		p.netmask = binary.NativeEndian.Uint32(m[:])
	} else {
		p.netmask = uint32(bits)
	}
	return p
}

// persistenceOf is the persistence a kernel service holds.
func persistenceOf(s *ipvs.Service) persistence {
	p := persistence{flags: s.Flags & svcFlagsOwned}
	if p.flags&svcFlagPersistent != 0 {
		p.timeout, p.netmask = s.Timeout, s.Netmask
	}
	return p
}

// ipvsServiceOf is the netlink form of service k as want describes it.
func ipvsServiceOf(k director.ServiceKey, want *service) *ipvs.Service {
	s := ipvsService(k, want.sched)
	s.Flags, s.Timeout = want.persist.flags, want.persist.timeout
	if want.persist.flags&svcFlagPersistent != 0 {
		s.Netmask = want.persist.netmask
	}
	return s
}

// ipvsDest is the netlink form of a real server.
func ipvsDest(k destKey, d dest) *ipvs.Destination {
	flags, _ := fwdFlags(d.method) // validated by desired
	af := uint16(unix.AF_INET)
	if k.addr.Is6() {
		af = unix.AF_INET6
	}
	return &ipvs.Destination{
		Address:         net.IP(k.addr.AsSlice()),
		Port:            k.port,
		Weight:          d.weight,
		ConnectionFlags: flags,
		AddressFamily:   af,
	}
}

func fwdFlags(m director.Method) (uint32, error) {
	switch m {
	case director.MethodDR:
		return ipvs.ConnFwdDirectRoute, nil
	case director.MethodTUN:
		return ipvs.ConnFwdTunnel, nil
	case director.MethodNAT:
		return ipvs.ConnFwdMasq, nil
	}
	return 0, fmt.Errorf("forwarding method %s: %w", m, ErrUnsupported)
}

// serviceKey is the key of a kernel service; ok is false for services Sluice does not program
// (other protocols).
func serviceKey(s *ipvs.Service) (director.ServiceKey, bool) {
	if s.FWMark != 0 {
		switch s.AddressFamily {
		case unix.AF_INET, unix.AF_INET6:
			return director.FWMarkKey(s.FWMark, s.AddressFamily == unix.AF_INET6), true
		}
		return director.ServiceKey{}, false
	}
	if s.Protocol > 255 || !servedProto(director.Proto(s.Protocol)) {
		return director.ServiceKey{}, false
	}
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return director.ServiceKey{}, false
	}
	return director.ServiceKey{VIP: a.Unmap(), Port: s.Port, Proto: director.Proto(s.Protocol)}, true
}

// destOf is the state of a kernel real server; ok is false when its address or forwarding
// method is one Sluice does not write.
func destOf(d *ipvs.Destination) (destKey, dest, bool) {
	a, ok := netip.AddrFromSlice(d.Address)
	if !ok {
		return destKey{}, dest{}, false
	}
	var m director.Method
	switch d.ConnectionFlags & ipvs.ConnFwdMask {
	case ipvs.ConnFwdDirectRoute:
		m = director.MethodDR
	case ipvs.ConnFwdTunnel:
		m = director.MethodTUN
	case ipvs.ConnFwdMasq:
		m = director.MethodNAT
	default:
		// Local-node or bypass: not a method Sluice writes; an update will replace it.
		m = director.Method(255)
	}
	return destKey{a.Unmap(), d.Port}, dest{weight: d.Weight, method: m}, true
}
