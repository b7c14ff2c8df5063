package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Netlink is the narrow seam over the netlink calls that add and remove virtual addresses;
// *netlink.Handle implements it.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// vipAddr is the netlink form of a virtual address. IPv6 ones skip duplicate address
// detection, as keepalived's do: the address must answer as soon as we are master.
func vipAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// addVIPs adds every prefix to link; an address already there is fine.
func addVIPs(nl Netlink, link netlink.Link, vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		if err := nl.AddrAdd(link, vipAddr(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add virtual address %s to %s: %w", p, link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// delVIPs removes every prefix from link; an address already gone is fine.
func delVIPs(nl Netlink, link netlink.Link, vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		err := nl.AddrDel(link, vipAddr(p))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove virtual address %s from %s: %w", p, link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// Announcer tells the link that this host now holds an address: gratuitous ARP for IPv4,
// unsolicited neighbor advertisement for IPv6.
type Announcer interface {
	Announce(addr netip.Addr) error
	Close() error
}

// linkAnnouncer sends the announcements on one interface.
type linkAnnouncer struct {
	ifi  *net.Interface
	arp  *arp.Client
	icmp *icmp.PacketConn
	src6 netip.Addr
}

// NewAnnouncer opens the sockets to announce addresses on ifname: an AF_PACKET socket for
// ARP when v4, an ICMPv6 socket sending from link-local src6 when src6 is valid. Neither
// receives anything. It must be called in the interface's network namespace.
func NewAnnouncer(ifname string, v4 bool, src6 netip.Addr) (Announcer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("announcer on %s: %w", ifname, err)
	}
	a := &linkAnnouncer{ifi: ifi, src6: src6}
	if v4 {
		// Protocol 0: the socket sends frames and receives none, so nothing queues up.
		p, err := packet.Listen(ifi, packet.Raw, 0, nil)
		if err != nil {
			return nil, fmt.Errorf("arp socket on %s: %w", ifname, err)
		}
		c, err := arp.New(ifi, p)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("arp client on %s: %w", ifname, err)
		}
		a.arp = c
	}
	if src6.IsValid() {
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("icmpv6 socket on %s: %w", ifname, err)
		}
		a.icmp = c
		p := c.IPv6PacketConn()
		var f ipv6.ICMPFilter
		f.SetAll(true) // block every received message
		if err := errors.Join(p.SetICMPFilter(&f), p.SetMulticastHopLimit(255), p.SetHopLimit(255), p.SetMulticastInterface(ifi)); err != nil {
			a.Close()
			return nil, fmt.Errorf("icmpv6 socket on %s: %w", ifname, err)
		}
	}
	return a, nil
}

// Announce sends one gratuitous ARP request (sender and target both addr, broadcast) or one
// unsolicited NA to all-nodes with the override flag and our link-layer address.
func (a *linkAnnouncer) Announce(addr netip.Addr) error {
	if addr.Is4() {
		if a.arp == nil {
			return fmt.Errorf("announce %s on %s: no IPv4 announcer", addr, a.ifi.Name)
		}
		p, err := arp.NewPacket(arp.OperationRequest, a.ifi.HardwareAddr, addr, ethernet.Broadcast, addr)
		if err != nil {
			return fmt.Errorf("gratuitous arp for %s: %w", addr, err)
		}
		if err := a.arp.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("gratuitous arp for %s on %s: %w", addr, a.ifi.Name, err)
		}
		return nil
	}
	if a.icmp == nil {
		return fmt.Errorf("announce %s on %s: no IPv6 announcer", addr, a.ifi.Name)
	}
	b, err := MarshalNA(addr, a.ifi.HardwareAddr)
	if err != nil {
		return err
	}
	dst := &net.IPAddr{IP: net.IPv6linklocalallnodes, Zone: strconv.Itoa(a.ifi.Index)}
	cm := &ipv6.ControlMessage{HopLimit: 255, Src: a.src6.AsSlice(), IfIndex: a.ifi.Index}
	if _, err := a.icmp.IPv6PacketConn().WriteTo(b, cm, dst); err != nil {
		return fmt.Errorf("unsolicited na for %s on %s: %w", addr, a.ifi.Name, err)
	}
	return nil
}

// MarshalNA encodes an unsolicited neighbor advertisement (RFC 4861 section 7.2.6) for
// target with the override flag and a target link-layer address option. The checksum is
// left 0: the kernel fills it in on ICMPv6 sockets.
func MarshalNA(target netip.Addr, hw net.HardwareAddr) ([]byte, error) {
	if !target.Is6() || target.Is4In6() {
		return nil, fmt.Errorf("neighbor advertisement for %s: not an IPv6 address", target)
	}
	if len(hw) != 6 {
		return nil, fmt.Errorf("neighbor advertisement for %s: link-layer address %q is not Ethernet", target, hw)
	}
	body := make([]byte, 4+16+8)
	binary.BigEndian.PutUint32(body, 1<<29) // Override
	t := target.As16()
	copy(body[4:], t[:])
	body[20], body[21] = 2, 1 // option: target link-layer address, 8 bytes
	copy(body[22:], hw)
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}
	return m.Marshal(nil)
}

func (a *linkAnnouncer) Close() error {
	var errs []error
	if a.arp != nil {
		errs = append(errs, a.arp.Close())
	}
	if a.icmp != nil {
		errs = append(errs, a.icmp.Close())
	}
	return errors.Join(errs...)
}
