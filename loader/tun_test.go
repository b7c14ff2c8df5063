package loader

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

func tunBe(a netip.Addr) director.Backend {
	return director.Backend{Addr: a, Port: 80, Weight: 1, Method: director.MethodTUN, Up: true}
}

// sysctl writes a sysctl of the calling thread's network namespace.
func sysctl(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/"+path, []byte(value), 0o644); err != nil {
		t.Fatalf("sysctl %s=%s: %v", path, value, err)
	}
}

// TestGoldenTUN runs TUN packets through the program in the director's namespace of a testNet,
// where bpf_fib_lookup routes the outer header with the kernel's real FIB and neighbour table:
// 10.99.0.3 and fd99::3 have static neighbour entries on lb0, 10.99.0.4 and fd99::4 none.
func TestGoldenTUN(t *testing.T) {
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
		silent = netip.MustParseAddr("10.99.0.4")
	)
	in := tcpTo(1000, func(o *packets.Options) { o.DF, o.ID = true, 0x1234 })
	in6 := tcp6To(1000, func(o *packets.Options) { o.FlowLabel = 0x12345 })
	ipip := func(in []byte, src, dst netip.Addr, smac, dmac net.HardwareAddr) []byte {
		return packets.IPIP(packets.Options{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, TTL: 64,
			ID: 0x1234, DF: true}, in[14:])
	}
	ip6ip6 := func(in []byte, src, dst netip.Addr, smac, dmac net.HardwareAddr) []byte {
		out := packets.IP6IP6(packets.Options{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, TTL: 64,
			FlowLabel: 0x12345}, in[14:])
		return out
	}
	fwd := func(in, out []byte, r Reason, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: map[Reason]uint32{ReasonTxTUN: xdpTX, ReasonRedirectTUN: xdpRedirect,
			ReasonPassNoNeigh: xdpPass}[r], wantOut: out, wantReason: r, wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	with := func(s step, f func(*step)) step { f(&s); return s }
	tun4 := snap(svc(tcp80, "rr", tunBe(rs)))
	tun6 := snap(svc(tcp6, "rr", tunBe(rs6)))

	tests := []struct {
		name  string
		steps []step
	}{
		{"ipip redirect", []step{
			with(fwd(in, ipip(in, lbIP, rs, lb0.HardwareAddr, rsMAC), ReasonRedirectTUN, tcp80, rs, true),
				func(s *step) { s.setup = tun4 }),
			fwd(in, ipip(in, lbIP, rs, lb0.HardwareAddr, rsMAC), ReasonRedirectTUN, tcp80, rs, false),
		}},
		{"ipip tx on the ingress interface", []step{
			with(fwd(in, ipip(in, lbIP, rs, lb0.HardwareAddr, rsMAC), ReasonTxTUN, tcp80, rs, true),
				func(s *step) { s.setup, s.ingress = tun4, uint32(lb0.Index) }),
		}},
		{"ip6ip6 redirect", []step{
			with(fwd(in6, ip6ip6(in6, lbIP6, rs6, lb0.HardwareAddr, rsMAC), ReasonRedirectTUN, tcp6, rs6, true),
				func(s *step) { s.setup = tun6 }),
		}},
		// The frame stays addressed to this host so that the stack forwards it, resolving.
		{"no neighbour passes the encapsulated packet", []step{
			with(fwd(in, ipip(in, lbIP, silent, net.HardwareAddr(in[6:12]), net.HardwareAddr(in[0:6])),
				ReasonPassNoNeigh, tcp80, silent, true),
				func(s *step) { s.setup = snap(svc(tcp80, "rr", tunBe(silent))) }),
		}},
		// Without DF the stack gets it encapsulated, DF clear, and fragments the outer packet;
		// with DF the client gets frag-needed (gue_test.go).
		{"frame too big for the route's MTU", []step{func() step {
			big := tcpTo(1000, func(o *packets.Options) { o.Payload = make([]byte, 1500-40) })
			return step{
				setup:       tun4,
				in:          big,
				do:          func() { must(t, netlink.LinkSetMTU(mustLink(t, "lb0"), 1500)) },
				wantVerdict: xdpPass, wantReason: ReasonPassToFragment,
				wantOut: packets.IPIP(packets.Options{SrcMAC: net.HardwareAddr(big[6:12]), DstMAC: net.HardwareAddr(big[0:6]),
					Src: lbIP, Dst: rs, TTL: 64}, big[14:]),
				wantSvc: tcp80, wantBackend: rs, wantNewFlow: true,
			}
		}()}},
		{"forwarding disabled", []step{{
			setup: tun4, in: in, wantVerdict: xdpDrop, wantReason: ReasonDropNoRoute,
			do: func() { sysctl(t, "net/ipv4/conf/lo/forwarding", "0") },
		}}},
		// The error is about the packet the real server sent to the client from the VIP.
		{"icmp frag needed follows the flow into the tunnel", []step{
			with(fwd(in, ipip(in, lbIP, rs, lb0.HardwareAddr, rsMAC), ReasonRedirectTUN, tcp80, rs, true),
				func(s *step) { s.setup = tun4 }),
			func() step {
				icmp := fragNeeded(quoted(vip, client, 80, 1000, false, 8))
				out := packets.IPIP(packets.Options{SrcMAC: lb0.HardwareAddr, DstMAC: rsMAC, Src: lbIP, Dst: rs, TTL: 64}, icmp[14:])
				return fwd(icmp, out, ReasonRedirectTUN, tcp80, rs, false)
			}(),
		}},
		{"tun and dr backends of one service", []step{
			with(fwd(in, ipip(in, lbIP, rs, lb0.HardwareAddr, rsMAC), ReasonRedirectTUN, tcp80, rs, true),
				func(s *step) { s.setup = snap(svc(tcp80, "rr", tunBe(rs), be(beA, 1, true))) }),
		}},
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

// tunResolver resolves tunnel sources from the kernel and DR next hops from the golden tables.
type tunResolver struct {
	NetlinkResolver
	golden *fakeResolver
}

func (r *tunResolver) NextHop(ctx context.Context, a netip.Addr) (NextHop, error) {
	return r.golden.NextHop(ctx, a)
}

func mustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	lk, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return lk
}
