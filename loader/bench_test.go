package loader

import (
	"testing"
	"time"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// BenchmarkPinnedPacket measures the per-packet cost of an established flow's packet through
// BPF_PROG_TEST_RUN, with and without persistence (which refreshes the client's template) and on
// a port-0 service (one more service lookup). Repeating a DR packet is right here: the program
// changes only its MAC addresses, so every run after the first is the same established flow.
func BenchmarkPinnedPacket(b *testing.B) {
	for _, bc := range []struct {
		name string
		svc  director.Service
		in   []byte
	}{
		{"rr", svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)), tcpTo(1000, ack)},
		{"persistent", persistent(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)), time.Hour, 24), tcpTo(1000, ack)},
		{"port 0 persistent", persistent(svc(tcpAll, "rr", be(beA, 1, true), be(beB, 1, true)), time.Hour, 0), tcpTo(1000, ack, toPort(443))},
		{"sh-port", func() director.Service {
			s := svc(tcp80, "sh", be(beA, 1, true), be(beB, 1, true))
			s.SchedFlags = director.SchedPort
			return s
		}(), tcpTo(1000, ack)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newTestLoader(b, goldenResolver())
			if err := l.Apply(b.Context(), *snap(bc.svc)); err != nil {
				b.Fatal(err)
			}
			ret, per, err := l.Program().Benchmark(bc.in, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if ret != xdpTX {
				b.Fatalf("verdict %d, want TX", ret)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
		})
	}
}

// BenchmarkNotVIPPacket measures what a packet of no service costs on an interface facing the
// real servers (a reply, or the host's own traffic), with the reverse-NAT tables looked up, as
// they must be when some backend forwards by NAT, and skipped, as when none does.
func BenchmarkNotVIPPacket(b *testing.B) {
	reply := packets.TCP(packets.Options{SrcMAC: beMACs[beA], DstMAC: lbMAC, Src: beA, Dst: client,
		SrcPort: 80, DstPort: 1000, TCPFlags: packets.ACK, Payload: []byte("HTTP/1.0 200 OK\r\n\r\n")})
	for _, bc := range []struct {
		name  string
		flags uint32
	}{{"nat lookups", globalFlagNAT}, {"no nat service", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			l := newTestLoader(b, goldenResolver())
			if err := l.Apply(b.Context(), *snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)))); err != nil {
				b.Fatal(err)
			}
			if err := l.setGlobals(bc.flags); err != nil {
				b.Fatal(err)
			}
			ret, per, err := l.Program().Benchmark(reply, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if ret != xdpPass {
				b.Fatalf("verdict %d, want PASS", ret)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
		})
	}
}
