package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/netns"
)

// SecondDirectorIP is the address of the second director BuildVRRP adds.
var SecondDirectorIP = netip.MustParseAddr("10.111.0.3")

// VRRPLab is a Lab with two directors that share the VIP through VRRP instead of holding it.
type VRRPLab struct {
	*Lab
	// Directors are the two directors: Directors[0] is Lab.Director.
	Directors [2]*netns.NS
}

// BuildVRRP builds the lab with n real servers and a second director, and takes the VIP off
// the first director: VRRP decides who holds it.
func BuildVRRP(env *netns.Env, n int) (*VRRPLab, error) {
	l, err := Build(env, n)
	if err != nil {
		return nil, err
	}
	link, err := l.Director.Link(Iface)
	if err != nil {
		return nil, err
	}
	vip := &netlink.Addr{IPNet: &net.IPNet{IP: VIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := l.Director.Netlink().AddrDel(link, vip); err != nil {
		return nil, fmt.Errorf("remove the VIP from the first director: %w", err)
	}
	d2, err := l.host("director2", SecondDirectorIP)
	if err != nil {
		return nil, err
	}
	if err := l.Switch.NS.AttachXDPPass("director2"); err != nil {
		return nil, err
	}
	return &VRRPLab{Lab: l, Directors: [2]*netns.NS{l.Director, d2}}, nil
}

// KeepalivedConfVRRP is KeepalivedConf with a VRRPv3 instance holding the VIP at the given
// priority, advertising every 200 ms so failovers take well under a second.
func (l *VRRPLab) KeepalivedConfVRRP(priority int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n    interface %s\n    virtual_router_id 51\n    version 3\n", Iface)
	fmt.Fprintf(&b, "    priority %d\n    advert_int 0.2\n    virtual_ipaddress {\n        %s/32\n    }\n}\n\n", priority, VIP)
	b.WriteString(l.KeepalivedConf(DelayLoop, ConnectTimeout))
	return b.String()
}

// VIPHolders returns which directors have the VIP on their interface.
func (l *VRRPLab) VIPHolders() ([]int, error) {
	var out []int
	for i, d := range l.Directors {
		link, err := d.Link(Iface)
		if err != nil {
			return nil, err
		}
		addrs, err := d.Netlink().AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if a.IP.Equal(VIP.AsSlice()) {
				out = append(out, i)
			}
		}
	}
	return out, nil
}

// ClientVIPMAC returns the MAC address the client's neighbour table holds for the VIP, or "".
func (l *VRRPLab) ClientVIPMAC() (string, error) {
	link, err := l.Client.Link(Iface)
	if err != nil {
		return "", err
	}
	neighs, err := l.Client.Netlink().NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	for _, n := range neighs {
		if n.IP.Equal(VIP.AsSlice()) && n.HardwareAddr != nil {
			return n.HardwareAddr.String(), nil
		}
	}
	return "", nil
}

// WaitHolder waits until exactly director i holds the VIP and the client's ARP entry for the
// VIP, if it has one, points at it. (Before the client's first packet to the VIP it has no
// entry: Linux does not create entries from gratuitous ARP, it only updates them.)
func (l *VRRPLab) WaitHolder(i int, timeout time.Duration) error {
	want, err := l.Directors[i].HardwareAddr(Iface)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		holders, err := l.VIPHolders()
		if err != nil {
			return err
		}
		mac, err := l.ClientVIPMAC()
		if err != nil {
			return err
		}
		if len(holders) == 1 && holders[0] == i && (mac == "" || mac == want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: VIP held by directors %v, client's ARP entry %q; want director %d (%s)",
				timeout, holders, mac, i, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
