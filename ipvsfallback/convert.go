package ipvsfallback

import (
	"fmt"
	"net"
	"net/netip"

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
	if svc.Key.Proto != director.TCP && svc.Key.Proto != director.UDP {
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
	s := &service{sched: sched, dests: make(map[destKey]dest, len(svc.Backends))}
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

func validScheduler(name string) bool {
	for _, s := range Schedulers {
		if s == name {
			return true
		}
	}
	return false
}

// ipvsService is the netlink form of a service key. IPVS checks the netmask of IPv6 services
// even without persistence, so it gets the host mask of its family.
func ipvsService(k director.ServiceKey, sched string) *ipvs.Service {
	vip := k.VIP.Unmap()
	s := &ipvs.Service{
		Address:   net.IP(vip.AsSlice()),
		Protocol:  uint16(k.Proto),
		Port:      k.Port,
		SchedName: sched,
	}
	if vip.Is4() {
		s.AddressFamily, s.Netmask = unix.AF_INET, 0xffffffff
	} else {
		s.AddressFamily, s.Netmask = unix.AF_INET6, 128
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
// (firewall marks, other protocols).
func serviceKey(s *ipvs.Service) (director.ServiceKey, bool) {
	if s.FWMark != 0 || (s.Protocol != uint16(director.TCP) && s.Protocol != uint16(director.UDP)) {
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
