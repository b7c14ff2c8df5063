package loader

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

func apply(t *testing.T, l *Loader, s *director.Snapshot) {
	t.Helper()
	if err := l.Apply(context.Background(), *s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// backendOf runs a frame from src:sport and returns the backend address it was sent to.
func backendOf(t *testing.T, l *Loader, src netip.Addr, sport uint16) netip.Addr {
	t.Helper()
	in := packets.TCP(packets.Options{Src: src, Dst: vip, SrcPort: sport, DstPort: 80, TCPFlags: packets.SYN})
	verdict, out := run(t, l.Program(), in, loIfindex)
	if verdict != xdpTX {
		t.Fatalf("verdict %d for %s:%d, want TX", verdict, src, sport)
	}
	for a, m := range beMACs {
		if string(out[0:6]) == string(m) {
			return a
		}
	}
	t.Fatalf("frame for %s:%d sent to unknown MAC %x", src, sport, out[0:6])
	return netip.Addr{}
}

func TestApplyWritesOnlyDeltas(t *testing.T) {
	res := goldenResolver()
	l := newTestLoader(t, res)
	s := snap(
		svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true)),
		svc(udp53, "wrr", be(beA, 2, true), be(beC, 1, false)),
	)
	apply(t, l, s)
	if l.writes == 0 {
		t.Fatal("first Apply wrote nothing")
	}

	l.writes = 0
	apply(t, l, s)
	if l.writes != 0 {
		t.Errorf("unchanged snapshot: %d writes, want 0", l.writes)
	}

	// A new MAC for A is one backend write per service using A, and no table rewrite.
	res.set(beA, NextHop{Ifindex: loIfindex, SrcMAC: lbMAC, DstMAC: mac("02:00:00:00:09:09")})
	l.writes = 0
	apply(t, l, s)
	if l.writes != 2 {
		t.Errorf("MAC refresh: %d writes, want 2", l.writes)
	}
	res.set(beA, NextHop{Ifindex: loIfindex, SrcMAC: lbMAC, DstMAC: beMACs[beA]})
	apply(t, l, s)

	// C coming up on udp53 changes that table only: backend, table fill, slot, service, old slot.
	s2 := snap(
		svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true)),
		svc(udp53, "wrr", be(beA, 2, true), be(beC, 1, true)),
	)
	l.writes = 0
	apply(t, l, s2)
	if l.writes != 5 {
		t.Errorf("backend up: %d writes, want 5", l.writes)
	}
}

func TestNextHopKeptThroughFailedRefresh(t *testing.T) {
	res := goldenResolver()
	l := newTestLoader(t, res)
	s := snap(svc(tcp80, "rr", be(beA, 1, true)))
	apply(t, l, s)
	upA := func() bool {
		t.Helper()
		var v lbBackendValue
		must(t, l.objs.Backends.Lookup(l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id, &v))
		return v.Flags&beFlagUp != 0 && l.services[tcp80].val.SelSize == 1
	}

	res.fail(beA, errors.New("arp: no answer"))
	l.writes = 0
	apply(t, l, s)
	if !upA() || l.writes != 0 {
		t.Errorf("after a failed refresh: up %v, %d writes; want the last next hop kept", upA(), l.writes)
	}

	res.fail(beA, ErrNotDirect)
	apply(t, l, s)
	if upA() {
		t.Error("backend behind a gateway still up")
	}
}

func TestApplyRemovesEverything(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(
		svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true)),
		svc(udp53, "rr", be(beC, 1, true)),
	))
	apply(t, l, snap())

	var k lbSvcKey
	var v lbSvcValue
	if it := l.objs.Services.Iterate(); it.Next(&k, &v) {
		t.Errorf("services still holds %+v", k)
	}
	var slot uint32
	var inner *ebpf.Map
	for slot = 0; slot < selSlots; slot++ {
		if err := l.objs.SelTables.Lookup(slot, &inner); err == nil {
			inner.Close()
			t.Errorf("sel_tables slot %d still holds a table", slot)
		}
	}
	for id := uint32(0); id < 4; id++ {
		var bv lbBackendValue
		if err := l.objs.Backends.Lookup(id, &bv); err != nil {
			t.Fatal(err)
		}
		if bv != (lbBackendValue{}) {
			t.Errorf("backend %d not cleared: %+v", id, bv)
		}
	}
	if len(l.services) != 0 {
		t.Errorf("loader still tracks %d services", len(l.services))
	}

	// Ids come back: the pools hand out freed ids before new ones.
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true))))
	if got := l.services[tcp80].val.Id; got >= 2 {
		t.Errorf("service id %d not reused", got)
	}
	if got := l.services[tcp80].backends[netip.AddrPortFrom(beA, 80)].id; got >= 3 {
		t.Errorf("backend id %d not reused", got)
	}
}

func TestApplyUnsupported(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	v6 := director.ServiceKey{VIP: netip.MustParseAddr("2001:db8::1"), Port: 80, Proto: director.TCP}
	// A real server of the other address family: neither DR nor TUN nor NAT forwards to it.
	other := be(netip.MustParseAddr("2001:db8::9"), 1, true)
	other.Method = director.MethodTUN
	err := l.Apply(context.Background(), *snap(
		svc(tcp80, "rr", be(beA, 1, true), other),
		svc(v6, "rr", be(beA, 1, true)),
	))
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Apply = %v, want ErrUnsupported", err)
	}
	// What is supported is still forwarded: all flows go to A.
	pinCPU(t)
	for p := uint16(1); p <= 4; p++ {
		if got := backendOf(t, l, client, p); got != beA {
			t.Errorf("port %d went to %s, want %s", p, got, beA)
		}
	}
}

// TestMaglevConsistent checks that mh keeps a client on one backend whatever its ports, and
// that the program indexes the table with SourceHash, so Go can predict its choice.
func TestMaglevConsistent(t *testing.T) {
	// beR is on ifindex 42: put it on loopback so that every choice is a TX.
	res := goldenResolver()
	res.set(beR, NextHop{Ifindex: loIfindex, SrcMAC: lbMAC, DstMAC: beMACs[beR]})
	l := newTestLoader(t, res)
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true), be(beR, 1, true))))

	table := readTable(t, l, tcp80)
	idToAddr := map[uint32]netip.Addr{}
	for ap, b := range l.services[tcp80].backends {
		idToAddr[b.id] = ap.Addr()
	}
	seen := map[netip.Addr]int{}
	for i := range 64 {
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i * 3)})
		want := idToAddr[table[SourceHash(src)%uint32(len(table))]]
		for p := uint16(1); p <= 16; p++ {
			got := backendOf(t, l, src, 40000+p*7)
			if got != want {
				t.Fatalf("client %s port %d went to %s; SourceHash predicts %s", src, 40000+p*7, got, want)
			}
		}
		seen[want]++
	}
	if len(seen) != 4 {
		t.Errorf("64 clients reached %d of 4 backends: %v", len(seen), seen)
	}
}

// readTable returns the selection table the kernel holds for key.
func readTable(t *testing.T, l *Loader, key director.ServiceKey) []uint32 {
	t.Helper()
	st := l.services[key]
	var inner *ebpf.Map
	if err := l.objs.SelTables.Lookup(st.val.SelSlot, &inner); err != nil {
		t.Fatalf("look up slot %d: %v", st.val.SelSlot, err)
	}
	defer inner.Close()
	table := make([]uint32, inner.MaxEntries())
	for i := range table {
		if err := inner.Lookup(uint32(i), &table[i]); err != nil {
			t.Fatal(err)
		}
	}
	if uint32(len(table)) != st.val.SelSize {
		t.Fatalf("table has %d entries, service says %d", len(table), st.val.SelSize)
	}
	return table
}

func TestRoundRobinSpreads(t *testing.T) {
	requireBPF(t)
	tests := []struct {
		name  string
		snap  *director.Snapshot
		flows int
		want  map[netip.Addr]int
	}{
		{"rr", snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 5, true), be(beC, 1, true))), 30,
			map[netip.Addr]int{beA: 10, beB: 10, beC: 10}},
		{"wrr", snap(svc(tcp80, "wrr", be(beA, 3, true), be(beB, 1, true))), 40,
			map[netip.Addr]int{beA: 30, beB: 10}},
		// keepalived's default lb_algo needs connection counts: weighted round robin stands in.
		{"wlc", snap(svc(tcp80, "wlc", be(beA, 3, true), be(beB, 1, true))), 40,
			map[netip.Addr]int{beA: 30, beB: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinCPU(t) // subtests run on goroutines of their own
			l := newTestLoader(t, goldenResolver())
			apply(t, l, tt.snap)
			got := map[netip.Addr]int{}
			for p := range tt.flows {
				got[backendOf(t, l, client, uint16(1000+p))]++
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("flows per backend (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceHashKnownValues(t *testing.T) {
	// Values of src_hash_v4 from bpf/hash.h compiled natively with clang-14, to pin the Go
	// mirror bit for bit; TestMaglevConsistent compares it with the loaded program as well.
	for addr, want := range map[string]uint32{
		"0.0.0.0":         0xf4e039d0,
		"10.0.0.1":        0x4e2fd0c0,
		"192.0.2.7":       0x4dfff5d7,
		"255.255.255.255": 0x8a9af746,
		"::ffff:10.0.0.1": 0x4e2fd0c0,
	} {
		if got := SourceHash(netip.MustParseAddr(addr)); got != want {
			t.Errorf("SourceHash(%s) = %#08x, want %#08x", addr, got, want)
		}
	}
}

// barrierResolver answers only once n lookups are in flight at the same time, so an Apply that
// resolved one real server after another would get no answers at all.
type barrierResolver struct {
	*fakeResolver
	arrived chan struct{}
	release chan struct{}
}

func (b *barrierResolver) NextHop(ctx context.Context, addr netip.Addr) (NextHop, error) {
	b.arrived <- struct{}{}
	select {
	case <-b.release:
	case <-time.After(5 * time.Second):
		return NextHop{}, fmt.Errorf("lookup of %s was never joined by the others", addr)
	}
	return b.fakeResolver.NextHop(ctx, addr)
}

func TestNextHopsResolvedConcurrently(t *testing.T) {
	const n = 4
	res := &barrierResolver{fakeResolver: newFakeResolver(), arrived: make(chan struct{}, n), release: make(chan struct{})}
	var bes []director.Backend
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(20 + i)})
		res.set(a, NextHop{Ifindex: 1, SrcMAC: mac("02:00:00:00:00:01"), DstMAC: mac(fmt.Sprintf("02:00:00:00:00:%02x", 20+i))})
		bes = append(bes, be(a, 1, true))
	}
	l := newTestLoader(t, res)
	go func() {
		for range n {
			<-res.arrived
		}
		close(res.release)
	}()
	apply(t, l, snap(svc(tcp80, "rr", bes...)))
	if got := l.services[tcp80].val.SelSize; got != n {
		t.Errorf("selection table holds %d backends, want %d: lookups did not run concurrently", got, n)
	}
}
