package lab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/netns"
)

// Addresses of a Segment: 10.112.0.0/24 exists only inside the namespaces.
var (
	SegmentSubnet   = netip.MustParsePrefix("10.112.0.0/24")
	SegmentVIP      = netip.MustParseAddr("10.112.0.100")
	SegmentClientIP = netip.MustParseAddr("10.112.0.10")
)

// Segment is one L2 segment for VRRP tests: a client and n directors (10.112.0.2 onwards) on
// one bridge, and nothing else. Who holds SegmentVIP is up to whatever VRRP speaker runs in
// the directors.
//
//	client 10.112.0.10 ─┐
//	dir0 10.112.0.2    ─┤ br0 (namespace "switch")
//	dir1 10.112.0.3    ─┤
//	...                ─┘
type Segment struct {
	Env       *netns.Env
	Switch    *netns.Switch
	Client    *netns.NS
	Directors []*netns.NS
}

// BuildSegment builds a Segment with n directors (1..8).
func BuildSegment(env *netns.Env, n int) (*Segment, error) {
	if n < 1 || n > 8 {
		return nil, fmt.Errorf("build segment: %d directors, want 1..8", n)
	}
	sw, err := env.NewSwitch("switch")
	if err != nil {
		return nil, err
	}
	l := &Lab{Env: env, Switch: sw}
	s := &Segment{Env: env, Switch: sw}
	if s.Client, err = l.host("client", SegmentClientIP); err != nil {
		return nil, err
	}
	for i := range n {
		d, err := l.host(fmt.Sprintf("dir%d", i), s.DirectorIP(i))
		if err != nil {
			return nil, err
		}
		s.Directors = append(s.Directors, d)
	}
	return s, nil
}

// DirectorIP returns director i's address.
func (s *Segment) DirectorIP(i int) netip.Addr {
	a := SegmentSubnet.Addr().As4()
	a[3] = byte(2 + i)
	return netip.AddrFrom4(a)
}

// Holders returns the directors among those listed (all when none are) that have SegmentVIP
// on their interface.
func (s *Segment) Holders(among ...int) ([]int, error) {
	if len(among) == 0 {
		for i := range s.Directors {
			among = append(among, i)
		}
	}
	var out []int
	for _, i := range among {
		d := s.Directors[i]
		link, err := d.Link(Iface)
		if err != nil {
			return nil, err
		}
		addrs, err := d.Netlink().AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", d, err)
		}
		for _, a := range addrs {
			if a.IP.Equal(SegmentVIP.AsSlice()) {
				out = append(out, i)
			}
		}
	}
	return out, nil
}

// Poke makes the client send one UDP datagram to the VIP (port 9, discard), which resolves
// the VIP with ARP if the client has no entry for it yet.
func (s *Segment) Poke() error {
	c, err := s.Client.Dial("udp4", net.JoinHostPort(SegmentVIP.String(), "9"), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("poke")); err != nil {
		return fmt.Errorf("poke the vip: %w", err)
	}
	return nil
}

// ClientVIPMAC returns the MAC address of the client's neighbour entry for the VIP, or "".
func (s *Segment) ClientVIPMAC() (string, error) {
	link, err := s.Client.Link(Iface)
	if err != nil {
		return "", err
	}
	neighs, err := s.Client.Netlink().NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list neighbours of the client: %w", err)
	}
	for _, n := range neighs {
		if n.IP.Equal(SegmentVIP.AsSlice()) && n.HardwareAddr != nil {
			return n.HardwareAddr.String(), nil
		}
	}
	return "", nil
}

// DirectorPort returns the switch's port of director i: a capture there sees every frame the
// director sends, unicast included.
func (s *Segment) DirectorPort(i int) string {
	port := s.Directors[i].Short
	if len(port) > 15 {
		port = port[:15]
	}
	return port
}

// WaitHolder waits until director want is the only one among alive (all when empty) holding
// the VIP and the client, poked every round, has the VIP's ARP entry pointing at want's MAC.
func (s *Segment) WaitHolder(want int, alive []int, timeout time.Duration) error {
	mac, err := s.Directors[want].HardwareAddr(Iface)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		holders, err := s.Holders(alive...)
		if err != nil {
			return err
		}
		var got string
		if slices.Equal(holders, []int{want}) {
			if err := s.Poke(); err != nil {
				return err
			}
			if got, err = s.ClientVIPMAC(); err != nil {
				return err
			}
			if got == mac {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: VIP held by directors %v (of %v), client's ARP entry %q; want director %d (%s)",
				timeout, holders, alive, got, want, mac)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// VRRPNode is one node's vrrp_instance in a Segment test configuration.
type VRRPNode struct {
	State     string // MASTER or BACKUP
	Priority  int
	NoPreempt bool
	// UnicastSrc and UnicastPeers, when set, make the instance unicast.
	UnicastSrc   netip.Addr
	UnicastPeers []netip.Addr
}

// VRRPConf is a keepalived.conf with one vrrp_instance (VRID 52, on Iface, holding
// SegmentVIP) for node n, which keepalived and `sluice run -P` both run. version is 2 or 3;
// advertInt is advert_int in seconds; authPass, if set, adds PASS authentication (v2).
func VRRPConf(n VRRPNode, version int, advertInt float64, authPass string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n    state %s\n    interface %s\n    virtual_router_id 52\n", n.State, Iface)
	fmt.Fprintf(&b, "    version %d\n    priority %d\n    advert_int %g\n", version, n.Priority, advertInt)
	if n.NoPreempt {
		b.WriteString("    nopreempt\n")
	}
	if len(n.UnicastPeers) > 0 {
		fmt.Fprintf(&b, "    unicast_src_ip %s\n    unicast_peer {\n", n.UnicastSrc)
		for _, p := range n.UnicastPeers {
			fmt.Fprintf(&b, "        %s\n", p)
		}
		b.WriteString("    }\n")
	}
	if authPass != "" {
		fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", authPass)
	}
	fmt.Fprintf(&b, "    virtual_ipaddress {\n        %s/32\n    }\n}\n", SegmentVIP)
	return b.String()
}
