package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/director"
	harness "github.com/sluice-lb/sluice/test/netns"
	"github.com/sluice-lb/sluice/test/packets"
)

// BenchmarkPath measures the per-packet cost of each path through the program with
// BPF_PROG_TEST_RUN, per forwarding method and address family: an established flow's packet,
// the first packet of a new flow, and a packet to no VIP (miss); and, for a persistent service,
// a new flow of a new client (which creates the client's template too) and a new flow of a known
// client (which follows its template).
//
// The kernel does not restore the packet between the repeats of one test run, and TUN and NAT
// change it (a repeat would be another path), so every path runs each packet once, a test run per
// b.N iteration: ns/packet is the kernel-timed duration of that one run, and net-ns/packet the
// same minus a run of a program that only returns (the fixed cost of timing a run of one). New
// flows are distinct packets. TUN and NAT look up the kernel's FIB, so the program runs inside a
// network namespace with a real server on a veth and static neighbour entries.
func BenchmarkPath(b *testing.B) {
	requireBPF(b)
	bn := newBenchNet(b)
	null, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_null", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { null.Close() })

	type family struct {
		name    string
		key     director.ServiceKey
		rs      netip.Addr
		frame   func(src, dst netip.Addr, sport uint16, flags uint8) []byte
		clients func(i int) netip.Addr // distinct client addresses
	}
	fams := []family{
		{"ipv4", tcp80, bn.rs4, func(src, dst netip.Addr, sport uint16, flags uint8) []byte {
			return tcpTo(sport, func(o *packets.Options) { o.Src, o.Dst, o.TCPFlags = src, dst, flags })
		}, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}) }},
		{"ipv6", tcp6, bn.rs6, func(src, dst netip.Addr, sport uint16, flags uint8) []byte {
			return tcp6To(sport, func(o *packets.Options) { o.Src, o.Dst, o.TCPFlags = src, dst, flags })
		}, func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		}},
	}
	methods := []struct {
		name string
		m    director.Method
	}{{"dr", director.MethodDR}, {"tun", director.MethodTUN}, {"nat", director.MethodNAT}}

	for _, fam := range fams {
		for _, method := range methods {
			backend := director.Backend{Addr: fam.rs, Port: 80, Weight: 1, Method: method.m, Up: true}
			plain := svc(fam.key, "rr", backend)
			sticky := persistent(svc(fam.key, "rr", backend), time.Hour, 0)
			var port uint16 // new flows: a fresh client port each, wrapping after 64k
			next := func() uint16 { port++; return 1024 + port%60000 }
			client := func() netip.Addr { return fam.clients(1) }
			for _, bc := range []struct {
				name string
				svc  director.Service
				// frame returns the packet of iteration i; warm, when set, runs first, untimed.
				frame func(i int) []byte
				warm  func(prog *ebpf.Program)
				want  uint32
			}{
				{name: "established", svc: plain,
					frame: func(int) []byte { return fam.frame(client(), fam.key.VIP, 999, packets.ACK) },
					warm: func(prog *ebpf.Program) {
						f := fam.frame(client(), fam.key.VIP, 999, packets.ACK)
						for range 2 { // the second packet confirms the flow
							bn.runOnce(b, prog, f, 0)
						}
					}, want: xdpRedirect},
				{name: "new-flow", svc: plain,
					frame: func(int) []byte { return fam.frame(client(), fam.key.VIP, next(), packets.SYN) }, want: xdpRedirect},
				{name: "miss", svc: plain,
					frame: func(int) []byte { return fam.frame(client(), fam.key.VIP.Next(), 999, packets.ACK) }, want: xdpPass},
				{name: "persistent-new-client", svc: sticky,
					frame: func(i int) []byte { return fam.frame(fam.clients(i+2), fam.key.VIP, 1000, packets.SYN) }, want: xdpRedirect},
				{name: "persistent-known-client", svc: sticky,
					frame: func(int) []byte { return fam.frame(client(), fam.key.VIP, next(), packets.SYN) },
					warm: func(prog *ebpf.Program) {
						bn.runOnce(b, prog, fam.frame(client(), fam.key.VIP, 1, packets.SYN), 0)
					}, want: xdpRedirect},
			} {
				b.Run(fam.name+"/"+method.name+"/"+bc.name, func(b *testing.B) {
					// TUN and NAT find the tunnel's source and the route in the namespace's
					// kernel tables, DR its next hop in the fixed ones.
					l := newTestLoader(b, &tunResolver{NetlinkResolver{}, bn.resolver})
					prog := l.Program()
					if err := bn.ns.Do(func() error {
						if err := l.Apply(b.Context(), *snap(bc.svc)); err != nil {
							return err
						}
						if bc.warm != nil {
							bc.warm(prog)
						}
						var total, over time.Duration
						i := 0
						for b.Loop() {
							f := bc.frame(i)
							total += bn.runOnce(b, prog, f, bc.want)
							over += bn.runOnce(b, null, f, xdpPass)
							i++
						}
						b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
						b.ReportMetric(float64((total-over).Nanoseconds())/float64(b.N), "net-ns/packet")
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				})
			}
		}
	}
}

// benchNet is a namespace in which the program forwards for real: a real server at 10.99.0.3
// and fd99::3 on a veth, with static neighbour entries, for TUN's and NAT's FIB lookups.
type benchNet struct {
	ns       *harness.NS
	rs4, rs6 netip.Addr
	resolver *fakeResolver
}

func newBenchNet(b *testing.B) *benchNet {
	b.Helper()
	env := harness.ForTest(b)
	lb, err := env.NewNS("lb")
	if err != nil {
		b.Fatal(err)
	}
	rs, err := env.NewNS("rs")
	if err != nil {
		b.Fatal(err)
	}
	bn := &benchNet{ns: lb, rs4: netip.MustParseAddr("10.99.0.3"), rs6: netip.MustParseAddr("fd99::3")}
	rsMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x33}
	steps := []func() error{
		func() error { return lb.Sysctl("net.ipv6.conf.default.accept_dad", "0") },
		func() error { return env.Veth(lb, "lb0", rs, "rs0") },
		func() error { return lb.AddAddr("lb0", netip.MustParsePrefix("10.99.0.1/24")) },
		func() error { return lb.AddAddr("lb0", netip.MustParsePrefix("fd99::1/64")) },
		func() error { return lb.Sysctl("net.ipv4.ip_forward", "1") },
		func() error { return lb.Sysctl("net.ipv4.conf.all.forwarding", "1") },
		func() error { return lb.Sysctl("net.ipv4.conf.lo.forwarding", "1") },
		func() error { return lb.Sysctl("net.ipv6.conf.all.forwarding", "1") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			b.Fatal(err)
		}
	}
	lb0, err := lb.Link("lb0")
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range []netip.Addr{bn.rs4, bn.rs6} {
		fam := netlink.FAMILY_V4
		if a.Is6() {
			fam = netlink.FAMILY_V6
		}
		if err := lb.Netlink().NeighSet(&netlink.Neigh{LinkIndex: lb0.Attrs().Index, Family: fam,
			State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: rsMAC}); err != nil {
			b.Fatal(err)
		}
	}
	// DR's next hop comes from the resolver: the real server behind lb0.
	bn.resolver = newFakeResolver()
	for _, a := range []netip.Addr{bn.rs4, bn.rs6} {
		bn.resolver.set(a, NextHop{Ifindex: lb0.Attrs().Index, SrcMAC: lb0.Attrs().HardwareAddr, DstMAC: rsMAC})
	}
	bn.resolver.vips[vip] = loIfindex
	bn.resolver.vips[vip6] = loIfindex
	return bn
}

// runOnce runs prog once on frame and returns the kernel-timed duration; the verdict must be
// want (0: any).
func (bn *benchNet) runOnce(b *testing.B, prog *ebpf.Program, frame []byte, want uint32) time.Duration {
	ret, d, err := prog.Benchmark(frame, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	if want != 0 && ret != want {
		b.Fatalf("verdict %d, want %d", ret, want)
	}
	return d
}
