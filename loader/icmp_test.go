package loader

import (
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

var router = netip.MustParseAddr("203.0.113.1") // on the path between the real servers and clients

// quoted is the start of a packet a real server sent from the VIP's service port to the client,
// as an ICMP error quotes it: the IP header and n bytes of the transport header.
func quoted(from, to netip.Addr, sport, dport uint16, udp bool, n int) []byte {
	o := packets.Options{Src: from, Dst: to, SrcPort: sport, DstPort: dport, TCPFlags: packets.ACK, Payload: make([]byte, 1400)}
	var f []byte
	switch {
	case from.Is6() && udp:
		f = packets.UDP6(o)
	case from.Is6():
		f = packets.TCP6(o)
	case udp:
		f = packets.UDP(o)
	default:
		f = packets.TCP(o)
	}
	hl := 20
	if from.Is6() {
		hl = 40
	}
	return f[14 : 14+hl+n]
}

func fragNeeded(q []byte) []byte {
	return packets.ICMPFragNeeded(packets.Options{SrcMAC: cliMAC, DstMAC: mac("02:00:00:00:00:01"), Src: router, Dst: vip}, 1400, q)
}

func tooBig(q []byte) []byte {
	return packets.ICMPv6TooBig(packets.Options{SrcMAC: cliMAC, DstMAC: mac("02:00:00:00:00:01"),
		Src: netip.MustParseAddr("2001:db8:ff::1"), Dst: vip6}, 1280, q)
}

// TestGoldenICMPErrors checks that ICMP frag-needed and ICMPv6 packet-too-big errors about a VIP
// flow reach the backend owning the flow, so that its path MTU discovery works, and that they
// neither create nor confirm flows.
func TestGoldenICMPErrors(t *testing.T) {
	requireBPF(t)
	rrAB := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)), svc(udp53, "rr", be(beB, 1, true)))
	rr6 := snap(svc(tcp6, "rr", be6(beA6, 1, true), be6(beB6, 1, true)))
	toBackend := func(in []byte, key director.ServiceKey, a netip.Addr) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR, wantSvc: key, wantBackend: a}
	}
	open := func(in []byte, key director.ServiceKey, a netip.Addr, setup *director.Snapshot) step {
		return step{setup: setup, in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: true}
	}
	pass := func(in []byte, r Reason) step { return step{in: in, wantVerdict: xdpPass, wantReason: r} }

	tests := []struct {
		name  string
		steps []step
	}{
		{"frag needed reaches the flow's backend", []step{
			open(tcpTo(1000), tcp80, beA, rrAB),
			open(tcpTo(1001), tcp80, beB, nil),
			toBackend(fragNeeded(quoted(vip, client, 80, 1001, false, 8)), tcp80, beB),
			toBackend(fragNeeded(quoted(vip, client, 80, 1000, false, 8)), tcp80, beA),
			// Only the ports of the quoted transport header are needed.
			toBackend(fragNeeded(quoted(vip, client, 80, 1000, false, 4)), tcp80, beA),
		}},
		{"udp flow", []step{
			open(udpTo(53), udp53, beB, rrAB),
			toBackend(fragNeeded(quoted(vip, client, 53, 5353, true, 8)), udp53, beB),
		}},
		{"no flow passes", []step{
			{setup: rrAB, in: fragNeeded(quoted(vip, client, 80, 1000, false, 8)), wantVerdict: xdpPass, wantReason: ReasonPassICMP},
			// The error created no flow: the next connection starts the round robin at A.
			open(tcpTo(1002), tcp80, beA, nil),
		}},
		{"not a VIP", []step{{setup: rrAB, in: fragNeeded(quoted(netip.MustParseAddr("198.51.100.99"), client, 80, 1000, false, 8)),
			wantVerdict: xdpPass, wantReason: ReasonPassNotVIP}}},
		{"other icmp errors pass", []step{{setup: rrAB, in: patch(fragNeeded(quoted(vip, client, 80, 1000, false, 8)), 14+20+1, 1),
			wantVerdict: xdpPass, wantReason: ReasonPassNotL4}}},
		{"quoted ports cut short", []step{
			open(tcpTo(1000), tcp80, beA, rrAB),
			pass(fragNeeded(quoted(vip, client, 80, 1000, false, 3)), ReasonPassTruncated),
		}},
		{"quoted header cut short", []step{{setup: rrAB, in: fragNeeded(quoted(vip, client, 80, 1000, false, 8)[:19]),
			wantVerdict: xdpPass, wantReason: ReasonPassTruncated}}},
		{"quoted icmp passes", []step{{setup: rrAB, in: fragNeeded(patch(quoted(vip, client, 80, 1000, false, 8), 9, 1)),
			wantVerdict: xdpPass, wantReason: ReasonPassNotL4}}},
		{"packet too big reaches the flow's backend", []step{
			open(tcp6To(1000), tcp6, beA6, rr6),
			open(tcp6To(1001), tcp6, beB6, nil),
			toBackend(tooBig(quoted(vip6, client6, 80, 1001, false, 8)), tcp6, beB6),
		}},
		{"icmpv6 in ipv4 passes", []step{{setup: rrAB, in: patch(fragNeeded(quoted(vip, client, 80, 1000, false, 8)), 14+9, 58),
			wantVerdict: xdpPass, wantReason: ReasonPassNotL4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

// TestICMPErrorDoesNotConfirm checks that an ICMP error, which anyone can forge, leaves an
// unconfirmed flow unconfirmed.
func TestICMPErrorDoesNotConfirm(t *testing.T) {
	pinCPU(t)
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true))))
	key := flowKeyOf(client, vip, 1000, 80, director.TCP)
	run(t, l.Program(), tcpTo(1000), loIfindex)
	if verdict, _ := run(t, l.Program(), fragNeeded(quoted(vip, client, 80, 1000, false, 8)), loIfindex); verdict != xdpTX {
		t.Fatalf("ICMP error: verdict %d, want TX", verdict)
	}
	if got := tableOf(t, l, key); got != "unconfirmed" {
		t.Errorf("flow in %s after an ICMP error, want unconfirmed", got)
	}
}
