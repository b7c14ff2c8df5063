package loader

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// isUnconfirmed reports whether m is a set-associative unconfirmed table.
func isUnconfirmed(m *ebpf.Map) bool {
	return m.Type() == ebpf.Array && m.ValueSize() == uint32(unsafe.Sizeof(lbUnconfSet{}))
}

// editUnconfirmed calls edit for every way of m holding a flow and writes the sets back.
func editUnconfirmed(t testing.TB, m *ebpf.Map, edit func(set *lbUnconfSet, w int)) {
	t.Helper()
	sets := map[uint32]*lbUnconfSet{}
	err := walkUnconfirmed(m, func(idx uint32, set *lbUnconfSet, w int, _ lbFlowValue) {
		if sets[idx] == nil {
			c := *set
			sets[idx] = &c
		}
		edit(sets[idx], w)
	})
	if err != nil {
		t.Fatal(err)
	}
	for idx, set := range sets {
		if err := m.Put(idx, set); err != nil {
			t.Fatalf("write unconfirmed set %d: %v", idx, err)
		}
	}
}

// forwardedTo runs in through the program and returns the real server it was forwarded to.
func forwardedTo(t *testing.T, l *Loader, in []byte) netip.Addr {
	t.Helper()
	verdict, out := run(t, l.Program(), in, loIfindex)
	if verdict != xdpTX {
		t.Fatalf("verdict %d, want TX", verdict)
	}
	for a, m := range beMACs {
		if string(out[0:6]) == string(m) {
			return a
		}
	}
	t.Fatalf("sent to unknown MAC %x", out[0:6])
	return netip.Addr{}
}

// TestUnconfirmedTableFindsEveryFlow sends the first packet of many flows and finds each where
// the program put it, through the Go mirror of its hash: explain and the connection counts
// read the table that way.
func TestUnconfirmedTableFindsEveryFlow(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true)),
		svc(tcp6, "rr", be6(beA6, 1, true))))
	const flows = 1000
	ids := map[netip.Addr]uint32{}
	for ap, b := range l.services[tcp80].backends {
		ids[ap.Addr()] = b.id
	}
	for i := range flows {
		sport := uint16(1024 + i)
		in, key := tcpTo(sport), flowKeyOf(client, vip, sport, 80, director.TCP)
		if i%2 == 1 {
			in, key = tcp6To(sport), flowKeyOf(client6, vip6, sport, 80, director.TCP)
		}
		got := forwardedTo(t, l, in)
		v, ok, err := lookupUnconfirmed(l.objs.Unconfirmed, &key)
		if err != nil {
			t.Fatal(err)
		}
		want, known := ids[got]
		if !known {
			want = l.services[tcp6].backends[netip.AddrPortFrom(beA6, 80)].id
		}
		if !ok || v.Backend != want {
			t.Fatalf("flow %d: found %v, backend %d; want found, backend %d (%s)", i, ok, v.Backend, want, got)
		}
	}
	if n := countEntries(t, l.objs.Unconfirmed); n != flows {
		t.Errorf("%d unconfirmed flows, want %d", n, flows)
	}
}

// TestUnconfirmedTornWayIgnored checks that a way whose backend does not agree with its check
// word (another CPU's write seen half done) is not taken for the flow.
func TestUnconfirmedTornWayIgnored(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true))))
	first := forwardedTo(t, l, tcpTo(1000))
	ids := map[netip.Addr]uint32{}
	for ap, b := range l.services[tcp80].backends {
		ids[ap.Addr()] = b.id
	}
	// rr sends the next new flow to the next real server; point the pending flow at the one
	// after that, as a torn write would, without its check word.
	next, other := netip.Addr{}, netip.Addr{}
	for _, a := range []netip.Addr{beA, beB, beC} {
		if a != first && !next.IsValid() {
			next = a
		} else if a != first {
			other = a
		}
	}
	editUnconfirmed(t, l.objs.Unconfirmed, func(set *lbUnconfSet, w int) { set.Backend[w] = ids[other] })
	got := forwardedTo(t, l, tcpTo(1000, func(o *packets.Options) { o.TCPFlags = packets.ACK }))
	if got == other {
		t.Fatalf("ACK went to %s, the torn way's backend", got)
	}
	if got != next {
		t.Errorf("ACK went to %s, want %s (scheduled afresh)", got, next)
	}
}

// TestUnconfirmedReplacesOldest fills one set and checks that a further flow of that set takes
// the way of the flow silent longest, and only that one.
func TestUnconfirmedReplacesOldest(t *testing.T) {
	requireBPF(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	l, err := New(Options{Logger: log, Resolver: goldenResolver(), NoAttach: true, UnconfirmedTableSize: 1024})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	apply(t, l, snap(svc(tcp80, "rr", be(beA, 1, true))))
	if got := l.objs.Unconfirmed.MaxEntries(); got != 1024/unconfWays {
		t.Fatalf("%d sets, want %d", got, 1024/unconfWays)
	}
	// Five client ports whose flows share a set.
	mask := l.objs.Unconfirmed.MaxEntries() - 1
	var ports []uint16
	var set uint32
	for p := uint16(1024); len(ports) < unconfWays+1; p++ {
		k := flowKeyOf(client, vip, p, 80, director.TCP)
		h := flowHash(&k) & mask
		if len(ports) == 0 {
			set = h
		}
		if h == set {
			ports = append(ports, p)
		}
	}
	for _, p := range ports[:unconfWays] {
		forwardedTo(t, l, tcpTo(p))
	}
	// The second flow is the one silent longest.
	oldKey := flowKeyOf(client, vip, ports[1], 80, director.TCP)
	editUnconfirmed(t, l.objs.Unconfirmed, func(s *lbUnconfSet, w int) {
		s.LastSeenNs[w] = monoNow(t)
		if s.Key[w] == oldKey {
			s.LastSeenNs[w] -= uint64(time.Second)
		}
	})
	forwardedTo(t, l, tcpTo(ports[unconfWays]))
	for i, p := range ports {
		k := flowKeyOf(client, vip, p, 80, director.TCP)
		_, ok, err := lookupUnconfirmed(l.objs.Unconfirmed, &k)
		if err != nil {
			t.Fatal(err)
		}
		if want := i != 1; ok != want {
			t.Errorf("flow from port %d in the table: %v, want %v", p, ok, want)
		}
	}
}
