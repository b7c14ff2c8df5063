package loader

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// gueBe is a TUN backend that takes GUE on UDP port 6080.
func gueBe(a netip.Addr) director.Backend {
	b := tunBe(a)
	b.Tunnel = director.Tunnel{Type: director.TunnelGUE, Port: 6080}
	return b
}

// gueSport is the UDP source port the program gives a flow's GUE packets.
func gueSport(client netip.Addr, port uint16) uint16 {
	return 0x8000 | uint16(SourcePortHash(client, port)&0x7fff)
}

// gue returns what IPVS's GUE tunnel sends for inner, an Ethernet frame: outer IP (IPv4 for an
// IPv4 inner datagram, else IPv6) from src to dst, UDP to port 6080 without a checksum, a GUE
// header of variant 0 naming the inner protocol, and the inner datagram.
func gue(inner []byte, o packets.Options) []byte {
	o.DstPort, o.TTL = 6080, 64
	if o.Src.Is4() {
		o.Payload = append([]byte{0, 4, 0, 0}, inner[14:]...)
		out := packets.UDP(o)
		out[14+20+6], out[14+20+7] = 0, 0
		return out
	}
	o.Payload = append([]byte{0, 41, 0, 0}, inner[14:]...)
	out := packets.UDP6(o)
	out[14+40+6], out[14+40+7] = 0, 0
	return out
}

// TestGoldenGUE runs GUE and too-big TUN packets through the program in the director's
// namespace of a testNet, where bpf_fib_lookup routes the outer header and checks its size
// against the real route MTU, as in TestGoldenTUN.
func TestGoldenGUE(t *testing.T) {
	n := newTestNet(t)
	lb0 := n.link(t, n.hLB, "lb0").Attrs()
	n.addr6(t, n.hLB, "lb0", "fd99::1/64")
	rsMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x33}
	for _, ip := range []string{"10.99.0.3", "fd99::3"} {
		fam := netlink.FAMILY_V4
		if netip.MustParseAddr(ip).Is6() {
			fam = netlink.FAMILY_V6
		}
		must(t, n.hLB.NeighAdd(&netlink.Neigh{LinkIndex: lb0.Index, Family: fam,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: rsMAC}))
	}
	var (
		lbIP   = netip.MustParseAddr("10.99.0.1")
		lbIP6  = netip.MustParseAddr("fd99::1")
		rs     = netip.MustParseAddr("10.99.0.3")
		rs6    = netip.MustParseAddr("fd99::3")
		dirMAC = mac("02:00:00:00:00:01") // the director's MAC the client side sends to
	)
	in := tcpTo(1000, func(o *packets.Options) { o.DF, o.ID = true, 0x1234 })
	in6 := tcp6To(1000, func(o *packets.Options) { o.FlowLabel = 0x12345 })
	gue4 := func(in []byte, dst netip.Addr, smac, dmac net.HardwareAddr) []byte {
		return gue(in, packets.Options{SrcMAC: smac, DstMAC: dmac, Src: lbIP, Dst: dst, ID: 0x1234, DF: true,
			SrcPort: gueSport(client, 1000)})
	}
	gue6 := func(in []byte, smac, dmac net.HardwareAddr) []byte {
		return gue(in, packets.Options{SrcMAC: smac, DstMAC: dmac, Src: lbIP6, Dst: rs6, FlowLabel: 0x12345,
			SrcPort: gueSport(client6, 1000)})
	}
	big := func(df bool) []byte {
		return tcpTo(1000, func(o *packets.Options) { o.DF, o.ID, o.Payload = df, 0x1234, make([]byte, 1500-40) })
	}
	big6 := tcp6To(1000, func(o *packets.Options) { o.FlowLabel = 0x12345; o.Payload = make([]byte, 1500-60) })
	mtu1500 := func() { must(t, netlink.LinkSetMTU(mustLink(t, "lb0"), 1500)) }
	gueSnap := snap(svc(tcp80, "rr", gueBe(rs)))
	gueSnap6 := snap(svc(tcp6, "rr", gueBe(rs6)))
	ipipSnap := snap(svc(tcp80, "rr", tunBe(rs)))
	ipipSnap6 := snap(svc(tcp6, "rr", tunBe(rs6)))

	tests := []struct {
		name  string
		steps []step
	}{
		{"gue over ipv4", []step{
			{setup: gueSnap, in: in, wantVerdict: xdpRedirect, wantOut: gue4(in, rs, lb0.HardwareAddr, rsMAC),
				wantReason: ReasonRedirectTUN, wantSvc: tcp80, wantBackend: rs, wantNewFlow: true},
			{in: in, wantVerdict: xdpRedirect, wantOut: gue4(in, rs, lb0.HardwareAddr, rsMAC),
				wantReason: ReasonRedirectTUN, wantSvc: tcp80, wantBackend: rs},
		}},
		{"gue tx on the ingress interface", []step{
			{setup: gueSnap, in: in, ingress: uint32(lb0.Index), wantVerdict: xdpTX,
				wantOut: gue4(in, rs, lb0.HardwareAddr, rsMAC), wantReason: ReasonTxTUN, wantSvc: tcp80, wantBackend: rs, wantNewFlow: true},
		}},
		{"gue over ipv6", []step{
			{setup: gueSnap6, in: in6, wantVerdict: xdpRedirect, wantOut: gue6(in6, lb0.HardwareAddr, rsMAC),
				wantReason: ReasonRedirectTUN, wantSvc: tcp6, wantBackend: rs6, wantNewFlow: true},
		}},
		// Another client port is another flow: another UDP source port for ECMP.
		{"gue source port follows the flow", []step{
			func() step {
				in := tcpTo(2000)
				out := gue(in, packets.Options{SrcMAC: lb0.HardwareAddr, DstMAC: rsMAC, Src: lbIP, Dst: rs, SrcPort: gueSport(client, 2000)})
				return step{setup: gueSnap, in: in, wantVerdict: xdpRedirect, wantOut: out, wantReason: ReasonRedirectTUN,
					wantSvc: tcp80, wantBackend: rs, wantNewFlow: true}
			}(),
		}},
		// 1500 bytes + 32 of GUE exceed lb0's MTU; DF set: the client learns 1500 - 32.
		{"gue too big with DF gets frag needed", []step{{
			setup: gueSnap, in: big(true), do: mtu1500, wantVerdict: xdpTX, wantReason: ReasonTxICMPTooBig,
			wantOut: packets.ICMPFragNeeded(packets.Options{SrcMAC: dirMAC, DstMAC: cliMAC, Src: vip, Dst: client}, 1468, big(true)[14:14+64]),
		}}},
		{"ipip too big with DF gets frag needed", []step{{
			setup: ipipSnap, in: big(true), do: mtu1500, wantVerdict: xdpTX, wantReason: ReasonTxICMPTooBig,
			wantOut: packets.ICMPFragNeeded(packets.Options{SrcMAC: dirMAC, DstMAC: cliMAC, Src: vip, Dst: client}, 1480, big(true)[14:14+64]),
		}}},
		{"ip6ip6 too big gets packet too big", []step{{
			setup: ipipSnap6, in: big6, do: mtu1500, wantVerdict: xdpTX, wantReason: ReasonTxICMPTooBig,
			wantOut: packets.ICMPv6TooBig(packets.Options{SrcMAC: dirMAC, DstMAC: cliMAC, Src: vip6, Dst: client6}, 1460, big6[14:14+64]),
		}}},
		{"gue over ipv6 too big gets packet too big", []step{{
			setup: gueSnap6, in: big6, do: mtu1500, wantVerdict: xdpTX, wantReason: ReasonTxICMPTooBig,
			wantOut: packets.ICMPv6TooBig(packets.Options{SrcMAC: dirMAC, DstMAC: cliMAC, Src: vip6, Dst: client6}, 1448, big6[14:14+64]),
		}}},
		// Without DF the stack gets the encapsulated packet, DF clear, still addressed to this
		// host: it forwards it, fragmenting the outer packet.
		{"gue too big without DF goes to the stack to fragment", []step{{
			setup: gueSnap, in: big(false), do: mtu1500, wantVerdict: xdpPass, wantReason: ReasonPassToFragment,
			wantOut: gue(big(false), packets.Options{SrcMAC: cliMAC, DstMAC: dirMAC, Src: lbIP, Dst: rs, ID: 0x1234,
				SrcPort: gueSport(client, 1000)}),
			wantSvc: tcp80, wantBackend: rs, wantNewFlow: true,
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinCPU(t)
			log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
			n.in(t, n.lb, func() {
				sysctl(t, "net/ipv4/conf/all/forwarding", "1")
				sysctl(t, "net/ipv4/conf/lo/forwarding", "1")
				sysctl(t, "net/ipv6/conf/all/forwarding", "1")
				res := &tunResolver{NetlinkResolver{}, goldenResolver()}
				l, err := New(Options{Logger: log, Resolver: res, NoAttach: true, FlowTableSize: 1024})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				defer l.Close()
				runStepsOn(t, l, nil, tt.steps)
			})
		})
	}
}

// TestApplyTunnelUnsupported checks that tunnels the program cannot send are refused as
// ErrUnsupported while the rest of the service is served: GRE, and GUE without a port.
func TestApplyTunnelUnsupported(t *testing.T) {
	for _, tun := range []director.Tunnel{{Type: director.TunnelGRE}, {Type: director.TunnelGUE}} {
		t.Run(tun.Type.String(), func(t *testing.T) {
			l := newTestLoader(t, goldenResolver())
			b := tunBe(netip.MustParseAddr("10.0.0.9"))
			b.Tunnel = tun
			err := l.Apply(context.Background(), *snap(svc(tcp80, "rr", be(beA, 1, true), b)))
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Apply = %v, want ErrUnsupported", err)
			}
			pinCPU(t)
			for p := uint16(1); p <= 4; p++ {
				if got := backendOf(t, l, client, p); got != beA {
					t.Errorf("port %d went to %s, want %s", p, got, beA)
				}
			}
		})
	}
}

// TestGlobalsNAT checks that the loader tells the program to look replies up exactly while a
// service has a NAT backend.
func TestGlobalsNAT(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	flags := func() uint32 {
		t.Helper()
		var v uint32
		if err := l.objs.LbGlobals.Lookup(uint32(0), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	nat := be(beB, 1, true)
	nat.Method = director.MethodNAT
	for _, tc := range []struct {
		name string
		s    *director.Snapshot
		want uint32
	}{
		{"dr only", snap(svc(tcp80, "rr", be(beA, 1, true))), 0},
		{"a nat backend", snap(svc(tcp80, "rr", be(beA, 1, true), nat)), globalFlagNAT},
		{"nat gone", snap(svc(tcp80, "rr", be(beA, 1, true))), 0},
		{"empty", snap(), 0},
	} {
		// The golden resolver has no routes, so the NAT backend itself is not usable here;
		// the flag follows the configuration.
		_ = l.Apply(context.Background(), *tc.s)
		if got := flags(); got != tc.want {
			t.Errorf("%s: lb_globals = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// TestAdoptSetsNATFlag checks that a loader adopting a data plane with a NAT backend looks its
// replies up from the start, before its first Apply, even when the pinned data plane came from a
// version without lb_globals (simulated by clearing the map).
func TestAdoptSetsNATFlag(t *testing.T) {
	requireBPF(t)
	dir := testPinDir(t)
	res := goldenResolver()
	nat := be(beB, 1, true)
	nat.Method = director.MethodNAT
	l1, _ := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 1024, PinDir: dir})
	_ = l1.Apply(context.Background(), *snap(svc(tcp80, "rr", be(beA, 1, true), nat)))
	if err := l1.objs.LbGlobals.Put(uint32(0), uint32(0)); err != nil {
		t.Fatal(err)
	}
	crash(t, l1)

	l2, logs := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 1024, PinDir: dir})
	if !l2.Adopted() {
		t.Fatalf("second loader did not adopt; log:\n%s", logs)
	}
	var v uint32
	if err := l2.objs.LbGlobals.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	if v != globalFlagNAT {
		t.Errorf("lb_globals after adoption = %#x, want %#x", v, globalFlagNAT)
	}
}
