package loader

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// XDP verdicts.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// loIfindex is the loopback interface, a real device Program.Run accepts as ingress.
const loIfindex = 1

var (
	vip    = netip.MustParseAddr("198.51.100.10")
	client = netip.MustParseAddr("192.0.2.7")
	lbMAC  = mac("02:00:00:00:00:aa") // the director's MAC, toward the real servers
	cliMAC = mac("02:00:00:00:00:cc") // the client-side router

	beA = netip.MustParseAddr("10.1.0.1")
	beB = netip.MustParseAddr("10.1.0.2")
	beC = netip.MustParseAddr("10.1.0.3")
	beR = netip.MustParseAddr("10.2.0.1") // on another interface: redirected

	beMACs = map[netip.Addr]net.HardwareAddr{
		beA:  mac("02:00:00:00:01:01"),
		beB:  mac("02:00:00:00:01:02"),
		beC:  mac("02:00:00:00:01:03"),
		beR:  mac("02:00:00:00:02:01"),
		beA6: mac("02:00:00:00:06:01"),
		beB6: mac("02:00:00:00:06:02"),
	}

	tcp80 = director.ServiceKey{VIP: vip, Port: 80, Proto: director.TCP}
	udp53 = director.ServiceKey{VIP: vip, Port: 53, Proto: director.UDP}
)

// goldenResolver puts beR behind ifindex 42, everything else behind loopback.
func goldenResolver() *fakeResolver {
	r := newFakeResolver()
	for a, m := range beMACs {
		h := NextHop{Ifindex: loIfindex, SrcMAC: lbMAC, DstMAC: m}
		if a == beR {
			h.Ifindex = 42
		}
		r.set(a, h)
	}
	r.vips[vip] = loIfindex
	r.vips[vip6] = loIfindex
	return r
}

func be(a netip.Addr, weight int, up bool) director.Backend {
	return director.Backend{Addr: a, Port: 80, Weight: weight, Method: director.MethodDR, Up: up}
}

func snap(svcs ...director.Service) *director.Snapshot {
	return &director.Snapshot{Services: svcs}
}

func svc(key director.ServiceKey, sched string, bes ...director.Backend) director.Service {
	return director.Service{Key: key, Scheduler: sched, Backends: bes}
}

// tcpTo is a TCP frame from the client's port sport to the VIP's port 80.
func tcpTo(sport uint16, mod ...func(*packets.Options)) []byte {
	o := packets.Options{SrcMAC: cliMAC, DstMAC: mac("02:00:00:00:00:01"), Src: client, Dst: vip,
		SrcPort: sport, DstPort: 80, TCPFlags: packets.SYN, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}
	for _, m := range mod {
		m(&o)
	}
	return packets.TCP(o)
}

func udpTo(dport uint16, mod ...func(*packets.Options)) []byte {
	o := packets.Options{SrcMAC: cliMAC, Src: client, Dst: vip, SrcPort: 5353, DstPort: dport,
		Payload: []byte{1, 2, 3, 4, 5}}
	for _, m := range mod {
		m(&o)
	}
	return packets.UDP(o)
}

// dr is in as DR forwards it to the backend at a: new MACs, every other byte unchanged.
func dr(in []byte, a netip.Addr) []byte {
	out := append([]byte(nil), in...)
	copy(out[0:6], beMACs[a])
	copy(out[6:12], lbMAC)
	return out
}

// patch returns in with the bytes at off replaced.
func patch(in []byte, off int, b ...byte) []byte {
	out := append([]byte(nil), in...)
	copy(out[off:], b)
	return out
}

// step is one packet through the program, after an optional new snapshot.
type step struct {
	setup       *director.Snapshot // applied with Loader.Apply before the packet; nil keeps the last
	resolve     func(*fakeResolver)
	in          []byte
	wantVerdict uint32
	wantOut     []byte // nil means in, untouched
	wantReason  Reason
	// For forwarded packets: the service and backend counted, and whether a flow was created.
	wantSvc     director.ServiceKey
	wantBackend netip.Addr
	wantNewFlow bool
	ingress     uint32 // ifindex the packet arrives on; 0 means loopback
	do          func() // runs after setup, before the packet
}

func TestGolden(t *testing.T) {
	requireBPF(t)
	rrAB := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)))
	fwdA := func(sport uint16, newFlow bool) step {
		return step{in: tcpTo(sport), wantVerdict: xdpTX, wantOut: dr(tcpTo(sport), beA), wantReason: ReasonTxDR,
			wantSvc: tcp80, wantBackend: beA, wantNewFlow: newFlow}
	}
	fwd := func(in []byte, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	pass := func(in []byte, r Reason) step {
		return step{setup: rrAB, in: in, wantVerdict: xdpPass, wantReason: r}
	}
	ipHdr := 14 // offset of the IPv4 header

	tests := []struct {
		name  string
		steps []step
	}{
		{"dr new flow tx", []step{func() step { s := fwdA(1000, true); s.setup = rrAB; return s }()}},
		{"dr new flow redirect", []step{{
			setup: snap(svc(tcp80, "rr", be(beR, 1, true))), in: tcpTo(1000), wantVerdict: xdpRedirect,
			wantOut: dr(tcpTo(1000), beR), wantReason: ReasonRedirectDR, wantSvc: tcp80, wantBackend: beR, wantNewFlow: true,
		}}},
		{"udp service", []step{func() step {
			s := fwd(udpTo(53), udp53, beB, true)
			s.setup = snap(svc(udp53, "rr", be(beB, 1, true)))
			return s
		}()}},
		{"established flow sticks when the table changes", []step{
			func() step { s := fwdA(1000, true); s.setup = rrAB; return s }(),
			// A third backend changes the table; the flow stays, a new flow takes the next slot.
			func() step {
				s := fwdA(1000, false)
				s.setup = snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true)))
				return s
			}(),
			fwd(tcpTo(1001), tcp80, beB, true),
			// Quiescing A (weight 0) drops it from the table but keeps its flows.
			func() step {
				s := fwdA(1000, false)
				s.setup = snap(svc(tcp80, "rr", be(beA, 0, true), be(beB, 1, true), be(beC, 1, true)))
				return s
			}(),
			fwd(tcpTo(1002), tcp80, beB, true), // cursor 2 % 2 over [B C]
		}},
		{"backend down re-selects the flow", []step{
			func() step { s := fwdA(1000, true); s.setup = rrAB; return s }(),
			func() step {
				s := fwd(tcpTo(1000), tcp80, beB, true)
				s.setup = snap(svc(tcp80, "rr", be(beA, 1, false), be(beB, 1, true)))
				return s
			}(),
			// Back up, A gets new flows again, but the re-pinned flow stays on B.
			func() step {
				s := fwd(tcpTo(1000), tcp80, beB, false)
				s.setup = rrAB
				return s
			}(),
		}},
		{"unresolvable backend is not eligible", []step{
			func() step {
				s := fwd(tcpTo(1000), tcp80, beB, true)
				s.setup = rrAB
				s.resolve = func(r *fakeResolver) { r.fail(beA, errors.New("no ARP answer")) }
				return s
			}(),
			fwd(tcpTo(1001), tcp80, beB, true),
		}},
		{"removed backend re-selects the flow", []step{
			func() step { s := fwdA(1000, true); s.setup = rrAB; return s }(),
			func() step {
				s := fwd(tcpTo(1000), tcp80, beB, true)
				s.setup = snap(svc(tcp80, "rr", be(beB, 1, true)))
				return s
			}(),
		}},
		{"all backends down", []step{
			func() step { s := fwdA(1000, true); s.setup = rrAB; return s }(),
			{setup: snap(svc(tcp80, "rr", be(beA, 1, false), be(beB, 1, false))), in: tcpTo(1000),
				wantVerdict: xdpDrop, wantReason: ReasonDropNoBackend},
			{in: tcpTo(2000), wantVerdict: xdpDrop, wantReason: ReasonDropNoBackend},
		}},
		{"service without backends", []step{{setup: snap(svc(tcp80, "rr")), in: tcpTo(1000),
			wantVerdict: xdpDrop, wantReason: ReasonDropNoBackend}}},
		{"removed service passes", []step{
			func() step { s := fwdA(1000, true); s.setup = rrAB; return s }(),
			{setup: snap(), in: tcpTo(1000), wantVerdict: xdpPass, wantReason: ReasonPassNotVIP},
		}},
		{"non-VIP passes untouched", []step{pass(tcpTo(1000, func(o *packets.Options) {
			o.Dst = netip.MustParseAddr("198.51.100.11")
		}), ReasonPassNotVIP)}},
		{"wrong port", []step{pass(tcpTo(1000, func(o *packets.Options) { o.DstPort = 443 }), ReasonPassNotVIP)}},
		{"wrong proto", []step{pass(udpTo(80), ReasonPassNotVIP)}},
		{"icmp to VIP", []step{pass(patch(udpTo(80), ipHdr+9, 1), ReasonPassNotL4)}},
		{"arp", []step{pass(packets.ARPRequest(packets.Options{Src: client, Dst: vip}), ReasonPassNotIP)}},
		{"ipv6 not a VIP", []step{pass(packets.UDP6(packets.Options{Src: netip.MustParseAddr("2001:db8::1"),
			Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 1, DstPort: 80}), ReasonPassNotVIP)}},
		{"vlan tagged", []step{pass(packets.VLAN(tcpTo(1000), 10), ReasonPassNotIP)}},
		{"truncated ip header", []step{pass(tcpTo(1000)[:ipHdr+19], ReasonPassTruncated)}},
		// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, so the shortest
		// frame testable is the bare header; the C checks the Ethernet bound all the same.
		{"ethernet header only", []step{pass(tcpTo(1000)[:ipHdr], ReasonPassTruncated)}},
		{"truncated ip options", []step{pass(tcpTo(1000, func(o *packets.Options) {
			o.IPOptions = []byte{1, 1, 1, 1, 1, 1, 1, 1}
		})[:ipHdr+24], ReasonPassTruncated)}},
		// Total length agrees with the frame, so it is the L4 bound that catches these.
		{"truncated tcp", []step{pass(patch(tcpTo(1000, func(o *packets.Options) { o.Payload = nil })[:ipHdr+20+19],
			ipHdr+2, 0, 20+19), ReasonPassTruncated)}},
		{"truncated udp", []step{pass(patch(udpTo(53, func(o *packets.Options) { o.Payload = nil })[:ipHdr+20+7],
			ipHdr+2, 0, 20+7), ReasonPassTruncated)}},
		{"datagram longer than frame", []step{pass(tcpTo(1000)[:ipHdr+20+20+5], ReasonPassTruncated)}},
		{"tcp header in ethernet padding", []step{pass(append(
			patch(tcpTo(1000, func(o *packets.Options) { o.Payload = nil })[:ipHdr+20+20], ipHdr+2, 0, 20+10),
			make([]byte, 6)...), ReasonPassTruncated)}},
		{"ihl below 5", []step{pass(patch(tcpTo(1000), ipHdr, 0x44), ReasonPassBadIP)}},
		{"version 6 in ipv4 frame", []step{pass(patch(tcpTo(1000), ipHdr, 0x65), ReasonPassBadIP)}},
		{"total length below header", []step{pass(patch(tcpTo(1000), ipHdr+2, 0, 19), ReasonPassBadIP)}},
		{"first fragment", []step{pass(tcpTo(1000, func(o *packets.Options) { o.MF = true }), ReasonPassFragment)}},
		{"middle fragment", []step{pass(tcpTo(1000, func(o *packets.Options) { o.MF, o.FragOffset = true, 185 }), ReasonPassFragment)}},
		{"last fragment", []step{pass(tcpTo(1000, func(o *packets.Options) { o.FragOffset = 370 }), ReasonPassFragment)}},
		{"ip options forwarded", []step{func() step {
			in := tcpTo(1000, func(o *packets.Options) { o.IPOptions = []byte{0x94, 0x04, 0, 0} })
			s := fwd(in, tcp80, beA, true)
			s.setup = rrAB
			return s
		}()}},
		{"maximum ip options forwarded", []step{func() step {
			in := tcpTo(1000, func(o *packets.Options) { o.IPOptions = make([]byte, 40) })
			s := fwd(in, tcp80, beA, true)
			s.setup = rrAB
			return s
		}()}},
		{"ethernet padding forwarded", []step{func() step {
			in := append(tcpTo(1000, func(o *packets.Options) { o.Payload = nil }), 0, 0, 0, 0, 0, 0)
			s := fwd(in, tcp80, beA, true)
			s.setup = rrAB
			return s
		}()}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

// runSteps runs the steps through a fresh loader on the golden resolver, checking every verdict,
// frame and counter.
func runSteps(t *testing.T, steps []step) {
	t.Helper()
	pinCPU(t) // subtests run on goroutines of their own
	res := goldenResolver()
	runStepsOn(t, newTestLoader(t, res), res, steps)
}

// runStepsOn runs the steps through l; res, if not nil, is the resolver the steps may change.
func runStepsOn(t *testing.T, l *Loader, res *fakeResolver, steps []step) {
	t.Helper()
	for i, s := range steps {
		if s.resolve != nil {
			s.resolve(res)
		}
		if s.setup != nil {
			if err := l.Apply(context.Background(), *s.setup); err != nil {
				t.Fatalf("step %d: Apply: %v", i, err)
			}
		}
		if s.do != nil {
			s.do()
		}
		before := readStats(t, l)
		// The ingress must be a real device: loopback, where beR (ifindex 42) is not.
		ingress := s.ingress
		if ingress == 0 {
			ingress = loIfindex
		}
		verdict, out := run(t, l.Program(), s.in, ingress)
		if verdict != s.wantVerdict {
			t.Errorf("step %d: verdict %d, want %d", i, verdict, s.wantVerdict)
		}
		want := s.wantOut
		if want == nil {
			want = s.in
		}
		if diff := cmp.Diff(hex.Dump(want), hex.Dump(out)); diff != "" {
			t.Errorf("step %d: frame mismatch (-want +got):\n%s", i, diff)
		}
		checkStats(t, i, before, readStats(t, l), s, uint64(len(s.in)))
	}
}

func readStats(t testing.TB, l *Loader) Stats {
	t.Helper()
	st, err := l.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

// checkStats checks that one packet changed exactly the counters the step expects.
func checkStats(t *testing.T, i int, before, after Stats, s step, size uint64) {
	t.Helper()
	wantReasons := map[Reason]uint64{s.wantReason: 1}
	gotReasons := map[Reason]uint64{}
	for r, n := range after.Reasons {
		if d := n - before.Reasons[r]; d != 0 {
			gotReasons[r] = d
		}
	}
	if diff := cmp.Diff(wantReasons, gotReasons); diff != "" {
		t.Errorf("step %d: reason counters (-want +got):\n%s", i, diff)
	}

	var forwarded bool
	switch s.wantReason {
	case ReasonTxDR, ReasonRedirectDR, ReasonTxTUN, ReasonRedirectTUN, ReasonPassNoNeigh,
		ReasonTxNAT, ReasonRedirectNAT, ReasonPassToFragment:
		forwarded = true
	}
	one := Counters{Packets: 1, Bytes: size}
	if s.wantNewFlow {
		one.NewFlows = 1
	}
	wantSvc, gotSvc := map[director.ServiceKey]Counters{}, map[director.ServiceKey]Counters{}
	wantBe, gotBe := map[netip.Addr]Counters{}, map[netip.Addr]Counters{}
	if forwarded {
		wantSvc[s.wantSvc] = one
		wantBe[s.wantBackend] = one
	}
	for k, c := range after.Services {
		if d := sub(c, before.Services[k]); d != (Counters{}) {
			gotSvc[k] = d
		}
		for ap, c := range after.Backends[k] {
			if d := sub(c, before.Backends[k][ap]); d != (Counters{}) {
				gotBe[ap.Addr()] = d
			}
		}
	}
	if diff := cmp.Diff(wantSvc, gotSvc); diff != "" {
		t.Errorf("step %d: service counters (-want +got):\n%s", i, diff)
	}
	if diff := cmp.Diff(wantBe, gotBe); diff != "" {
		t.Errorf("step %d: backend counters (-want +got):\n%s", i, diff)
	}
}

func sub(a, b Counters) Counters {
	return Counters{Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes, NewFlows: a.NewFlows - b.NewFlows}
}
