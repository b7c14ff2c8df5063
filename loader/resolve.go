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

// RouteResolver is implemented by Resolvers that can serve TUN and NAT real servers, whose
// packets the program routes itself with the kernel's FIB: the loader needs only the outer
// source address (TUN) and the interface replies come back on (NAT, where the program must run).
type RouteResolver interface {
	// Route returns the kernel's route to addr.
	Route(ctx context.Context, addr netip.Addr) (Route, error)
}

// Route is the part of a route to a real server the loader uses.
type Route struct {
	// Ifindex and Ifname name the egress interface.
	Ifindex int
	Ifname  string
	// Src is the preferred source address, of addr's family.
	Src netip.Addr
}

var _ RouteResolver = NetlinkResolver{}

// NextHop is the egress interface and the MAC addresses of a frame sent to a real server.
type NextHop struct {
	Ifindex int
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr
}

// NetlinkResolver is the Resolver reading the kernel's addresses, routes and neighbours of the
// calling thread's network namespace. The zero value is ready to use.
type NetlinkResolver struct {
	// ARPTimeout bounds an ARP request, or the kernel's IPv6 neighbour discovery, for a neighbour
	// the kernel does not know; 0 means 1s.
	ARPTimeout time.Duration
}

// family is the netlink address family of a.
func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// VIPInterface returns the non-loopback interface holding vip itself or, failing that, the one
// with the longest prefix of vip's family containing it.
func (r NetlinkResolver) VIPInterface(vip netip.Addr) (int, string, error) {
	vip = vip.Unmap()
	if !vip.IsValid() || vip.Zone() != "" {
		return 0, "", fmt.Errorf("find interface for %s: not a plain IP address", vip)
	}
	addrs, err := netlink.AddrList(nil, family(vip))
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
			bits = vip.BitLen() + 1 // an exact address beats any prefix
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
// when the kernel has none, from an ARP request (IPv4) or the kernel's neighbour discovery (IPv6).
func (r NetlinkResolver) NextHop(ctx context.Context, addr netip.Addr) (NextHop, error) {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.Zone() != "" {
		return NextHop{}, fmt.Errorf("resolve %s: not a plain IP address", addr)
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

	mac, err := neighbour(rt.LinkIndex, addr)
	if err != nil {
		return NextHop{}, fmt.Errorf("list neighbours on %s: %w", lk.Attrs().Name, err)
	}
	if mac != nil {
		hop.DstMAC = mac
		return hop, nil
	}

	if addr.Is4() {
		mac, err = r.arp(ctx, rt.LinkIndex, addr)
	} else {
		mac, err = r.discover(ctx, rt.LinkIndex, addr)
	}
	if err != nil {
		return NextHop{}, fmt.Errorf("resolve %s on %s: %w", addr, lk.Attrs().Name, err)
	}
	hop.DstMAC = mac
	return hop, nil
}

// Route returns the kernel's route to addr: its interface and preferred source address, the one
// the kernel's ipip and ip6tnl devices would use. When the route's next hop has no neighbour
// entry it starts the kernel's resolution, so that the program finds one by the time traffic
// flows.
func (r NetlinkResolver) Route(ctx context.Context, addr netip.Addr) (Route, error) {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.Zone() != "" {
		return Route{}, fmt.Errorf("route to %s: not a plain IP address", addr)
	}
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil {
		return Route{}, fmt.Errorf("route to %s: %w", addr, err)
	}
	if len(routes) == 0 {
		return Route{}, fmt.Errorf("route to %s: no route", addr)
	}
	rt := routes[0]
	if rt.Type == unix.RTN_LOCAL {
		return Route{}, fmt.Errorf("route to %s: address is local", addr)
	}
	src, ok := netip.AddrFromSlice(rt.Src)
	if !ok {
		return Route{}, fmt.Errorf("route to %s: no source address", addr)
	}
	src = src.Unmap()
	if src.Is4() != addr.Is4() {
		return Route{}, fmt.Errorf("route to %s: source %s of another family", addr, src)
	}
	lk, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return Route{}, fmt.Errorf("route to %s: link %d: %w", addr, rt.LinkIndex, err)
	}
	hop := addr
	if gw, ok := netip.AddrFromSlice(rt.Gw); ok {
		hop = gw.Unmap()
	}
	if mac, err := neighbour(rt.LinkIndex, hop); err == nil && mac == nil {
		// Best effort: the program passes packets to the stack until the neighbour resolves.
		_ = netlink.NeighSet(&netlink.Neigh{LinkIndex: rt.LinkIndex, Family: family(hop), IP: hop.AsSlice(),
			State: netlink.NUD_NONE, Flags: netlink.NTF_USE})
	}
	return Route{Ifindex: rt.LinkIndex, Ifname: lk.Attrs().Name, Src: src}, nil
}

// neighbour returns addr's MAC from the kernel's neighbour table on ifindex, or nil.
func neighbour(ifindex int, addr netip.Addr) (net.HardwareAddr, error) {
	neighs, err := netlink.NeighList(ifindex, family(addr))
	if err != nil {
		return nil, err
	}
	for _, n := range neighs {
		if n.State&usableNeigh != 0 && len(n.HardwareAddr) == 6 && n.IP.Equal(addr.AsSlice()) {
			return n.HardwareAddr, nil
		}
	}
	return nil, nil
}

// discoverPoll is how often discover reads the neighbour table while the kernel solicits.
const discoverPoll = 20 * time.Millisecond

// discover has the kernel solicit addr (an NTF_USE neighbour update starts its neighbour
// discovery, as a packet to addr would) and waits, at most ARPTimeout or until ctx's deadline,
// for the answer to land in the neighbour table.
func (r NetlinkResolver) discover(ctx context.Context, ifindex int, addr netip.Addr) (net.HardwareAddr, error) {
	n := &netlink.Neigh{LinkIndex: ifindex, Family: family(addr), IP: addr.AsSlice(),
		State: netlink.NUD_NONE, Flags: netlink.NTF_USE}
	if err := netlink.NeighSet(n); err != nil {
		return nil, fmt.Errorf("neighbour discovery: %w", err)
	}
	timeout := r.ARPTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(discoverPoll)
	defer tick.Stop()
	for {
		mac, err := neighbour(ifindex, addr)
		if err != nil {
			return nil, fmt.Errorf("neighbour discovery: %w", err)
		}
		if mac != nil {
			return mac, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("neighbour discovery: no answer: %w", ctx.Err())
		case <-tick.C:
		}
	}
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
