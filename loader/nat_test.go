package loader

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

func natBe(a netip.Addr, port uint16) director.Backend {
	return director.Backend{Addr: a, Port: port, Weight: 1, Method: director.MethodNAT, Up: true}
}

// TestGoldenNAT runs NAT packets both ways through the program in the director's namespace of a
// testNet: the real servers 10.99.0.3 and fd99::3 sit on lb0 with static neighbour entries, and
// the clients' networks are routed via 10.99.0.2 / fd99::2 on lb0. Expected frames are built
// whole by test/packets, so they check the incremental checksum updates against full sums.
func TestGoldenNAT(t *testing.T) {
	n := newTestNet(t)
	lb0 := n.link(t, n.hLB, "lb0").Attrs()
	n.addr6(t, n.hLB, "lb0", "fd99::1/64")
	rsMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x33}
	gwMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x44, 0x44}
	for ip, m := range map[string]net.HardwareAddr{"10.99.0.3": rsMAC, "fd99::3": rsMAC, "10.99.0.2": gwMAC, "fd99::2": gwMAC} {
		fam := netlink.FAMILY_V4
		if netip.MustParseAddr(ip).Is6() {
			fam = netlink.FAMILY_V6
		}
		must(t, n.hLB.NeighSet(&netlink.Neigh{LinkIndex: lb0.Index, Family: fam,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: m}))
	}
	for _, r := range []struct{ dst, gw string }{{"192.0.2.0/24", "10.99.0.2"}, {"2001:db8:2::/64", "fd99::2"}} {
		_, dst, _ := net.ParseCIDR(r.dst)
		must(t, n.hLB.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.gw), LinkIndex: lb0.Index}))
	}
	var (
		rs     = netip.MustParseAddr("10.99.0.3")
		rs6    = netip.MustParseAddr("fd99::3")
		silent = netip.MustParseAddr("10.99.0.4")
	)
	lbMAC := lb0.HardwareAddr
	const rsPort = 8080

	// tcp is a TCP frame; udp a UDP one with its checksum, or none (zero) when noSum.
	tcp := func(smac, dmac net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
		o := packets.Options{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, SrcPort: sport, DstPort: dport,
			TCPFlags: flags, ID: 0x4242, DF: true, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}
		if src.Is6() {
			return packets.TCP6(o)
		}
		return packets.TCP(o)
	}
	udp := func(smac, dmac net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte, noSum bool) []byte {
		o := packets.Options{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Payload: payload}
		if src.Is6() {
			return packets.UDP6(o)
		}
		f := packets.UDP(o)
		if noSum {
			f[14+20+6], f[14+20+7] = 0, 0
		}
		return f
	}
	cliIn := mac("02:00:00:00:00:01") // the frame's destination as it reaches the director
	natSvc := func(key director.ServiceKey, a netip.Addr) *director.Snapshot {
		return snap(svc(key, "rr", natBe(a, rsPort)))
	}
	udp53nat := director.ServiceKey{VIP: vip, Port: 53, Proto: director.UDP}

	// A payload for which the real server's translated datagram sums to 0, sent as 0xffff.
	var onesPayload []byte
	for p := range 1 << 16 {
		pl := binary.BigEndian.AppendUint16(nil, uint16(p))
		f := udp(lbMAC, rsMAC, client, rs, 5353, rsPort, pl, false)
		if binary.BigEndian.Uint16(f[14+20+6:]) == 0xffff {
			onesPayload = pl
			break
		}
	}
	if onesPayload == nil {
		t.Fatal("no payload gives a UDP checksum of 0xffff")
	}

	fwd := func(in, out []byte, r Reason, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: map[Reason]uint32{ReasonTxNAT: xdpTX, ReasonRedirectNAT: xdpRedirect,
			ReasonPassNoNeigh: xdpPass}[r], wantOut: out, wantReason: r, wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	reply := func(in, out []byte, r Reason) step {
		return step{in: in, wantVerdict: map[Reason]uint32{ReasonTxNATReply: xdpTX, ReasonRedirectNATReply: xdpRedirect}[r],
			wantOut: out, wantReason: r, ingress: uint32(lb0.Index)}
	}
	with := func(s step, f func(*step)) step { f(&s); return s }
	// bigTCP is a 1500-byte TCP segment from the client to dst:dport.
	bigTCP := func(smac, dmac net.HardwareAddr, src, dst netip.Addr, dport uint16, df bool) []byte {
		return packets.TCP(packets.Options{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, SrcPort: 1000, DstPort: dport,
			TCPFlags: packets.ACK, ID: 0x4242, DF: df, Payload: make([]byte, 1500-40)})
	}
	// linkMTU sets the MTU of lb0, the way to the real servers, for the subtest. (A route's
	// MTU would not do: forwarding ignores it unless locked, and so does bpf_fib_lookup.)
	linkMTU := func(mtu int) func() {
		return func() {
			lk := n.link(t, n.hLB, "lb0")
			must(t, n.hLB.LinkSetMTU(lk, mtu))
			t.Cleanup(func() { must(t, n.hLB.LinkSetMTU(lk, 1500)) })
		}
	}
	var cur *Loader // the subtest's loader
	// inTable checks which reverse table holds the translation of client:1000's flow to rs.
	inTable := func(want string) func() {
		return func() {
			k := flowKeyOf(rs, client, rsPort, 1000, director.TCP)
			var v lbNatValue
			got := "none"
			if cur.objs.NatFlows.Lookup(&k, &v) == nil {
				got = "nat_flows"
			} else if cur.objs.NatUnconfirmed.Lookup(&k, &v) == nil {
				got = "nat_unconfirmed"
			}
			if got != want {
				t.Errorf("reverse translation in %s, want %s", got, want)
			}
		}
	}

	tests := []struct {
		name  string
		steps []step
	}{
		{"tcp handshake both ways", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp80, rs, true), func(s *step) { s.setup = natSvc(tcp80, rs) }),
			with(reply(tcp(rsMAC, lbMAC, rs, client, rsPort, 1000, packets.SYN|packets.ACK),
				tcp(lbMAC, gwMAC, vip, client, 80, 1000, packets.SYN|packets.ACK), ReasonTxNATReply),
				func(s *step) { s.do = inTable("nat_unconfirmed") }),
			fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.ACK), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.ACK),
				ReasonRedirectNAT, tcp80, rs, false),
			// Confirmed: the reply's translation moved to nat_flows with the flow, where a
			// flood of new flows cannot evict it.
			with(reply(tcp(rsMAC, lbMAC, rs, client, rsPort, 1000, packets.ACK|packets.PSH),
				tcp(lbMAC, gwMAC, vip, client, 80, 1000, packets.ACK|packets.PSH), ReasonTxNATReply),
				func(s *step) { s.do = inTable("nat_flows") }),
		}},
		{"tx when the real server is behind the ingress interface", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.SYN),
				ReasonTxNAT, tcp80, rs, true), func(s *step) { s.setup, s.ingress = natSvc(tcp80, rs), uint32(lb0.Index) }),
		}},
		{"udp", []step{
			with(fwd(udp(cliMAC, cliIn, client, vip, 5353, 53, []byte{1, 2, 3}, false), udp(lbMAC, rsMAC, client, rs, 5353, rsPort, []byte{1, 2, 3}, false),
				ReasonRedirectNAT, udp53nat, rs, true), func(s *step) { s.setup = natSvc(udp53nat, rs) }),
			reply(udp(rsMAC, lbMAC, rs, client, rsPort, 5353, []byte{4, 5}, false),
				udp(lbMAC, gwMAC, vip, client, 53, 5353, []byte{4, 5}, false), ReasonTxNATReply),
		}},
		{"udp without checksum keeps none", []step{
			with(fwd(udp(cliMAC, cliIn, client, vip, 5353, 53, []byte{1, 2, 3}, true), udp(lbMAC, rsMAC, client, rs, 5353, rsPort, []byte{1, 2, 3}, true),
				ReasonRedirectNAT, udp53nat, rs, true), func(s *step) { s.setup = natSvc(udp53nat, rs) }),
			reply(udp(rsMAC, lbMAC, rs, client, rsPort, 5353, []byte{4, 5}, true),
				udp(lbMAC, gwMAC, vip, client, 53, 5353, []byte{4, 5}, true), ReasonTxNATReply),
		}},
		{"udp checksum summing to zero is sent as ones", []step{
			with(fwd(udp(cliMAC, cliIn, client, vip, 5353, 53, onesPayload, false), udp(lbMAC, rsMAC, client, rs, 5353, rsPort, onesPayload, false),
				ReasonRedirectNAT, udp53nat, rs, true), func(s *step) { s.setup = natSvc(udp53nat, rs) }),
		}},
		{"ipv6 tcp both ways", []step{
			with(fwd(tcp(cliMAC, cliIn, client6, vip6, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client6, rs6, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp6, rs6, true), func(s *step) { s.setup = natSvc(tcp6, rs6) }),
			reply(tcp(rsMAC, lbMAC, rs6, client6, rsPort, 1000, packets.SYN|packets.ACK),
				tcp(lbMAC, gwMAC, vip6, client6, 80, 1000, packets.SYN|packets.ACK), ReasonTxNATReply),
		}},
		{"ipv6 udp both ways", []step{
			with(fwd(udp(cliMAC, cliIn, client6, vip6, 5353, 53, []byte{9}, false), udp(lbMAC, rsMAC, client6, rs6, 5353, rsPort, []byte{9}, false),
				ReasonRedirectNAT, udp6, rs6, true), func(s *step) { s.setup = natSvc(udp6, rs6) }),
			reply(udp(rsMAC, lbMAC, rs6, client6, rsPort, 5353, []byte{8, 7}, false),
				udp(lbMAC, gwMAC, vip6, client6, 53, 5353, []byte{8, 7}, false), ReasonTxNATReply),
		}},
		// keepalived's all-ports service: real servers of port 0 take the port asked for.
		{"port-0 service and real server keep the port both ways", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 8443, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, 8443, packets.SYN),
				ReasonRedirectNAT, tcpAll, rs, true), func(s *step) { s.setup = snap(persistent(svc(tcpAll, "rr", natBe(rs, 0)), 60e9, 0)) }),
			reply(tcp(rsMAC, lbMAC, rs, client, 8443, 1000, packets.SYN|packets.ACK),
				tcp(lbMAC, gwMAC, vip, client, 8443, 1000, packets.SYN|packets.ACK), ReasonTxNATReply),
			fwd(tcp(cliMAC, cliIn, client, vip, 1001, 22, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1001, 22, packets.SYN),
				ReasonRedirectNAT, tcpAll, rs, true),
			reply(tcp(rsMAC, lbMAC, rs, client, 22, 1001, packets.SYN|packets.ACK),
				tcp(lbMAC, gwMAC, vip, client, 22, 1001, packets.SYN|packets.ACK), ReasonTxNATReply),
		}},
		{"reply of no flow passes untouched", []step{{
			setup: natSvc(tcp80, rs), ingress: uint32(lb0.Index),
			in:          tcp(rsMAC, lbMAC, rs, client, rsPort, 1001, packets.SYN|packets.ACK),
			wantVerdict: xdpPass, wantReason: ReasonPassNotVIP,
		}}},
		{"reply from another port passes untouched", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp80, rs, true), func(s *step) { s.setup = natSvc(tcp80, rs) }),
			{in: tcp(rsMAC, lbMAC, rs, client, 22, 1000, packets.SYN|packets.ACK), ingress: uint32(lb0.Index),
				wantVerdict: xdpPass, wantReason: ReasonPassNotVIP},
		}},
		// ICMP errors about NAT flows are translated as IPVS translates them: the quoted
		// packet whole (addresses, ports, both checksums) and the outer address.
		{"frag needed from the client side reaches the nat backend", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp80, rs, true), func(s *step) { s.setup = natSvc(tcp80, rs) }),
			fwd(fragNeeded(quoted(vip, client, 80, 1000, false, 20)),
				packets.ICMPFragNeeded(packets.Options{SrcMAC: lbMAC, DstMAC: rsMAC, Src: router, Dst: rs}, 1400,
					quoted(rs, client, rsPort, 1000, false, 20)), ReasonRedirectNAT, tcp80, rs, false),
			// Quoting only the ports: the quoted checksum is not there to update.
			fwd(fragNeeded(quoted(vip, client, 80, 1000, false, 8)),
				packets.ICMPFragNeeded(packets.Options{SrcMAC: lbMAC, DstMAC: rsMAC, Src: router, Dst: rs}, 1400,
					quoted(rs, client, rsPort, 1000, false, 8)), ReasonRedirectNAT, tcp80, rs, false),
		}},
		{"port unreachable from the real server reaches the client from the vip", []step{
			with(fwd(udp(cliMAC, cliIn, client, vip, 5353, 53, []byte("q"), false), udp(lbMAC, rsMAC, client, rs, 5353, rsPort, []byte("q"), false),
				ReasonRedirectNAT, udp53nat, rs, true), func(s *step) { s.setup = natSvc(udp53nat, rs) }),
			reply(icmpErr(packets.Options{SrcMAC: rsMAC, DstMAC: lbMAC, Src: rs, Dst: client}, 3, 3, quoted(client, rs, 5353, rsPort, true, 8)),
				icmpErr(packets.Options{SrcMAC: lbMAC, DstMAC: gwMAC, Src: vip, Dst: client}, 3, 3, quoted(client, vip, 5353, 53, true, 8)),
				ReasonTxNATReply),
		}},
		{"time exceeded from a router on the real server side", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client, rs, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp80, rs, true), func(s *step) { s.setup = natSvc(tcp80, rs) }),
			reply(icmpErr(packets.Options{SrcMAC: rsMAC, DstMAC: lbMAC, Src: router, Dst: client}, 11, 0, quoted(client, rs, 1000, rsPort, false, 20)),
				icmpErr(packets.Options{SrcMAC: lbMAC, DstMAC: gwMAC, Src: vip, Dst: client}, 11, 0, quoted(client, vip, 1000, 80, false, 20)),
				ReasonTxNATReply),
		}},
		{"packet too big from the real server side over ipv6", []step{
			with(fwd(tcp(cliMAC, cliIn, client6, vip6, 1000, 80, packets.SYN), tcp(lbMAC, rsMAC, client6, rs6, 1000, rsPort, packets.SYN),
				ReasonRedirectNAT, tcp6, rs6, true), func(s *step) { s.setup = natSvc(tcp6, rs6) }),
			reply(packets.ICMPv6TooBig(packets.Options{SrcMAC: rsMAC, DstMAC: lbMAC, Src: netip.MustParseAddr("fd99::9"), Dst: client6}, 1280,
				quoted(client6, rs6, 1000, rsPort, false, 20)),
				packets.ICMPv6TooBig(packets.Options{SrcMAC: lbMAC, DstMAC: gwMAC, Src: vip6, Dst: client6}, 1280,
					quoted(client6, vip6, 1000, 80, false, 20)),
				ReasonTxNATReply),
		}},
		// A 1500-byte segment is too big for a real server side with an MTU of 1400.
		{"too big with DF gets frag needed from the vip", []step{{
			setup: natSvc(tcp80, rs), in: bigTCP(cliMAC, cliIn, client, vip, 80, true), do: linkMTU(1400),
			wantVerdict: xdpTX, wantReason: ReasonTxICMPTooBig,
			wantOut: packets.ICMPFragNeeded(packets.Options{SrcMAC: cliIn, DstMAC: cliMAC, Src: vip, Dst: client}, 1400,
				bigTCP(cliMAC, cliIn, client, vip, 80, true)[14:14+64]),
		}}},
		{"too big without DF goes to the stack translated", []step{{
			setup: natSvc(tcp80, rs), in: bigTCP(cliMAC, cliIn, client, vip, 80, false), do: linkMTU(1400),
			wantVerdict: xdpPass, wantReason: ReasonPassToFragment, wantOut: bigTCP(cliMAC, cliIn, client, rs, rsPort, false),
			wantSvc: tcp80, wantBackend: rs, wantNewFlow: true,
		}}},
		{"an error about no nat flow passes", []step{{
			setup:       natSvc(tcp80, rs),
			in:          icmpErr(packets.Options{SrcMAC: rsMAC, DstMAC: lbMAC, Src: rs, Dst: client}, 3, 3, quoted(client, rs, 1001, rsPort, false, 8)),
			wantVerdict: xdpPass, wantReason: ReasonPassNotVIP, ingress: uint32(lb0.Index),
		}}},
		{"no neighbour passes the translated packet", []step{
			with(fwd(tcp(cliMAC, cliIn, client, vip, 1000, 80, packets.SYN), tcp(cliMAC, cliIn, client, silent, 1000, rsPort, packets.SYN),
				ReasonPassNoNeigh, tcp80, silent, true), func(s *step) { s.setup = natSvc(tcp80, silent) }),
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
				cur = l
				runStepsOn(t, l, nil, tt.steps)
			})
		})
	}
}

// icmpErr returns an Ethernet/IPv4 ICMP error of type and code from o.Src to o.Dst quoting
// quoted (RFC 792).
func icmpErr(o packets.Options, typ, code byte, quoted []byte) []byte {
	f := packets.ICMPFragNeeded(o, 0, quoted)
	icmp := f[14+20:]
	icmp[0], icmp[1], icmp[2], icmp[3] = typ, code, 0, 0
	binary.BigEndian.PutUint16(icmp[2:], packets.Checksum(icmp))
	return f
}
