package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

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

// VIPOptions are the options of one virtual_ipaddress line that Sluice acts on.
type VIPOptions struct {
	// Broadcast is brd (IPv4 only); unset: the kernel's default for the prefix.
	Broadcast netip.Addr
	// Dev is dev: the interface the address goes on and is announced from; "": the
	// instance's interface (or its VMAC).
	Dev string
	// Scope is scope, an rtnetlink scope (0 global, 200 site, 253 link, 254 host, 255
	// nowhere).
	Scope int
	// Label is label: the address label, which Linux requires to be the device name or to
	// start with it followed by ':'.
	Label string
	// Flags are IFA_F_* address flags: home (IFA_F_HOMEADDRESS), -nodad (IFA_F_NODAD),
	// noprefixroute (IFA_F_NOPREFIXROUTE), autojoin (IFA_F_MCAUTOJOIN); see VIPFlag.
	Flags int
}

// VIPFlag returns the IFA_F_* flag of a virtual_ipaddress flag option, or false.
func VIPFlag(opt string) (int, bool) {
	switch opt {
	case "home":
		return unix.IFA_F_HOMEADDRESS, true
	case "-nodad", "nodad":
		return unix.IFA_F_NODAD, true
	case "noprefixroute":
		return unix.IFA_F_NOPREFIXROUTE, true
	case "autojoin":
		return unix.IFA_F_MCAUTOJOIN, true
	}
	return 0, false
}

// ParseScope returns the rtnetlink scope of `scope NAME` (global, site, link, host, nowhere)
// or of a number 0-255.
func ParseScope(s string) (int, error) {
	switch s {
	case "global", "universe":
		return unix.RT_SCOPE_UNIVERSE, nil
	case "site":
		return unix.RT_SCOPE_SITE, nil
	case "link":
		return unix.RT_SCOPE_LINK, nil
	case "host":
		return unix.RT_SCOPE_HOST, nil
	case "nowhere":
		return unix.RT_SCOPE_NOWHERE, nil
	}
	n, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("scope %q: expected global, site, link, host, nowhere or 0-255", s)
	}
	return int(n), nil
}

// validateVIPOptions checks the options of c's addresses.
func validateVIPOptions(c *Config) error {
	for a, o := range c.VIPOptions {
		if !slices.ContainsFunc(c.VIPs, func(p netip.Prefix) bool { return p.Addr() == a }) &&
			!slices.ContainsFunc(c.ExcludedVIPs, func(p netip.Prefix) bool { return p.Addr() == a }) {
			return fmt.Errorf("options for %s, which is not a virtual address", a)
		}
		if o.Broadcast.IsValid() && (!a.Is4() || !o.Broadcast.Is4()) {
			return fmt.Errorf("virtual address %s: brd %s: a broadcast address is IPv4 only", a, o.Broadcast)
		}
		if o.Scope < 0 || o.Scope > 255 {
			return fmt.Errorf("virtual address %s: scope %d: must be 0-255", a, o.Scope)
		}
		dev := o.Dev
		if dev == "" {
			dev = c.Interface
			if c.UseVMAC {
				dev = c.VMACName
			}
		}
		if o.Label != "" && o.Label != dev && !strings.HasPrefix(o.Label, dev+":") {
			return fmt.Errorf("virtual address %s: label %q: must be %s or start with %q", a, o.Label, dev, dev+":")
		}
		if len(o.Label) >= unix.IFNAMSIZ {
			return fmt.Errorf("virtual address %s: label %q: longer than %d bytes", a, o.Label, unix.IFNAMSIZ-1)
		}
	}
	for _, p := range c.ExcludedVIPs {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("virtual_ipaddress_excluded %s: not a valid address", p)
		}
	}
	return nil
}

// vip is a virtual address with the link it goes on.
type vip struct {
	prefix netip.Prefix
	opts   VIPOptions
	link   netlink.Link
	ann    Announcer // nil: not announced
}

// vipAddr is the netlink form of a virtual address. IPv6 ones skip duplicate address
// detection, as keepalived's do: the address must answer as soon as we are master.
func vipAddr(v vip) *netlink.Addr {
	p := v.prefix
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Scope: v.opts.Scope, Label: v.opts.Label, Flags: v.opts.Flags}
	if v.opts.Broadcast.IsValid() {
		a.Broadcast = v.opts.Broadcast.AsSlice()
	}
	if p.Addr().Is6() {
		a.Flags |= unix.IFA_F_NODAD
	}
	return a
}

// addVIPs adds every address to its link; an address already there is fine.
func addVIPs(nl Netlink, vips []vip) error {
	var errs []error
	for _, v := range vips {
		err := nl.AddrAdd(v.link, vipAddr(v))
		if errors.Is(err, unix.EINVAL) && v.opts.Scope != 0 && v.prefix.Addr().Is4() {
			err = fmt.Errorf("%w (a secondary IPv4 address must have its primary's scope)", err)
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add virtual address %s to %s: %w", v.prefix, v.link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// delVIPs removes every address from its link; an address already gone is fine.
func delVIPs(nl Netlink, vips []vip) error {
	var errs []error
	for _, v := range vips {
		err := nl.AddrDel(v.link, vipAddr(v))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove virtual address %s from %s: %w", v.prefix, v.link.Attrs().Name, err))
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
