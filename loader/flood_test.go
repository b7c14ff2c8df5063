package loader

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// flowKeyOf is the flows key of a packet from src:sport to dst:dport.
func flowKeyOf(src, dst netip.Addr, sport, dport uint16, proto director.Proto) lbFlowKey {
	k := lbFlowKey{Sport: htons(sport), Dport: htons(dport), Proto: uint8(proto)}
	k.Family, k.Src = addrKey(src)
	_, k.Dst = addrKey(dst)
	return k
}

// tableOf says which connection table holds k: "flows", "unconfirmed" or "none".
func tableOf(t *testing.T, l *Loader, k lbFlowKey) string {
	t.Helper()
	var v lbFlowValue
	inFlows := l.objs.Flows.Lookup(&k, &v) == nil
	_, inUnconfirmed, err := lookupUnconfirmed(l.objs.Unconfirmed, &k)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case inFlows && inUnconfirmed:
		return "both"
	case inFlows:
		return "flows"
	case inUnconfirmed:
		return "unconfirmed"
	}
	return "none"
}

// countEntries counts the flows of a flow table.
func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	if isUnconfirmed(m) {
		n := 0
		if err := walkUnconfirmed(m, func(uint32, *lbUnconfSet, int, lbFlowValue) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var k lbFlowKey
	var v lbFlowValue
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate %s: %v", m, err)
	}
	return n
}

// TestFlowConfirmation checks which table a flow is in after each packet: the first packet pins
// it in unconfirmed, any later packet but a bare SYN moves it to flows.
func TestFlowConfirmation(t *testing.T) {
	requireBPF(t)
	type pkt struct {
		in        []byte
		wantTable string
	}
	syn := func(f uint8) func(*packets.Options) { return func(o *packets.Options) { o.TCPFlags = f } }
	tcpKey := flowKeyOf(client, vip, 1000, 80, director.TCP)
	udpKey := flowKeyOf(client, vip, 5353, 53, director.UDP)
	tcp6Key := flowKeyOf(client6, vip6, 1000, 80, director.TCP)
	tests := []struct {
		name string
		key  lbFlowKey
		pkts []pkt
	}{
		{"handshake", tcpKey, []pkt{
			{tcpTo(1000), "unconfirmed"},
			{tcpTo(1000), "unconfirmed"}, // SYN retransmitted
			{tcpTo(1000, syn(packets.ACK)), "flows"},
			{tcpTo(1000, syn(packets.ACK|packets.PSH)), "flows"},
		}},
		{"mid-stream packet first", tcpKey, []pkt{
			{tcpTo(1000, syn(packets.ACK)), "unconfirmed"},
			{tcpTo(1000, syn(packets.ACK)), "flows"},
		}},
		{"syn-ack is not a bare syn", tcpKey, []pkt{
			{tcpTo(1000), "unconfirmed"},
			{tcpTo(1000, syn(packets.SYN|packets.ACK)), "flows"},
		}},
		{"rst confirms", tcpKey, []pkt{
			{tcpTo(1000), "unconfirmed"},
			{tcpTo(1000, syn(packets.RST)), "flows"},
		}},
		{"udp second datagram", udpKey, []pkt{
			{udpTo(53), "unconfirmed"},
			{udpTo(53), "flows"},
		}},
		{"ipv6 handshake", tcp6Key, []pkt{
			{tcp6To(1000), "unconfirmed"},
			{tcp6To(1000, syn(packets.ACK)), "flows"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLoader(t, goldenResolver())
			apply(t, l, snap(
				svc(tcp80, "rr", be(beA, 1, true)), svc(udp53, "rr", be(beA, 1, true)),
				svc(tcp6, "rr", be6(beA6, 1, true)),
			))
			for i, p := range tt.pkts {
				if verdict, _ := run(t, l.Program(), p.in, loIfindex); verdict != xdpTX {
					t.Fatalf("packet %d: verdict %d, want TX", i, verdict)
				}
				if got := tableOf(t, l, tt.key); got != p.wantTable {
					t.Errorf("packet %d: flow in %s, want %s", i, got, p.wantTable)
				}
			}
		})
	}
}

// TestConfirmedFlowReselectedStaysConfirmed checks that a confirmed flow whose backend goes down
// is re-pinned in flows at once: it is established, and a flood must not evict it either.
func TestConfirmedFlowReselectedStaysConfirmed(t *testing.T) {
	pinCPU(t)
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true))))
	ack := tcpTo(1000, func(o *packets.Options) { o.TCPFlags = packets.ACK })
	run(t, l.Program(), ack, loIfindex)
	run(t, l.Program(), ack, loIfindex)
	key := flowKeyOf(client, vip, 1000, 80, director.TCP)
	if got := tableOf(t, l, key); got != "flows" {
		t.Fatalf("flow in %s, want flows", got)
	}
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, false), be(beB, 1, true))))
	_, out := run(t, l.Program(), ack, loIfindex)
	if got := string(out[0:6]); got != string(beMACs[beB]) {
		t.Errorf("flow went to %x after A went down, want B %s", out[0:6], beMACs[beB])
	}
	if got := tableOf(t, l, key); got != "flows" {
		t.Errorf("re-selected flow in %s, want flows", got)
	}
}

// TestSYNFloodKeepsEstablishedFlows floods the director with SYNs from random spoofed sources,
// many more than either table holds, and checks that every connection established before the
// flood keeps its backend and is not re-selected.
func TestSYNFloodKeepsEstablishedFlows(t *testing.T) {
	requireBPF(t)
	pinCPU(t)
	const (
		flowTable        = 4096
		unconfirmedTable = 1024
		established      = 2000
		flood            = 5 * flowTable
	)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	l, err := New(Options{Logger: log, Resolver: goldenResolver(), NoAttach: true,
		FlowTableSize: flowTable, UnconfirmedTableSize: unconfirmedTable})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true))))

	type conn = netip.AddrPort // the client's address and port
	frame := func(c conn, flags uint8) []byte {
		return packets.TCP(packets.Options{Src: c.Addr(), Dst: vip, SrcPort: c.Port(), DstPort: 80, TCPFlags: flags})
	}
	backendOfFrame := func(in []byte) netip.Addr { return forwardedTo(t, l, in) }

	// Establish: SYN, then the handshake's ACK, from clients in 192.0.2.0/24.
	want := map[conn]string{}
	for i := range established {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 200)}), uint16(10000+i))
		want[c] = backendOfFrame(frame(c, packets.SYN)).String()
		if got := backendOfFrame(frame(c, packets.ACK)).String(); got != want[c] {
			t.Fatalf("%v: ACK went to %s, SYN to %s", c, got, want[c])
		}
	}
	if n := countEntries(t, l.objs.Flows); n != established {
		t.Fatalf("%d confirmed flows after the handshakes, want %d", n, established)
	}
	before := readStats(t, l).Services[tcp80]

	// Flood: SYNs from random sources outside the clients' prefix, each sent once.
	rng := rand.New(rand.NewPCG(1, 2))
	for range flood {
		src := netip.AddrFrom4([4]byte{10 + byte(rng.IntN(100)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		run(t, l.Program(), frame(netip.AddrPortFrom(src, uint16(1024+rng.IntN(60000))), packets.SYN), loIfindex)
	}
	afterFlood := readStats(t, l).Services[tcp80]
	if got := afterFlood.NewFlows - before.NewFlows; got != flood {
		t.Fatalf("flood created %d flows, want %d", got, flood)
	}
	if n := countEntries(t, l.objs.Flows); n != established {
		t.Errorf("%d confirmed flows after the flood, want %d: spoofed SYNs entered the table", n, established)
	}
	if n := countEntries(t, l.objs.Unconfirmed); n > unconfirmedTable {
		t.Errorf("%d unconfirmed flows, more than the table's %d", n, unconfirmedTable)
	}

	// Every established connection keeps its backend and creates no flow.
	got := map[conn]string{}
	for c := range want {
		got[c] = backendOfFrame(frame(c, packets.ACK|packets.PSH)).String()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backends of established flows after the flood (-want +got):\n%s", diff)
	}
	if n := readStats(t, l).Services[tcp80].NewFlows - afterFlood.NewFlows; n != 0 {
		t.Errorf("%d established flows were re-selected after the flood", n)
	}
}
