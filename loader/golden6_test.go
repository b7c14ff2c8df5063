package loader

import (
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

var (
	vip6    = netip.MustParseAddr("2001:db8:100::10")
	client6 = netip.MustParseAddr("2001:db8:2::7")
	beA6    = netip.MustParseAddr("2001:db8:1::1")
	beB6    = netip.MustParseAddr("2001:db8:1::2")

	tcp6 = director.ServiceKey{VIP: vip6, Port: 80, Proto: director.TCP}
	udp6 = director.ServiceKey{VIP: vip6, Port: 53, Proto: director.UDP}
)

// tcp6To is an IPv6 TCP frame from the client's port sport to the VIP's port 80.
func tcp6To(sport uint16, mod ...func(*packets.Options)) []byte {
	o := packets.Options{SrcMAC: cliMAC, DstMAC: mac("02:00:00:00:00:01"), Src: client6, Dst: vip6,
		SrcPort: sport, DstPort: 80, TCPFlags: packets.SYN, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}
	for _, m := range mod {
		m(&o)
	}
	return packets.TCP6(o)
}

func udp6To(dport uint16, mod ...func(*packets.Options)) []byte {
	o := packets.Options{SrcMAC: cliMAC, Src: client6, Dst: vip6, SrcPort: 5353, DstPort: dport,
		Payload: []byte{1, 2, 3, 4, 5}}
	for _, m := range mod {
		m(&o)
	}
	return packets.UDP6(o)
}

func be6(a netip.Addr, weight int, up bool) director.Backend {
	return director.Backend{Addr: a, Port: 80, Weight: weight, Method: director.MethodDR, Up: up}
}

func exts(e ...packets.Ext) func(*packets.Options) {
	return func(o *packets.Options) { o.ExtHeaders = e }
}

func TestGoldenIPv6(t *testing.T) {
	requireBPF(t)
	rrAB := snap(svc(tcp6, "rr", be6(beA6, 1, true), be6(beB6, 1, true)))
	fwd := func(in []byte, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	first := func(s step) step { s.setup = rrAB; return s }
	pass := func(in []byte, r Reason) step {
		return step{setup: rrAB, in: in, wantVerdict: xdpPass, wantReason: r}
	}
	hbh := packets.Ext{Type: 0, Body: []byte{1, 4, 0, 0, 0, 0}} // PadN
	dst := packets.Ext{Type: 60}
	rt := packets.Ext{Type: 43, Body: []byte{0, 0}} // type 0, segments left 0
	ip6 := 14                                       // offset of the IPv6 header

	tests := []struct {
		name  string
		steps []step
	}{
		{"dr new flow", []step{first(fwd(tcp6To(1000), tcp6, beA6, true))}},
		{"udp service", []step{func() step {
			s := fwd(udp6To(53), udp6, beB6, true)
			s.setup = snap(svc(udp6, "rr", be6(beB6, 1, true)))
			return s
		}()}},
		{"flow sticks and round robin moves on", []step{
			first(fwd(tcp6To(1000), tcp6, beA6, true)),
			fwd(tcp6To(1000, func(o *packets.Options) { o.TCPFlags = packets.ACK }), tcp6, beA6, false),
			fwd(tcp6To(1001), tcp6, beB6, true),
			fwd(tcp6To(1000, func(o *packets.Options) { o.TCPFlags = packets.ACK }), tcp6, beA6, false),
		}},
		{"ipv4 service of the same port is not hit", []step{pass(tcp6To(1000, func(o *packets.Options) {
			o.Dst = netip.MustParseAddr("::ffff:198.51.100.10")
		}), ReasonPassNotVIP)}},
		{"hop-by-hop, routing and destination options forwarded", []step{
			first(fwd(tcp6To(1000, exts(hbh, rt, dst)), tcp6, beA6, true))}},
		{"atomic fragment forwarded", []step{
			first(fwd(tcp6To(1000, exts(packets.FragmentExt(0, false, 9))), tcp6, beA6, true))}},
		{"six extension headers forwarded", []step{
			first(fwd(tcp6To(1000, exts(hbh, dst, dst, dst, dst, dst)), tcp6, beA6, true))}},
		{"seven extension headers passed", []step{
			pass(tcp6To(1000, exts(hbh, dst, dst, dst, dst, dst, dst)), ReasonPassExtHdrs)}},
		{"first fragment", []step{pass(tcp6To(1000, exts(packets.FragmentExt(0, true, 9))), ReasonPassFragment)}},
		{"non-first fragment", []step{pass(tcp6To(1000, exts(packets.FragmentExt(185, false, 9))), ReasonPassFragment)}},
		{"fragment after options", []step{pass(tcp6To(1000, exts(hbh, packets.FragmentExt(185, true, 9))), ReasonPassFragment)}},
		{"icmpv6 to VIP", []step{pass(patch(udp6To(80), ip6+6, 58), ReasonPassNotL4)}},
		{"esp to VIP", []step{pass(patch(udp6To(80), ip6+6, 50), ReasonPassNotL4)}},
		{"udp to tcp service", []step{pass(udp6To(80), ReasonPassNotVIP)}},
		{"truncated ipv6 header", []step{pass(tcp6To(1000)[:ip6+39], ReasonPassTruncated)}},
		{"payload longer than frame", []step{pass(tcp6To(1000)[:ip6+40+20+3], ReasonPassTruncated)}},
		{"jumbogram", []step{pass(patch(tcp6To(1000), ip6+4, 0, 0), ReasonPassBadIP)}},
		{"version 4 in ipv6 frame", []step{pass(patch(tcp6To(1000), ip6, 0x40), ReasonPassBadIP)}},
		// Payload length covers the options header's first bytes but not its declared length.
		{"extension header past payload", []step{pass(patch(tcp6To(1000, exts(hbh), func(o *packets.Options) {
			o.Payload = nil
		})[:ip6+40+8], ip6+4, 0, 8+0), ReasonPassTruncated)}},
		{"extension header past frame", []step{pass(tcp6To(1000, exts(hbh))[:ip6+40+1], ReasonPassTruncated)}},
		{"tcp header past payload length", []step{pass(append(patch(tcp6To(1000, func(o *packets.Options) {
			o.Payload = nil
		})[:ip6+40+10], ip6+4, 0, 10), make([]byte, 10)...), ReasonPassTruncated)}},
		{"ethernet padding forwarded", []step{first(func() step {
			in := append(tcp6To(1000, func(o *packets.Options) { o.Payload = nil }), 0, 0, 0, 0, 0, 0)
			return fwd(in, tcp6, beA6, true)
		}())}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

// TestMaglevConsistentIPv6 checks that the program hashes IPv6 clients as SourceHash does.
func TestMaglevConsistentIPv6(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp6, "mh", be6(beA6, 1, true), be6(beB6, 1, true))))
	table := readTable(t, l, tcp6)
	idToAddr := map[uint32]netip.Addr{}
	for ap, b := range l.services[tcp6].backends {
		idToAddr[b.id] = ap.Addr()
	}
	seen := map[netip.Addr]int{}
	for i := range 32 {
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i * 5), 8: byte(i)})
		want := idToAddr[table[SourceHash(src)%uint32(len(table))]]
		for p := uint16(1); p <= 4; p++ {
			in := packets.TCP6(packets.Options{Src: src, Dst: vip6, SrcPort: 40000 + p, DstPort: 80, TCPFlags: packets.SYN})
			verdict, out := run(t, l.Program(), in, loIfindex)
			if verdict != xdpTX {
				t.Fatalf("verdict %d for %s, want TX", verdict, src)
			}
			if got := string(out[0:6]); got != string(beMACs[want]) {
				t.Fatalf("client %s port %d went to %x; SourceHash predicts %s", src, 40000+p, out[0:6], want)
			}
		}
		seen[want]++
	}
	if len(seen) != 2 {
		t.Errorf("32 clients reached %d of 2 backends: %v", len(seen), seen)
	}
}
