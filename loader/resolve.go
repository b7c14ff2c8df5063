package loader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoVIPInterface means no interface has an address or prefix covering the VIP.
var ErrNoVIPInterface = errors.New("no interface carries the VIP")

// ErrNotDirect means a real server is not on a directly connected network, which DR requires.
var ErrNotDirect = errors.New("DR needs the real server on a directly connected network")

// Resolver finds, from the host's network configuration, where the XDP program must run and
// how to reach each real server. It is a seam: tests substitute fixed answers.
type Resolver interface {
	// VIPInterface returns the interface on which traffic for vip arrives.
	VIPInterface(vip netip.Addr) (ifindex int, ifname string, err error)
	// NextHop returns how to send a frame to the real server at addr.
	NextHop(ctx context.Context, addr netip.Addr) (NextHop, error)
}

// NextHop is the egress interface and the MAC addresses of a frame sent to a real server.
type NextHop struct {
	Ifindex int
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr
}

// NetlinkResolver is the Resolver reading the kernel's addresses, routes and neighbours of the
// calling thread's network namespace. The zero value is ready to use.
type NetlinkResolver struct {
	// ARPTimeout bounds an ARP request for a neighbour the kernel does not know; 0 means 1s.
	ARPTimeout time.Duration
}

// VIPInterface returns the non-loopback interface holding vip itself or, failing that, the one
// with the longest IPv4 prefix containing it.
func (r NetlinkResolver) VIPInterface(vip netip.Addr) (int, string, error) {
	if !vip.Is4() {
		return 0, "", fmt.Errorf("find interface for %s: %w", vip, ErrUnsupported)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, "", fmt.Errorf("list addresses: %w", err)
	}
	best, bestBits := -1, -1
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ip = ip.Unmap()
		ones, _ := a.Mask.Size()
		bits := ones
		if ip == vip {
			bits = 33 // an exact address beats any prefix
		} else if !netip.PrefixFrom(ip, ones).Contains(vip) {
			continue
		}
		if bits <= bestBits {
			continue
		}
		lk, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil || lk.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		best, bestBits = a.LinkIndex, bits
	}
	if best < 0 {
		return 0, "", fmt.Errorf("find interface for %s: %w", vip, ErrNoVIPInterface)
	}
	lk, err := netlink.LinkByIndex(best)
	if err != nil {
		return 0, "", fmt.Errorf("find interface for %s: %w", vip, err)
	}
	return best, lk.Attrs().Name, nil
}

// usableNeigh are the neighbour states whose link-layer address may be used.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT

// NextHop routes addr, requires it to be on-link, and takes its MAC from the neighbour table or,
// when the kernel has none, from an ARP request.
func (r NetlinkResolver) NextHop(ctx context.Context, addr netip.Addr) (NextHop, error) {
	if !addr.Is4() {
		return NextHop{}, fmt.Errorf("resolve %s: %w", addr, ErrUnsupported)
	}
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil {
		return NextHop{}, fmt.Errorf("route to %s: %w", addr, err)
	}
	if len(routes) == 0 {
		return NextHop{}, fmt.Errorf("route to %s: no route", addr)
	}
	rt := routes[0]
	if rt.Type == unix.RTN_LOCAL {
		return NextHop{}, fmt.Errorf("route to %s: address is local: %w", addr, ErrNotDirect)
	}
	if rt.Gw != nil {
		return NextHop{}, fmt.Errorf("route to %s goes via gateway %s: %w", addr, rt.Gw, ErrNotDirect)
	}
	lk, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return NextHop{}, fmt.Errorf("route to %s: link %d: %w", addr, rt.LinkIndex, err)
	}
	hop := NextHop{Ifindex: rt.LinkIndex, SrcMAC: lk.Attrs().HardwareAddr}
	if len(hop.SrcMAC) != 6 {
		return NextHop{}, fmt.Errorf("route to %s: %s is not an Ethernet link", addr, lk.Attrs().Name)
	}

	neighs, err := netlink.NeighList(rt.LinkIndex, netlink.FAMILY_V4)
	if err != nil {
		return NextHop{}, fmt.Errorf("list neighbours on %s: %w", lk.Attrs().Name, err)
	}
	for _, n := range neighs {
		if n.State&usableNeigh != 0 && len(n.HardwareAddr) == 6 && n.IP.Equal(addr.AsSlice()) {
			hop.DstMAC = n.HardwareAddr
			return hop, nil
		}
	}

	mac, err := r.arp(ctx, rt.LinkIndex, addr)
	if err != nil {
		return NextHop{}, fmt.Errorf("resolve %s on %s: %w", addr, lk.Attrs().Name, err)
	}
	hop.DstMAC = mac
	return hop, nil
}

// arp asks addr for its MAC, waiting at most ARPTimeout or until ctx's deadline.
func (r NetlinkResolver) arp(ctx context.Context, ifindex int, addr netip.Addr) (net.HardwareAddr, error) {
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("arp: %w", err)
	}
	defer c.Close()
	timeout := r.ARPTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("arp: %w", err)
	}
	mac, err := c.Resolve(addr)
	if err != nil {
		return nil, fmt.Errorf("arp: no answer: %w", err)
	}
	return mac, nil
}
