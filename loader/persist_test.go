package loader

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

var (
	// sameNet is another client of client's /24.
	sameNet = netip.MustParseAddr("192.0.2.99")
	// stranger is a client outside client's /24.
	stranger = netip.MustParseAddr("192.0.3.7")

	tcpAll = director.ServiceKey{VIP: vip, Port: 0, Proto: director.TCP}
	udpAll = director.ServiceKey{VIP: vip, Port: 0, Proto: director.UDP}
)

// monoNow is the program's clock (ktimeNow).
func monoNow(t testing.TB) uint64 {
	t.Helper()
	now, err := ktimeNow()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// age makes every entry of m (flows, unconfirmed or persist) last seen d ago, standing in for
// d of silence: the program reads the kernel's monotonic clock, which a test cannot wind on.
func age(t testing.TB, m *ebpf.Map, d time.Duration) {
	t.Helper()
	then := monoNow(t) - uint64(d.Nanoseconds())
	if isUnconfirmed(m) {
		editUnconfirmed(t, m, func(set *lbUnconfSet, w int) { set.LastSeenNs[w] = then })
		return
	}
	var k []byte
	var v lbFlowValue
	var keys [][]byte
	var vals []lbFlowValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
		v.LastSeenNs = then
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate %s: %v", m, err)
	}
	for i := range keys {
		if err := m.Put(keys[i], &vals[i]); err != nil {
			t.Fatalf("age %s: %v", m, err)
		}
	}
}

// persistent is svc with persistence_timeout d and granularity prefix.
func persistent(s director.Service, d time.Duration, prefix int) director.Service {
	s.Persistence, s.PersistencePrefix = d, prefix
	return s
}

func from(src netip.Addr) func(*packets.Options) {
	return func(o *packets.Options) { o.Src = src }
}

func toPort(p uint16) func(*packets.Options) {
	return func(o *packets.Options) { o.DstPort = p }
}

func ack(o *packets.Options) { o.TCPFlags = packets.ACK }

// TestGoldenPersistence runs keepalived's persistence_timeout through the program: a client's
// new connections, from any port, go where its first went while its template is fresh, and a
// drained, failed or removed real server loses its persistent clients.
func TestGoldenPersistence(t *testing.T) {
	requireBPF(t)
	const timeout = 300 * time.Second
	rrP := func(prefix int, bes ...director.Backend) *director.Snapshot {
		return snap(persistent(svc(tcp80, "rr", bes...), timeout, prefix))
	}
	fwd := func(in []byte, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	with := func(s step, setup *director.Snapshot) step { s.setup = setup; return s }
	AB := []director.Backend{be(beA, 1, true), be(beB, 1, true)}

	// pre runs before a step's packet, on the loader the steps run through.
	type pstep struct {
		step
		pre func(t *testing.T, l *Loader)
	}
	agePersist := func(d time.Duration) func(*testing.T, *Loader) {
		return func(t *testing.T, l *Loader) { age(t, l.objs.Persist, d) }
	}
	// later stands in for two seconds passing since the connections' last packets: a flow
	// refreshes its template on its first packet of each second.
	later := func(t *testing.T, l *Loader) {
		age(t, l.objs.Flows, 2*time.Second)
		age(t, l.objs.Unconfirmed, 2*time.Second)
	}
	tests := []struct {
		name  string
		steps []pstep
	}{
		{"without persistence connections spread", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), snap(svc(tcp80, "rr", AB...)))},
			{step: fwd(tcpTo(1001), tcp80, beB, true)},
		}},
		{"new connections of a client stick", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: fwd(tcpTo(1001), tcp80, beA, true)},
			{step: fwd(tcpTo(1002), tcp80, beA, true)},
			// Another client is scheduled: the cursor moved once, to B.
			{step: fwd(tcpTo(1000, from(sameNet)), tcp80, beB, true)},
			{step: fwd(tcpTo(1003, from(sameNet)), tcp80, beB, true)},
			{step: fwd(tcpTo(1004), tcp80, beA, true)},
		}},
		{"granularity groups clients", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(24, AB...))},
			{step: fwd(tcpTo(1001, from(sameNet)), tcp80, beA, true)},
			{step: fwd(tcpTo(1002, from(stranger)), tcp80, beB, true)},
		}},
		{"expired template re-schedules", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: fwd(tcpTo(1001), tcp80, beA, true), pre: agePersist(timeout - 10*time.Second)},
			{step: fwd(tcpTo(1002), tcp80, beB, true), pre: agePersist(timeout + time.Second)},
			// The new template names B.
			{step: fwd(tcpTo(1003), tcp80, beB, true)},
		}},
		{"traffic keeps the template fresh", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			// A packet of the open connection, late in the timeout, refreshes the template.
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), pre: func(t *testing.T, l *Loader) {
				agePersist(timeout-time.Second)(t, l)
				later(t, l)
			}},
			{step: fwd(tcpTo(1001), tcp80, beA, true), pre: func(t *testing.T, l *Loader) {
				if got := templateAge(t, l); got > 5*time.Second {
					t.Errorf("template last seen %v ago after a packet of its connection, want just now", got)
				}
			}},
		}},
		{"a busy connection looks its template up once a second", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			// Within the same second the template is not touched: gone, it stays gone.
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), pre: func(t *testing.T, l *Loader) {
				clearMap(t, l.objs.Persist)
				sameEpoch(t, l)
			}},
			{step: fwd(tcpTo(1001), tcp80, beB, true), pre: func(t *testing.T, l *Loader) {
				if n := len(mapKeys(t, l.objs.Persist)); n != 0 {
					t.Errorf("persist holds %d templates, want 0", n)
				}
			}},
		}},
		{"evicted template is restored by traffic", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false), pre: func(t *testing.T, l *Loader) {
				clearMap(t, l.objs.Persist)
				later(t, l)
			}},
			{step: fwd(tcpTo(1001), tcp80, beA, true)},
		}},
		{"drained real server loses persistent clients, keeps connections", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: with(fwd(tcpTo(1001), tcp80, beB, true), rrP(0, be(beA, 0, true), be(beB, 1, true)))},
			{step: fwd(tcpTo(1000, ack), tcp80, beA, false)},
			// Back at weight 1, A does not get the client back: its template now names B.
			{step: with(fwd(tcpTo(1002), tcp80, beB, true), rrP(0, AB...))},
		}},
		{"failed real server loses persistent clients", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: with(fwd(tcpTo(1001), tcp80, beB, true), rrP(0, be(beA, 1, false), be(beB, 1, true)))},
			{step: fwd(tcpTo(1000, ack), tcp80, beB, true)},
		}},
		{"removed real server loses persistent clients", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), rrP(0, AB...))},
			{step: with(fwd(tcpTo(1001), tcp80, beB, true), rrP(0, be(beB, 1, true)))},
		}},
		{"ipv6 granularity /64", []pstep{
			{step: with(fwd(tcp6To(1000), tcp6, beA6, true),
				snap(persistent(svc(tcp6, "rr", be6(beA6, 1, true), be6(beB6, 1, true)), timeout, 64)))},
			{step: fwd(tcp6To(1001, from(netip.MustParseAddr("2001:db8:2::ffff:1"))), tcp6, beA6, true)},
			{step: fwd(tcp6To(1002, from(netip.MustParseAddr("2001:db8:2:1::7"))), tcp6, beB6, true)},
			{step: fwd(tcp6To(1003), tcp6, beA6, true)},
		}},
		{"ipv6 whole address by default", []pstep{
			{step: with(fwd(tcp6To(1000), tcp6, beA6, true),
				snap(persistent(svc(tcp6, "rr", be6(beA6, 1, true), be6(beB6, 1, true)), timeout, 0)))},
			{step: fwd(tcp6To(1001, from(netip.MustParseAddr("2001:db8:2::8"))), tcp6, beB6, true)},
			{step: fwd(tcp6To(1002), tcp6, beA6, true)},
		}},
		{"each service keeps its own templates", []pstep{
			{step: with(fwd(tcpTo(1000), tcp80, beA, true), snap(
				persistent(svc(udp53, "rr", be(beA, 1, true), be(beB, 1, true)), timeout, 0),
				persistent(svc(tcp80, "rr", AB...), timeout, 0)))},
			{step: fwd(udpTo(53), udp53, beA, true)},
			{step: fwd(udpTo(53, func(o *packets.Options) { o.SrcPort = 5354 }), udp53, beA, true)},
			{step: fwd(tcpTo(1001), tcp80, beA, true)},
		}},
		{"port-0 service keeps one real server for every port", []pstep{
			{step: with(fwd(tcpTo(1000, toPort(80)), tcpAll, beA, true),
				snap(persistent(svc(tcpAll, "rr", AB...), timeout, 0)))},
			{step: fwd(tcpTo(1001, toPort(443)), tcpAll, beA, true)},
			{step: fwd(tcpTo(1002, toPort(8443)), tcpAll, beA, true)},
			{step: fwd(tcpTo(1003, toPort(22), from(sameNet)), tcpAll, beB, true)},
			{step: fwd(tcpTo(1004, toPort(22), from(sameNet)), tcpAll, beB, true)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinCPU(t)
			res := goldenResolver()
			l := newTestLoader(t, res)
			var steps []step
			for _, ps := range tt.steps {
				s, pre := ps.step, ps.pre
				if pre != nil {
					s.do = func() { pre(t, l) }
				}
				steps = append(steps, s)
			}
			runStepsOn(t, l, res, steps)
		})
	}
}

// templateAge is how long ago the only persistence template was last seen.
func templateAge(t *testing.T, l *Loader) time.Duration {
	t.Helper()
	var k lbPersistKey
	var v lbFlowValue
	n := 0
	it := l.objs.Persist.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil || n != 1 {
		t.Fatalf("persist holds %d templates (%v), want 1", n, err)
	}
	return time.Duration(monoNow(t) - v.LastSeenNs)
}

// mapKeys returns the keys of a flow-valued map.
func mapKeys(t testing.TB, m *ebpf.Map) [][]byte {
	t.Helper()
	var k []byte
	var v lbFlowValue
	var keys [][]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate %s: %v", m, err)
	}
	return keys
}

// sameEpoch marks every flow as just seen, at least 50 ms before the clock enters the next
// template-refresh epoch (PERSIST_EPOCH_SHIFT), so that the step's packet is in the same one.
func sameEpoch(t testing.TB, l *Loader) {
	t.Helper()
	const epoch = 1 << 30
	if monoNow(t)%epoch > epoch-uint64(50*time.Millisecond) {
		time.Sleep(60 * time.Millisecond)
	}
	age(t, l.objs.Flows, 0)
	age(t, l.objs.Unconfirmed, 0)
}

// clearMap deletes every entry of a flow-valued map.
func clearMap(t testing.TB, m *ebpf.Map) {
	t.Helper()
	if isUnconfirmed(m) {
		editUnconfirmed(t, m, func(set *lbUnconfSet, w int) { set.Check[w] = 0 })
		return
	}
	for _, k := range mapKeys(t, m) {
		if err := m.Delete(k); err != nil {
			t.Fatalf("delete from %s: %v", m, err)
		}
	}
}

// TestGoldenPortZero checks keepalived's all-ports services (virtual_server IP 0): they take the
// ports of their VIP and protocol that no service names, and DR keeps the port the client asked.
func TestGoldenPortZero(t *testing.T) {
	requireBPF(t)
	fwd := func(in []byte, key director.ServiceKey, a netip.Addr, newFlow bool) step {
		return step{in: in, wantVerdict: xdpTX, wantOut: dr(in, a), wantReason: ReasonTxDR,
			wantSvc: key, wantBackend: a, wantNewFlow: newFlow}
	}
	both := snap(
		persistent(svc(tcpAll, "rr", be(beA, 1, true), be(beB, 1, true)), time.Minute, 0),
		svc(tcp80, "rr", be(beC, 1, true)),
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"exact port first, then port 0", []step{
			func() step { s := fwd(tcpTo(1000), tcp80, beC, true); s.setup = both; return s }(),
			fwd(tcpTo(1001, toPort(443)), tcpAll, beA, true),
			fwd(tcpTo(1002, toPort(80)), tcp80, beC, true),
			fwd(tcpTo(1003, toPort(65535)), tcpAll, beA, true),
		}},
		{"icmp error of a port-0 flow reaches its backend", []step{
			func() step { s := fwd(tcpTo(1000, toPort(443)), tcpAll, beA, true); s.setup = both; return s }(),
			{in: fragNeeded(quoted(vip, client, 443, 1000, false, 8)), wantVerdict: xdpTX,
				wantOut: dr(fragNeeded(quoted(vip, client, 443, 1000, false, 8)), beA), wantReason: ReasonTxDR,
				wantSvc: tcpAll, wantBackend: beA},
		}},
		{"other protocol passes", []step{
			{setup: both, in: udpTo(443), wantVerdict: xdpPass, wantReason: ReasonPassNotVIP},
		}},
		{"udp port 0", []step{
			func() step {
				s := fwd(udpTo(5000), udpAll, beB, true)
				s.setup = snap(svc(udpAll, "rr", be(beB, 1, true)))
				return s
			}(),
			fwd(udpTo(5001), udpAll, beB, true),
		}},
		{"removing the exact service hands its port to port 0", []step{
			func() step { s := fwd(tcpTo(1000), tcp80, beC, true); s.setup = both; return s }(),
			func() step {
				s := fwd(tcpTo(1001), tcpAll, beA, true)
				s.setup = snap(persistent(svc(tcpAll, "rr", be(beA, 1, true), be(beB, 1, true)), time.Minute, 0))
				return s
			}(),
		}},
		{"without port 0 other ports pass", []step{
			{setup: snap(svc(tcp80, "rr", be(beC, 1, true))), in: tcpTo(1000, toPort(443)), wantVerdict: xdpPass, wantReason: ReasonPassNotVIP},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

// TestApplyReplacesAtCapacity checks that adding services before removing the ones they replace
// (so that an all-ports service taking over a port leaves no gap) still lets a snapshot replace
// every service when the tables are full: what found no free id is added after the removals.
func TestApplyReplacesAtCapacity(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	full := func(port0 uint16) *director.Snapshot {
		s := &director.Snapshot{}
		for i := range maxServices {
			key := director.ServiceKey{VIP: vip, Port: port0 + uint16(i), Proto: director.TCP}
			s.Services = append(s.Services, svc(key, "rr", be(beA, 1, true)))
		}
		return s
	}
	apply(t, l, full(1000))
	apply(t, l, full(5000))
	if got := len(l.services); got != maxServices {
		t.Fatalf("%d services after the replacement, want %d", got, maxServices)
	}
	for _, port := range []uint16{5000, 5000 + maxServices - 1} {
		verdict, _ := run(t, l.Program(), tcpTo(1000, toPort(port)), loIfindex)
		if verdict != xdpTX {
			t.Errorf("port %d: verdict %d, want TX", port, verdict)
		}
	}
	if verdict, _ := run(t, l.Program(), tcpTo(1001, toPort(1000)), loIfindex); verdict != xdpPass {
		t.Errorf("removed port 1000: verdict %d, want pass", verdict)
	}
}
