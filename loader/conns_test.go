package loader

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

func TestClassify(t *testing.T) {
	const s = uint64(time.Second)
	tcp := lbSvcConf{IdleNs: 900 * s, FinNs: 120 * s}
	udp := lbSvcConf{IdleNs: 300 * s}
	tests := []struct {
		name         string
		proto        director.Proto
		confirmed    bool
		flags        uint32
		age          uint64
		conf         lbSvcConf
		wantActive   bool
		wantInactive bool
	}{
		{"tcp established", director.TCP, true, 0, 10 * s, tcp, true, false},
		{"tcp established idle past the tcp timeout", director.TCP, true, 0, 901 * s, tcp, false, false},
		{"tcp after fin", director.TCP, true, flowFlagFin, 10 * s, tcp, false, true},
		{"tcp after fin past the tcpfin timeout", director.TCP, true, flowFlagFin, 121 * s, tcp, false, false},
		{"tcp after fin, no tcpfin timeout: tcp timeout", director.TCP, true, flowFlagFin, 500 * s, lbSvcConf{IdleNs: 900 * s}, false, true},
		{"tcp handshake", director.TCP, false, 0, 59 * s, tcp, false, true},
		{"tcp handshake past syn_recv", director.TCP, false, 0, 61 * s, tcp, false, false},
		{"tcp without timeouts never expires", director.TCP, true, 0, 1 << 62, lbSvcConf{}, true, false},
		{"udp confirmed", director.UDP, true, 0, 299 * s, udp, false, true},
		{"udp first datagram", director.UDP, false, 0, 1 * s, udp, false, true},
		{"udp past the udp timeout", director.UDP, true, 0, 301 * s, udp, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, i := classify(uint8(tt.proto), tt.confirmed, tt.flags, tt.age, tt.conf)
			if a != tt.wantActive || i != tt.wantInactive {
				t.Errorf("classify = active %v inactive %v, want %v %v", a, i, tt.wantActive, tt.wantInactive)
			}
		})
	}
}

// flags sets a TCP frame's flags.
func flags(f uint8) func(*packets.Options) {
	return func(o *packets.Options) { o.TCPFlags = f }
}

// sendTo runs a frame of the flow from client:sport and returns the backend it went to.
func sendTo(t *testing.T, l *Loader, sport uint16, f uint8) netip.Addr {
	t.Helper()
	verdict, out := run(t, l.Program(), tcpTo(sport, flags(f)), loIfindex)
	if verdict != xdpTX {
		t.Fatalf("port %d flags %#x: verdict %d, want TX", sport, f, verdict)
	}
	for a, m := range beMACs {
		if string(out[0:6]) == string(m) {
			return a
		}
	}
	t.Fatalf("port %d sent to unknown MAC %x", sport, out[0:6])
	return netip.Addr{}
}

// connect opens n connections (SYN, then ACK) from ports first.. and returns where they went.
func connect(t *testing.T, l *Loader, first uint16, n int) map[netip.Addr]int {
	t.Helper()
	got := map[netip.Addr]int{}
	for p := first; p < first+uint16(n); p++ {
		a := sendTo(t, l, p, packets.SYN)
		if b := sendTo(t, l, p, packets.ACK); b != a {
			t.Fatalf("port %d: SYN to %s, ACK to %s", p, a, b)
		}
		got[a]++
	}
	return got
}

// counts returns the live flow counts of tcp80's backends.
func counts(t *testing.T, l *Loader) map[netip.Addr]FlowCount {
	t.Helper()
	all, err := l.ConnCounts()
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]FlowCount{}
	for ap, c := range all[tcp80] {
		if c != (FlowCount{}) {
			out[ap.Addr()] = c
		}
	}
	return out
}

// TestConnSchedulersSteerNewFlows loads the program, opens real connections through it (SYN and
// ACK frames run with BPF_PROG_TEST_RUN) so that one backend is loaded, and checks that once the
// others may take flows the table built from the live counts sends new connections where the
// scheduler would.
func TestConnSchedulersSteerNewFlows(t *testing.T) {
	tests := []struct {
		algo string
		// weights of A, B and C once all may take flows; A alone holds the 30 connections.
		weights [3]int
		// want is where 20 new connections go.
		want map[netip.Addr]int
	}{
		{"lc", [3]int{1, 1, 1}, map[netip.Addr]int{beB: 10, beC: 10}},
		{"wlc", [3]int{1, 1, 3}, map[netip.Addr]int{beB: 5, beC: 15}},
		{"sed", [3]int{1, 1, 1}, map[netip.Addr]int{beB: 10, beC: 10}},
		{"nq", [3]int{1, 1, 1}, map[netip.Addr]int{beB: 10, beC: 10}},
		{"fo", [3]int{1, 2, 3}, map[netip.Addr]int{beC: 20}},
		{"lblc", [3]int{1, 1, 1}, map[netip.Addr]int{beB: 20}},  // A overloaded: the binding moves to B
		{"lblcr", [3]int{1, 1, 1}, map[netip.Addr]int{beB: 20}}, // B joins A's set and, idle, takes all
		{"ovf", [3]int{20, 2, 1}, nil},                          // A overflows: B and C share by room (3, 2), see below
	}
	for _, tt := range tests {
		t.Run(tt.algo, func(t *testing.T) {
			l := newTestLoader(t, goldenResolver())
			pinCPU(t)
			// Only the Applies below rebuild the table, so the split of the 20 is exact.
			l.conns.period = time.Hour
			apply(t, l, snap(svc(tcp80, tt.algo, be(beA, tt.weights[0], true), be(beB, 0, true), be(beC, 0, true))))
			if got := connect(t, l, 1000, 30); got[beA] != 30 {
				t.Fatalf("setup: connections went to %v, want all 30 to A", got)
			}
			if diff := cmp.Diff(map[netip.Addr]FlowCount{beA: {Active: 30}}, counts(t, l)); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}

			apply(t, l, snap(svc(tcp80, tt.algo, be(beA, tt.weights[0], true), be(beB, tt.weights[1], true), be(beC, tt.weights[2], true))))
			got := map[netip.Addr]int{}
			for p := uint16(2000); p < 2020; p++ {
				got[sendTo(t, l, p, packets.SYN)]++
			}
			if tt.algo == "ovf" {
				// A, over its weight, gets none. More arrivals are expected (30 last period)
				// than B and C have room for (3 and 2 up to weight+1), so the table splits
				// them by room: IPVS would refuse the surplus, a table cannot count it.
				if diff := cmp.Diff(map[netip.Addr]int{beB: 12, beC: 8}, got); diff != "" {
					t.Errorf("new connections (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("new connections (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConnRefresh checks the periodic refresh: after the loaded backend's connections close
// (RST), a refresh sends new connections back to it, and counts move from active to inactive.
func TestConnRefresh(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	pinCPU(t)
	l.conns.period = 50 * time.Millisecond
	apply(t, l, snap(svc(tcp80, "lc", be(beA, 1, true), be(beB, 0, true))))
	connect(t, l, 1000, 20)
	if diff := cmp.Diff(map[netip.Addr]FlowCount{beA: {Active: 20}}, counts(t, l)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	// B takes the next 10 while A is drained, then both may take flows: B, less loaded, gets
	// the most entries.
	apply(t, l, snap(svc(tcp80, "lc", be(beA, 0, true), be(beB, 1, true))))
	if got := connect(t, l, 3000, 10); got[beB] != 10 {
		t.Fatalf("connections went to %v, want all 10 to B", got)
	}
	apply(t, l, snap(svc(tcp80, "lc", be(beA, 1, true), be(beB, 1, true))))
	l.mu.Lock()
	running := l.conns.running
	idA := l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id
	l.mu.Unlock()
	if !running {
		t.Error("refresh goroutine not started")
	}
	// mostlyA reports whether A has most of the table's entries.
	mostlyA := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		ids := l.conns.svcs[tcp80].ids
		n := 0
		for _, id := range ids {
			if id == idA {
				n++
			}
		}
		return 2*n > len(ids)
	}
	if mostlyA() {
		t.Fatal("A, with 20 connections to B's 10, has most of the table")
	}

	for p := uint16(1000); p < 1020; p++ {
		sendTo(t, l, p, packets.RST|packets.ACK)
	}
	// The refresh goroutine notices within a few periods that A is idle.
	refreshed := false
	for range 100 {
		if refreshed = mostlyA(); refreshed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !refreshed {
		t.Fatal("the table was not refreshed to favour A within 5 s")
	}
	want := map[netip.Addr]FlowCount{beA: {Inactive: 20}, beB: {Active: 10}}
	if diff := cmp.Diff(want, counts(t, l)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	got := map[netip.Addr]int{}
	for p := uint16(4000); p < 4010; p++ {
		got[sendTo(t, l, p, packets.SYN)]++
	}
	if got[beA] <= got[beB] {
		t.Errorf("after A's connections closed, new ones went to %v, want most to A", got)
	}

	ts, err := l.TrafficStats()
	if err != nil {
		t.Fatal(err)
	}
	wantTS := map[netip.AddrPort][2]uint64{
		netip.AddrPortFrom(beA, 80): {0, 20 + uint64(got[beA])},
		netip.AddrPortFrom(beB, 80): {10, uint64(got[beB])},
	}
	gotTS := map[netip.AddrPort][2]uint64{}
	for ap, c := range ts.Backends[tcp80] {
		gotTS[ap] = [2]uint64{c.ActiveConns, c.InactConns}
	}
	if diff := cmp.Diff(wantTS, gotTS); diff != "" {
		t.Errorf("TrafficStats active, inactive per backend (-want +got):\n%s", diff)
	}
	if s := ts.Services[tcp80]; s.ActiveConns != 10 || s.InactConns != 30 {
		t.Errorf("service: active %d inactive %d, want 10 30", s.ActiveConns, s.InactConns)
	}

	// Close stops the refresh goroutine.
	done := l.conns.done
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("refresh goroutine still running after Close")
	}
}

// TestConnCountsIgnoreOtherServices checks that a flow counts only for the service it belongs
// to: a flow whose backend id is now another service's (ids are recycled) is not counted.
func TestConnCountsIgnoreOtherServices(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	pinCPU(t)
	apply(t, l, snap(svc(tcp80, "lc", be(beA, 1, true))))
	connect(t, l, 1000, 5)
	// Forge a flow of udp53 pinned to A's id: it must not count for tcp80's A.
	l.mu.Lock()
	id := l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id
	l.mu.Unlock()
	k := lbFlowKey{Sport: htons(9), Dport: htons(53), Proto: uint8(director.UDP), Family: afInet}
	_, k.Dst = addrKey(vip)
	now, err := ktimeNow()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.objs.Flows.Put(&k, &lbFlowValue{Backend: id, LastSeenNs: now}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[netip.Addr]FlowCount{beA: {Active: 5}}, counts(t, l)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// TestOvfRefusesWhenAllOverflow checks IPVS's ovf rule that a connection finds no server when
// every server has more active connections than its weight: new flows are dropped, established
// ones keep going.
func TestOvfRefusesWhenAllOverflow(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	pinCPU(t)
	l.conns.period = time.Hour
	s := snap(svc(tcp80, "ovf", be(beA, 2, true)))
	apply(t, l, s)
	connect(t, l, 1000, 3) // 3 active > weight 2
	// Reading the counts also refreshes those an Apply reuses (for 100 ms).
	if diff := cmp.Diff(map[netip.Addr]FlowCount{beA: {Active: 3}}, counts(t, l)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	apply(t, l, s)
	if verdict, _ := run(t, l.Program(), tcpTo(2000), loIfindex); verdict != xdpDrop {
		t.Errorf("new connection: verdict %d, want drop", verdict)
	}
	if got := sendTo(t, l, 1000, packets.ACK); got != beA {
		t.Errorf("established connection went to %s, want A", got)
	}
	// One closes: A is back within its weight and takes new connections.
	sendTo(t, l, 1001, packets.FIN|packets.ACK)
	if diff := cmp.Diff(map[netip.Addr]FlowCount{beA: {Active: 2, Inactive: 1}}, counts(t, l)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	apply(t, l, s)
	if got := sendTo(t, l, 2001, packets.SYN); got != beA {
		t.Errorf("after a close, new connection went to %s, want A", got)
	}
}

// BenchmarkCountFlows walks a full flow table of 65536 confirmed flows, what one refresh costs
// per 65536 connections.
func BenchmarkCountFlows(b *testing.B) {
	requireBPF(b)
	l, err := New(Options{NoAttach: true, Resolver: goldenResolver(), FlowTableSize: 65536})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if err := l.Apply(context.Background(), *snap(svc(tcp80, "lc", be(beA, 1, true)))); err != nil {
		b.Fatal(err)
	}
	id := l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id
	now, err := ktimeNow()
	if err != nil {
		b.Fatal(err)
	}
	n := int(l.objs.Flows.MaxEntries())
	keys := make([]lbFlowKey, n)
	vals := make([]lbFlowValue, n)
	for i := range keys {
		keys[i] = lbFlowKey{Sport: uint16(i), Dport: htons(80), Proto: uint8(director.TCP), Family: afInet}
		keys[i].Src[0], keys[i].Src[1] = byte(i>>16), byte(i>>8)
		_, keys[i].Dst = addrKey(vip)
		vals[i] = lbFlowValue{Backend: id, LastSeenNs: now}
	}
	if _, err := l.objs.Flows.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l.mu.Lock()
		counts, err := l.flowCounts(0)
		l.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		if counts[id].Active < n*9/10 { // an LRU may evict a few on insert
			b.Fatalf("counted %d active flows, want about %d", counts[id].Active, n)
		}
	}
}
