package loader

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

func explain(t *testing.T, l *Loader, src netip.AddrPort, dst netip.AddrPort) director.Explanation {
	t.Helper()
	ex, err := l.Explain(director.TCP, src, dst)
	if err != nil {
		t.Fatalf("Explain(%s -> %s): %v", src, dst, err)
	}
	return ex
}

// sendTCP runs a TCP frame from src to the VIP's port 80 through the program and returns the
// real server it was sent to.
func sendTCP(t *testing.T, l *Loader, src netip.AddrPort, flags uint8) netip.AddrPort {
	t.Helper()
	in := packets.TCP(packets.Options{Src: src.Addr(), Dst: vip, SrcPort: src.Port(), DstPort: 80, TCPFlags: flags})
	verdict, out := run(t, l.Program(), in, loIfindex)
	if verdict != xdpTX {
		t.Fatalf("verdict %d for %s, want TX", verdict, src)
	}
	for a, m := range beMACs {
		if string(out[0:6]) == string(m) {
			return netip.AddrPortFrom(a, 80)
		}
	}
	t.Fatalf("frame from %s sent to unknown MAC %x", src, out[0:6])
	return netip.AddrPort{}
}

// currentCPU is the CPU a pinned test runs on.
func currentCPU(t *testing.T) int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	t.Fatal("no CPU in affinity set")
	return 0
}

// TestExplainAgreesWithProgram runs packets through the loaded program and checks that
// Explain, asked before each packet, names the real server the program then chose: by source
// hash (mh) and by the per-CPU cursor (rr) for a miss, by the flow table for a hit.
func TestExplainAgreesWithProgram(t *testing.T) {
	requireBPF(t)
	vipPort := netip.AddrPortFrom(vip, 80)
	bes := []director.Backend{be(beA, 1, true), be(beB, 2, true), be(beC, 1, true)}
	mhPort := svc(tcp80, "mh", bes...)
	mhPort.SchedFlags = director.SchedPort
	for _, tc := range []struct {
		name string
		svc  director.Service
	}{
		{"mh", svc(tcp80, "mh", bes...)},
		{"mh-port", mhPort},
		{"rr", svc(tcp80, "rr", bes...)},
		{"wrr", svc(tcp80, "wrr", bes...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pinCPU(t)
			cpu := currentCPU(t)
			l := newTestLoader(t, goldenResolver())
			apply(t, l, snap(tc.svc))
			for i := range 12 {
				src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i*7)}), uint16(40000+i))

				miss := explain(t, l, src, vipPort)
				if miss.Flow != director.FlowNone || miss.Selection == nil || miss.Verdict != "forward" {
					t.Fatalf("before the first packet: %+v, want a miss with a selection", miss)
				}
				var want netip.AddrPort
				switch tc.name {
				case "mh", "mh-port":
					sel := miss.Selection
					method, hash := director.SelectSourceHash, SourceHash(src.Addr())
					if tc.name == "mh-port" {
						method, hash = director.SelectSourcePortHash, SourcePortHash(src.Addr(), src.Port())
					}
					if sel.Method != method || sel.Hash != hash || sel.Slot != int(sel.Hash%uint32(sel.Size)) {
						t.Fatalf("selection %+v, want %s %#x", sel, method, hash)
					}
					if miss.RealServer == nil {
						t.Fatalf("miss names no real server: %+v", miss)
					}
					want = *miss.RealServer
				default:
					sel := miss.Selection
					if sel.Method != director.SelectRoundRobin || miss.RealServer != nil || cpu >= len(sel.Cursors) {
						t.Fatalf("selection %+v (real server %v), want round robin with a cursor for CPU %d", sel, miss.RealServer, cpu)
					}
					want = sel.Entries[sel.Cursors[cpu]]
				}
				if got := sendTCP(t, l, src, packets.SYN); got != want {
					t.Fatalf("flow %d: program sent it to %s, Explain said %s\n%s", i, got, want, strings.Join(miss.Why, "\n"))
				}

				hit := explain(t, l, src, vipPort)
				if hit.Flow != director.FlowUnconfirmed || hit.Pinned == nil || *hit.Pinned != want || hit.RealServer == nil || *hit.RealServer != want || !hit.PinnedUsable {
					t.Fatalf("after a SYN: %+v, want unconfirmed, pinned to %s", hit, want)
				}
				if got := sendTCP(t, l, src, packets.ACK); got != want {
					t.Fatalf("ACK went to %s, SYN to %s", got, want)
				}
				if hit := explain(t, l, src, vipPort); hit.Flow != director.FlowConfirmed || *hit.RealServer != want || hit.Method != "DR" {
					t.Fatalf("after the ACK: %+v, want confirmed, to %s by DR", hit, want)
				}
			}
		})
	}
}

// TestExplainReselectsWhenPinnedServerIsDown checks a confirmed flow whose real server went
// down: Explain reports the stale pin and the real server the program then re-selects.
func TestExplainReselectsWhenPinnedServerIsDown(t *testing.T) {
	pinCPU(t)
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true))))
	vipPort := netip.AddrPortFrom(vip, 80)
	src := netip.AddrPortFrom(client, 1000)
	first := sendTCP(t, l, src, packets.ACK)
	sendTCP(t, l, src, packets.ACK)

	var down []director.Backend
	for _, a := range []netip.Addr{beA, beB, beC} {
		down = append(down, be(a, 1, a != first.Addr()))
	}
	apply(t, l, snap(svc(tcp80, "mh", down...)))
	ex := explain(t, l, src, vipPort)
	if ex.Flow != director.FlowConfirmed || ex.Pinned == nil || *ex.Pinned != first || ex.PinnedUsable || ex.RealServer == nil {
		t.Fatalf("explanation %+v, want confirmed, pinned to %s (down), and a new real server", ex, first)
	}
	if got := sendTCP(t, l, src, packets.ACK); got != *ex.RealServer {
		t.Errorf("program re-selected %s, Explain said %s", got, *ex.RealServer)
	}
}

// TestExplainPersistence checks that a persistent client's new flow is explained by its
// template, to the real server the program then sends it to, though round robin would move on.
func TestExplainPersistence(t *testing.T) {
	pinCPU(t)
	l := newTestLoader(t, goldenResolver())
	s := svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true))
	s.Persistence = time.Minute
	apply(t, l, snap(s))
	vipPort := netip.AddrPortFrom(vip, 80)
	first := sendTCP(t, l, netip.AddrPortFrom(client, 1000), packets.SYN)
	for port := uint16(1001); port < 1006; port++ {
		src := netip.AddrPortFrom(client, port)
		ex := explain(t, l, src, vipPort)
		if ex.Flow != director.FlowNone || ex.RealServer == nil || *ex.RealServer != first ||
			!strings.Contains(strings.Join(ex.Why, "\n"), "template naming "+first.String()) {
			t.Fatalf("new flow of a persistent client: %+v, want its template's %s", ex, first)
		}
		if got := sendTCP(t, l, src, packets.SYN); got != first {
			t.Fatalf("program sent it to %s, Explain said %s", got, first)
		}
	}
}

// TestExplainExpiredFlow checks that a flow idle past its timeout is explained as absent, as
// the program treats it.
func TestExplainExpiredFlow(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true))))
	src := netip.AddrPortFrom(client, 1000)
	sendTCP(t, l, src, packets.ACK)
	sendTCP(t, l, src, packets.ACK)
	// Age the flow past the TCP idle timeout (900 s) by moving its last packet back.
	k := flowKey(director.TCP, src, netip.AddrPortFrom(vip, 80))
	var fv lbFlowValue
	if err := l.objs.Flows.Lookup(&k, &fv); err != nil {
		t.Fatal(err)
	}
	fv.LastSeenNs -= uint64(time.Hour)
	if err := l.objs.Flows.Put(&k, &fv); err != nil {
		t.Fatal(err)
	}
	ex := explain(t, l, src, netip.AddrPortFrom(vip, 80))
	if ex.Flow != director.FlowNone || ex.Selection == nil || !strings.Contains(strings.Join(ex.Why, "\n"), "past its timeout") {
		t.Errorf("explanation of an expired flow: %+v, want a miss", ex)
	}
}

func TestExplainWithoutService(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 0, true)), svc(udp53, "rr", be(beA, 1, true))))
	src := netip.AddrPortFrom(client, 1000)
	tests := []struct {
		name        string
		proto       director.Proto
		dst         netip.AddrPort
		wantVerdict string
		wantWhy     string
	}{
		{"another address", director.TCP, netip.MustParseAddrPort("198.51.100.99:80"), "pass", "not a VIP"},
		{"another port", director.TCP, netip.AddrPortFrom(vip, 443), "pass", "not a VIP"},
		{"another protocol", director.UDP, netip.AddrPortFrom(vip, 80), "pass", "not a VIP"},
		{"no eligible real server", director.TCP, netip.AddrPortFrom(vip, 80), "drop", "no eligible real server"},
		{"icmp", director.Proto(1), netip.AddrPortFrom(vip, 80), "pass", "neither TCP nor UDP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, err := l.Explain(tt.proto, src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Verdict != tt.wantVerdict || !strings.Contains(strings.Join(ex.Why, "\n"), tt.wantWhy) {
				t.Errorf("explanation %+v, want verdict %s saying %q", ex, tt.wantVerdict, tt.wantWhy)
			}
		})
	}
	if _, err := l.Explain(director.TCP, src, netip.AddrPortFrom(vip6, 80)); err == nil {
		t.Error("Explain of an IPv4 source to an IPv6 destination: no error")
	}
}

// TestExplainNATReply checks that a reply of a NAT flow, which matches no service, is explained
// from the reverse-translation tables the program reads (the entry is written as remember_nat()
// writes it: nat_test.go checks the program's own entries).
func TestExplainNATReply(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true))))
	rs := netip.AddrPortFrom(beA, 8080)
	cli := netip.AddrPortFrom(client, 40000)
	k := flowKey(director.TCP, rs, cli)
	nv := lbNatValue{Vport: htons(80), Backend: l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id}
	_, nv.Vip = addrKey(vip)
	if err := l.objs.NatUnconfirmed.Put(&k, &nv); err != nil {
		t.Fatal(err)
	}
	ex, err := l.Explain(director.TCP, rs, cli)
	if err != nil {
		t.Fatal(err)
	}
	why := strings.Join(ex.Why, "\n")
	if ex.Verdict != "forward" || ex.Method != "NAT" || ex.Flow != director.FlowUnconfirmed ||
		!strings.Contains(why, "translated back to 198.51.100.10:80") {
		t.Errorf("explanation of a NAT reply: %+v", ex)
	}
}
