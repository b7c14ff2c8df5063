package loader

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestNetlinkResolverVIPInterface(t *testing.T) {
	n := newTestNet(t)
	lb0 := n.link(t, n.hLB, "lb0").Attrs().Index
	br0 := n.link(t, n.hLB, "br0").Attrs().Index
	n.addr(t, n.hLB, "br0", "10.99.0.200/32")

	tests := []struct {
		vip     string
		want    int
		wantErr error
	}{
		{"10.99.0.100", lb0, nil}, // in lb0's /24, which beats br0's /8
		{"10.99.0.1", lb0, nil},   // lb0's own address
		{"10.99.0.200", br0, nil}, // an exact address beats the /24
		{"10.50.0.1", br0, nil},   // only the /8 covers it
		{"127.0.0.1", 0, ErrNoVIPInterface},
		{"192.0.2.1", 0, ErrNoVIPInterface},
		{"2001:db8::1", 0, ErrNoVIPInterface},
	}
	n.in(t, n.lb, func() {
		for _, tt := range tests {
			got, name, err := NetlinkResolver{}.VIPInterface(netip.MustParseAddr(tt.vip))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("VIPInterface(%s) = %d %q, %v; want %d, %v", tt.vip, got, name, err, tt.want, tt.wantErr)
			}
		}
	})
}

func TestNetlinkResolverNextHop(t *testing.T) {
	n := newTestNet(t)
	lb0 := n.link(t, n.hLB, "lb0").Attrs()
	rs0 := n.link(t, n.hRS, "rs0").Attrs()
	static := net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x33}
	must(t, n.hLB.NeighAdd(&netlink.Neigh{LinkIndex: lb0.Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.99.0.3"), HardwareAddr: static}))

	r := NetlinkResolver{ARPTimeout: 300 * time.Millisecond}
	ctx := context.Background()
	n.in(t, n.lb, func() {
		neighs, err := netlink.NeighList(lb0.Index, netlink.FAMILY_V4)
		must(t, err)
		for _, ne := range neighs {
			if ne.IP.Equal(net.ParseIP("10.99.0.2")) && ne.State&usableNeigh != 0 {
				t.Fatalf("neighbour table already knows the real server: %+v", ne)
			}
		}

		// Unknown to the kernel: found by ARP.
		hop, err := r.NextHop(ctx, netip.MustParseAddr("10.99.0.2"))
		if err != nil {
			t.Fatalf("NextHop(real server): %v", err)
		}
		want := NextHop{Ifindex: lb0.Index, SrcMAC: lb0.HardwareAddr, DstMAC: rs0.HardwareAddr}
		if hop.Ifindex != want.Ifindex || hop.SrcMAC.String() != want.SrcMAC.String() || hop.DstMAC.String() != want.DstMAC.String() {
			t.Errorf("NextHop(real server) = %+v, want %+v", hop, want)
		}

		// Known to the kernel: taken from the neighbour table, no ARP (nobody would answer).
		hop, err = r.NextHop(ctx, netip.MustParseAddr("10.99.0.3"))
		if err != nil || hop.DstMAC.String() != static.String() {
			t.Errorf("NextHop(static neighbour) = %+v, %v; want MAC %s", hop, err, static)
		}

		for addr, wantErr := range map[string]error{
			"10.98.0.5": ErrNotDirect, // behind a gateway
			"10.99.0.1": ErrNotDirect, // the director itself
		} {
			if _, err := r.NextHop(ctx, netip.MustParseAddr(addr)); !errors.Is(err, wantErr) {
				t.Errorf("NextHop(%s) = %v, want %v", addr, err, wantErr)
			}
		}

		start := time.Now()
		if _, err := r.NextHop(ctx, netip.MustParseAddr("10.99.0.77")); err == nil {
			t.Error("NextHop(silent address) succeeded")
		} else if d := time.Since(start); d > 2*time.Second {
			t.Errorf("NextHop(silent address) took %v, want about %v", d, r.ARPTimeout)
		}
	})
}

// addr6 adds an IPv6 address without duplicate address detection, so that it is usable at once.
func (n *testNet) addr6(t *testing.T, h *netlink.Handle, link, cidr string) {
	t.Helper()
	lk, err := h.LinkByName(link)
	must(t, err)
	a, err := netlink.ParseAddr(cidr)
	must(t, err)
	a.Flags = unix.IFA_F_NODAD
	must(t, h.AddrAdd(lk, a))
}

func TestNetlinkResolverIPv6(t *testing.T) {
	n := newTestNet(t)
	lb0 := n.link(t, n.hLB, "lb0").Attrs()
	br0 := n.link(t, n.hLB, "br0").Attrs().Index
	rs0 := n.link(t, n.hRS, "rs0").Attrs()
	n.addr6(t, n.hLB, "lb0", "fd99::1/64")
	n.addr6(t, n.hLB, "br0", "fd00::1/16")
	n.addr6(t, n.hLB, "br0", "fd99::200/128")
	n.addr6(t, n.hRS, "rs0", "fd99::2/64")
	_, gwNet, _ := net.ParseCIDR("fd98::/64")
	must(t, n.hLB.RouteAdd(&netlink.Route{Dst: gwNet, Gw: net.ParseIP("fd99::2"), LinkIndex: lb0.Index}))

	// The first solicitation may leave before the fresh veth carries frames; the kernel
	// retransmits after a second.
	r := NetlinkResolver{ARPTimeout: 3 * time.Second}
	ctx := context.Background()
	n.in(t, n.lb, func() {
		for vip, want := range map[string]int{
			"fd99::100": lb0.Index, // lb0's /64 beats br0's /16
			"fd99::200": br0,       // an exact address beats the /64
			"fd00:5::1": br0,       // only the /16 covers it
		} {
			if got, _, err := r.VIPInterface(netip.MustParseAddr(vip)); err != nil || got != want {
				t.Errorf("VIPInterface(%s) = %d, %v; want %d", vip, got, err, want)
			}
		}
		if _, _, err := r.VIPInterface(netip.MustParseAddr("2001:db8::1")); !errors.Is(err, ErrNoVIPInterface) {
			t.Errorf("VIPInterface(2001:db8::1) = %v, want %v", err, ErrNoVIPInterface)
		}

		// Unknown to the kernel: found by its neighbour discovery.
		hop, err := r.NextHop(ctx, netip.MustParseAddr("fd99::2"))
		if err != nil {
			t.Fatalf("NextHop(real server): %v", err)
		}
		if hop.Ifindex != lb0.Index || hop.SrcMAC.String() != lb0.HardwareAddr.String() || hop.DstMAC.String() != rs0.HardwareAddr.String() {
			t.Errorf("NextHop(real server) = %+v, want ifindex %d %s -> %s", hop, lb0.Index, lb0.HardwareAddr, rs0.HardwareAddr)
		}

		for addr, wantErr := range map[string]error{
			"fd98::5": ErrNotDirect, // behind a gateway
			"fd99::1": ErrNotDirect, // the director itself
		} {
			if _, err := r.NextHop(ctx, netip.MustParseAddr(addr)); !errors.Is(err, wantErr) {
				t.Errorf("NextHop(%s) = %v, want %v", addr, err, wantErr)
			}
		}
		r.ARPTimeout = 300 * time.Millisecond
		start := time.Now()
		if _, err := r.NextHop(ctx, netip.MustParseAddr("fd99::77")); err == nil {
			t.Error("NextHop(silent address) succeeded")
		} else if d := time.Since(start); d > 2*time.Second {
			t.Errorf("NextHop(silent address) took %v, want about %v", d, r.ARPTimeout)
		}
	})
}
