package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
)

// VMACAddr returns the virtual router MAC address of RFC 5798 section 7.3:
// 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6.
func VMACAddr(vrid uint8, v4 bool) net.HardwareAddr {
	if v4 {
		return net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, vrid}
	}
	return net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x02, vrid}
}

// VMACName returns keepalived's default name of an instance's VMAC interface: vrrp.VRID.
func VMACName(vrid uint8) string { return "vrrp." + strconv.Itoa(int(vrid)) }

// linkNetlink is what use_vmac needs of netlink beyond the Netlink seam.
type linkNetlink interface {
	Netlink
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
}

// vmac is an instance's macvlan interface (use_vmac) and the base interface's ARP settings it
// changed, restored when it is removed.
type vmac struct {
	nl   linkNetlink
	link netlink.Link
	// restore holds the sysctls to put back, opened in the instance's network namespace (a
	// path would be resolved in whichever namespace the closing thread is in).
	restore []sysctlValue
}

type sysctlValue struct {
	f   *os.File
	old []byte
}

// createVMAC creates (or re-creates, after a killed run) the macvlan name on base with mac,
// in private mode, up, without IPv6 (it would send from the shared MAC while BACKUP), and
// sets ARP so only it answers for the VIPs: arp_ignore=1 on it and on base (the base
// interface must not answer for addresses on the VMAC with its own MAC), as keepalived does.
func createVMAC(nl Netlink, base netlink.Link, name string, mac net.HardwareAddr) (*vmac, error) {
	lnl, ok := nl.(linkNetlink)
	if !ok {
		return nil, errors.New("use_vmac: the netlink seam cannot create links")
	}
	if len(name) > 15 {
		return nil, fmt.Errorf("use_vmac: interface name %q longer than 15 bytes", name)
	}
	if old, err := nl.LinkByName(name); err == nil {
		if _, ok := old.(*netlink.Macvlan); !ok || old.Attrs().ParentIndex != base.Attrs().Index {
			return nil, fmt.Errorf("use_vmac: interface %s exists and is not a macvlan of %s", name, base.Attrs().Name)
		}
		if err := lnl.LinkDel(old); err != nil {
			return nil, fmt.Errorf("use_vmac: remove stale %s: %w", name, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.ParentIndex, attrs.HardwareAddr = name, base.Attrs().Index, mac
	if err := lnl.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_PRIVATE}); err != nil {
		return nil, fmt.Errorf("use_vmac: create macvlan %s on %s: %w", name, base.Attrs().Name, err)
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("use_vmac: %w", err)
	}
	v := &vmac{nl: lnl, link: link}
	baseName := base.Attrs().Name
	err = errors.Join(
		v.sysctl("ipv6/conf/"+name+"/disable_ipv6", "1", false),
		v.sysctl("ipv4/conf/"+name+"/arp_ignore", "1", false),
		v.sysctl("ipv4/conf/"+baseName+"/arp_ignore", "1", true),
	)
	if err == nil {
		err = lnl.LinkSetUp(link)
	}
	if err != nil {
		v.remove()
		return nil, fmt.Errorf("use_vmac: set up %s: %w", name, err)
	}
	return v, nil
}

// sysctl writes /proc/sys/net/key, remembering the old value when restore is set.
func (v *vmac) sysctl(key, value string, restore bool) error {
	f, err := os.OpenFile(filepath.Join("/proc/sys/net", key), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	old := make([]byte, 64)
	n, err := f.ReadAt(old, 0)
	if err != nil && n == 0 {
		f.Close()
		return fmt.Errorf("read %s: %w", key, err)
	}
	if _, err := f.WriteAt([]byte(value), 0); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", key, err)
	}
	if !restore {
		return f.Close()
	}
	v.restore = append(v.restore, sysctlValue{f, old[:n]})
	return nil
}

// remove deletes the macvlan (its addresses go with it) and restores the base's settings.
func (v *vmac) remove() error {
	var errs []error
	if err := v.nl.LinkDel(v.link); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", v.link.Attrs().Name, err))
	}
	for _, s := range v.restore {
		if _, err := s.f.WriteAt(s.old, 0); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", s.f.Name(), err))
		}
		errs = append(errs, s.f.Close())
	}
	v.restore = nil
	return errors.Join(errs...)
}

// vmacAnnouncer sends gratuitous ARP from a VMAC interface, which has no IPv4 address of
// its own (arp.Client insists on one), with the VMAC as the sender's hardware address.
type vmacAnnouncer struct {
	ifi *net.Interface
	p   *packet.Conn
}

func newVMACAnnouncer(ifname string) (Announcer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("announcer on %s: %w", ifname, err)
	}
	// Protocol 0: the socket sends frames and receives none, so nothing queues up.
	p, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("arp socket on %s: %w", ifname, err)
	}
	return &vmacAnnouncer{ifi: ifi, p: p}, nil
}

// Announce sends one gratuitous ARP request for addr (IPv4 only).
func (a *vmacAnnouncer) Announce(addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("announce %s on %s: IPv4 only", addr, a.ifi.Name)
	}
	p, err := arp.NewPacket(arp.OperationRequest, a.ifi.HardwareAddr, addr, ethernet.Broadcast, addr)
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", addr, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", addr, err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: a.ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", addr, err)
	}
	if _, err := a.p.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", addr, a.ifi.Name, err)
	}
	return nil
}

func (a *vmacAnnouncer) Close() error { return a.p.Close() }
