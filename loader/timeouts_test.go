package loader

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// TestGoldenTimeouts checks keepalived's lvs_timeouts in the program: a flow silent for longer
// than its protocol's timeout (IPVS's defaults when unset) is forgotten, and its next packet is
// scheduled as a new flow; a flow that saw a FIN or RST gets the tcpfin timeout instead.
func TestGoldenTimeouts(t *testing.T) {
	requireBPF(t)
	fwd := func(in []byte, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	with := func(s step, setup *director.Snapshot) step { s.setup = setup; return s }
	withTimeouts := func(s *director.Snapshot, to director.Timeouts) *director.Snapshot {
		c := *s
		c.Timeouts = to
		return &c
	}
	udpAB := snap(svc(udp53, "rr", be(beA, 1, true), be(beB, 1, true)))
	tcpAB := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)))
	fin := func(o *packets.Options) { o.TCPFlags = packets.FIN | packets.ACK }
	rst := func(o *packets.Options) { o.TCPFlags = packets.RST }

	type tstep struct {
		step
		age time.Duration // ages both flow tables before the packet; 0 leaves them
	}
	tests := []struct {
		name  string
		steps []tstep
	}{
		{"udp flow outlives a silence shorter than lvs_timeouts udp", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), withTimeouts(udpAB, director.Timeouts{UDP: 10 * time.Second}))},
			{step: fwd(udpTo(53), udp53, beA, false), age: 9 * time.Second},
			{step: fwd(udpTo(53), udp53, beA, false), age: 9 * time.Second},
		}},
		{"udp flow silent past lvs_timeouts udp is re-scheduled", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), withTimeouts(udpAB, director.Timeouts{UDP: 10 * time.Second}))},
			{step: fwd(udpTo(53), udp53, beA, false)}, // confirmed
			{step: fwd(udpTo(53), udp53, beB, true), age: 11 * time.Second},
			{step: fwd(udpTo(53), udp53, beB, false)},
		}},
		{"unconfirmed udp flow expires too", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), withTimeouts(udpAB, director.Timeouts{UDP: 10 * time.Second}))},
			{step: fwd(udpTo(53), udp53, beB, true), age: 11 * time.Second},
		}},
		// Another CPU may stamp a flow just after this one read the clock.
		{"a stamp slightly in the future is fresh", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), withTimeouts(udpAB, director.Timeouts{UDP: 10 * time.Second}))},
			{step: fwd(udpTo(53), udp53, beA, false), age: -time.Second},
			{step: fwd(udpTo(53), udp53, beA, false), age: -time.Second},
		}},
		{"udp default is ipvs's 300s", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), udpAB)},
			{step: fwd(udpTo(53), udp53, beA, false), age: 299 * time.Second},
			{step: fwd(udpTo(53), udp53, beB, true), age: 301 * time.Second},
		}},
		{"a new timeout applies to existing flows", []tstep{
			{step: with(fwd(udpTo(53), udp53, beA, true), udpAB)},
			{step: with(fwd(udpTo(53), udp53, beB, true), withTimeouts(udpAB, director.Timeouts{UDP: time.Minute})), age: 61 * time.Second},
		}},
		{"tcp default is ipvs's 900s", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), tcpAB)},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), age: 899 * time.Second},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true), age: 901 * time.Second},
		}},
		{"lvs_timeouts tcp", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), withTimeouts(tcpAB, director.Timeouts{TCP: time.Hour}))},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), age: 59 * time.Minute},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true), age: 61 * time.Minute},
		}},
		{"after a fin the tcpfin timeout applies", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), tcpAB)},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false)},
			{step: fwd(tcpTo(1000, fin), tcp80, beA, false), age: 800 * time.Second},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), age: 119 * time.Second},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true), age: 121 * time.Second},
		}},
		{"after a rst lvs_timeouts tcpfin applies", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), withTimeouts(tcpAB, director.Timeouts{TCPFin: 5 * time.Second}))},
			{step: fwd(tcpTo(1000, rst), tcp80, beA, false)},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true), age: 6 * time.Second},
		}},
		// A client reusing the ports of a closed connection starts a new one (IPVS's
		// conn_reuse_mode): its SYN is scheduled afresh and the rest of it follows.
		{"a syn after a fin starts a new flow", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), tcpAB)},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false)},
			{step: fwd(tcpTo(1000, fin), tcp80, beA, false)},
			{step: fwd(tcpTo(1000), tcp80, beB, true)},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, false)},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, false)},
		}},
		{"a syn retransmitted is the same flow", []tstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), tcpAB)},
			{step: fwd(tcpTo(1000), tcp80, beA, false)},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false)},
		}},
		{"the fin mark survives confirmation", []tstep{
			{step: with(fwd(tcpTo(1000, fin), tcp80, beA, true), withTimeouts(tcpAB, director.Timeouts{TCPFin: 5 * time.Second}))},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false)}, // promoted to flows
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true), age: 6 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinCPU(t)
			res := goldenResolver()
			l := newTestLoader(t, res)
			var steps []step
			for _, ts := range tt.steps {
				s, d := ts.step, ts.age
				if d != 0 {
					s.do = func() {
						age(t, l.objs.Flows, d)
						age(t, l.objs.Unconfirmed, d)
					}
				}
				steps = append(steps, s)
			}
			runStepsOn(t, l, res, steps)
		})
	}
}
