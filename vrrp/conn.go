package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// PacketConn is the socket seam of an Instance: VRRP payloads in and out with the addresses
// and TTL / hop limit the receive checks need. Conn is the real one.
type PacketConn interface {
	// ReadFrom reads one VRRP payload; ttl is the IPv4 TTL or IPv6 hop limit, -1 if unknown.
	ReadFrom(b []byte) (n int, src, dst netip.Addr, ttl int, err error)
	// WriteTo sends one VRRP payload to dst with TTL / hop limit 255 (unicast: unicast_ttl).
	WriteTo(b []byte, dst netip.Addr) error
	// Close unblocks a pending ReadFrom.
	Close() error
}

// Conn is a raw IP protocol 112 socket bound to one interface, sending with TTL / hop limit
// 255 (RFC 5798 section 5.1.1.3; unicast_ttl may change it for unicast) and DSCP CS6 as
// keepalived does.
type Conn struct {
	c   net.PacketConn
	v4  *ipv4.PacketConn
	v6  *ipv6.PacketConn
	ifi *net.Interface
	src netip.Addr
	ttl int // of unicast sends
}

// ListenOptions are the optional settings of ListenWith.
type ListenOptions struct {
	// Group is the multicast group to join (224.0.0.18, ff02::12, or what mcast_dst_ip /
	// vrrp_mcast_group4/6 set); unset: none, for unicast peers.
	Group netip.Addr
	// UnicastTTL is unicast_ttl, the TTL / hop limit of adverts sent to unicast peers, 1-255;
	// 0 means 255. Multicast adverts always go with 255.
	UnicastTTL int
}

// Listen opens a VRRP socket on interface ifname that sends from src (its family picks IPv4
// or IPv6; for IPv6 it should be the interface's link-local address). With multicast it
// joins 224.0.0.18 or ff02::12 on the interface. It must be called in the network
// namespace of the interface; the socket stays there.
func Listen(ifname string, src netip.Addr, multicast bool) (*Conn, error) {
	var opts ListenOptions
	if multicast {
		opts.Group = GroupIPv4
		if src.Is6() {
			opts.Group = GroupIPv6
		}
	}
	return ListenWith(ifname, src, opts)
}

// ListenWith is Listen with the multicast group and the unicast TTL chosen.
func ListenWith(ifname string, src netip.Addr, opts ListenOptions) (*Conn, error) {
	if g := opts.Group; g.IsValid() && (g.Is4() != src.Is4() || !g.IsMulticast()) {
		return nil, fmt.Errorf("vrrp socket on %s: group %s is not a multicast address of the family of %s", ifname, g, src)
	}
	if opts.UnicastTTL < 0 || opts.UnicastTTL > 255 {
		return nil, fmt.Errorf("vrrp socket on %s: unicast TTL %d out of range 0-255", ifname, opts.UnicastTTL)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			// Only this interface's adverts: instances on other links may reuse the VRID.
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		})
		return errors.Join(err, serr)
	}}
	network, laddr := "ip4:112", "0.0.0.0"
	if src.Is6() {
		network, laddr = "ip6:112", "::"
	}
	c, err := lc.ListenPacket(context.Background(), network, laddr)
	if err != nil {
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifname, err)
	}
	conn := &Conn{c: c, ifi: ifi, src: src, ttl: 255}
	if opts.UnicastTTL > 0 {
		conn.ttl = opts.UnicastTTL
	}
	if err := conn.setup(opts.Group); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifname, err)
	}
	return conn, nil
}

func (c *Conn) setup(group netip.Addr) error {
	if c.src.Is4() {
		p := ipv4.NewPacketConn(c.c)
		c.v4 = p
		return errors.Join(
			p.SetTOS(0xc0),
			p.SetTTL(c.ttl),
			p.SetMulticastTTL(255),
			p.SetMulticastInterface(c.ifi),
			p.SetMulticastLoopback(false),
			p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true),
			join(group, func() error { return p.JoinGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()}) }),
		)
	}
	p := ipv6.NewPacketConn(c.c)
	c.v6 = p
	return errors.Join(
		p.SetTrafficClass(0xc0),
		p.SetHopLimit(255),
		p.SetMulticastHopLimit(255),
		p.SetMulticastInterface(c.ifi),
		p.SetMulticastLoopback(false),
		p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true),
		join(group, func() error { return p.JoinGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()}) }),
	)
}

func join(group netip.Addr, fn func() error) error {
	if !group.IsValid() {
		return nil
	}
	if err := fn(); err != nil {
		return fmt.Errorf("join multicast group %s: %w", group, err)
	}
	return nil
}

// Src returns the address adverts are sent from.
func (c *Conn) Src() netip.Addr { return c.src }

// ReadFrom implements PacketConn.
func (c *Conn) ReadFrom(b []byte) (n int, src, dst netip.Addr, ttl int, err error) {
	var from net.Addr
	ttl = -1
	if c.v4 != nil {
		var cm *ipv4.ControlMessage
		n, cm, from, err = c.v4.ReadFrom(b)
		if cm != nil {
			ttl = cm.TTL
			dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
	} else {
		var cm *ipv6.ControlMessage
		n, cm, from, err = c.v6.ReadFrom(b)
		if cm != nil {
			ttl = cm.HopLimit
			dst, _ = netip.AddrFromSlice(cm.Dst.To16())
		}
	}
	if err != nil {
		return 0, src, dst, ttl, err
	}
	if ia, ok := from.(*net.IPAddr); ok {
		src, _ = netip.AddrFromSlice(ia.IP)
		src = src.Unmap()
		if c.v6 != nil {
			src = netip.AddrFrom16(src.As16())
		}
	}
	return n, src, dst.Unmap(), ttl, nil
}

// WriteTo implements PacketConn.
func (c *Conn) WriteTo(b []byte, dst netip.Addr) error {
	to := &net.IPAddr{IP: dst.AsSlice()}
	var err error
	if c.v4 != nil {
		_, err = c.v4.WriteTo(b, &ipv4.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index}, to)
	} else {
		if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
			// By index: a name would be looked up in the namespace of the sending thread.
			to.Zone = strconv.Itoa(c.ifi.Index)
		}
		hops := 255
		if !dst.IsMulticast() {
			hops = c.ttl
		}
		_, err = c.v6.WriteTo(b, &ipv6.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index, HopLimit: hops}, to)
	}
	if err != nil {
		return fmt.Errorf("send vrrp to %s on %s: %w", dst, c.ifi.Name, err)
	}
	return nil
}

// SetReadDeadline sets the deadline of ReadFrom.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }
