package loader

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/packets"
)

// FuzzProgram feeds arbitrary frames to the program: it must never abort, must leave every frame
// it passes or drops untouched, and may change only the MAC addresses of frames it forwards.
func FuzzProgram(f *testing.F) {
	f.Add(tcpTo(1000))
	f.Add(udpTo(53))
	f.Add(udpTo(5000))
	f.Add(tcpTo(1000, func(o *packets.Options) { o.IPOptions = make([]byte, 40) }))
	f.Add(tcpTo(1000, func(o *packets.Options) { o.MF = true }))
	f.Add(packets.VLAN(tcpTo(1000), 7))
	f.Add(tcpTo(1000)[:14+20+10])
	f.Add(tcp6To(1000))
	f.Add(tcp6To(1000, exts(packets.Ext{Type: 0, Body: []byte{1, 4}}, packets.FragmentExt(0, false, 1))))
	f.Add(udp6To(53))
	f.Add(fragNeeded(quoted(vip, client, 80, 1000, false, 8)))
	f.Add(tooBig(quoted(vip6, client6, 80, 1000, false, 8)))

	requireBPF(f)
	res := goldenResolver()
	l := newTestLoader(f, res)
	if err := l.Apply(context.Background(), *snap(
		svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true)),
		svc(udp53, "rr", be(beR, 1, true)),
		svc(tcp6, "mh", be6(beA6, 1, true), be6(beB6, 1, true)),
		// Persistence and the all-ports lookup, on a port no seed uses exactly.
		persistent(svc(udpAll, "sh", be(beA, 1, true), be(beB, 1, true)), time.Minute, 24),
	)); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 4000 {
			return // BPF_PROG_TEST_RUN's limits
		}
		verdict, out := run(t, l.Program(), in, loIfindex)
		switch verdict {
		case xdpPass, xdpDrop:
			if !bytes.Equal(in, out) {
				t.Fatalf("verdict %d changed the frame:\n in %x\nout %x", verdict, in, out)
			}
		case xdpTX, xdpRedirect:
			if !bytes.Equal(in[12:], out[12:]) {
				t.Fatalf("forwarding changed more than the MACs:\n in %x\nout %x", in, out)
			}
		default:
			t.Fatalf("verdict %d for %x", verdict, in)
		}
	})
}
