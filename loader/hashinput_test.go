package loader

import (
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// hashLoader loads a service of tcp80 with A, B, C and R (all reachable by TX) under algo and
// flags, and returns it with the map from backend ids to addresses.
func hashLoader(t *testing.T, algo string, flags director.SchedFlags, bes ...director.Backend) (*Loader, map[uint32]netip.Addr) {
	t.Helper()
	res := goldenResolver()
	res.set(beR, NextHop{Ifindex: loIfindex, SrcMAC: lbMAC, DstMAC: beMACs[beR]})
	l := newTestLoader(t, res)
	if len(bes) == 0 {
		bes = []director.Backend{be(beA, 1, true), be(beB, 1, true), be(beC, 1, true), be(beR, 1, true)}
	}
	s := svc(tcp80, algo, bes...)
	s.SchedFlags = flags
	apply(t, l, snap(s))
	ids := map[uint32]netip.Addr{}
	for ap, b := range l.services[tcp80].backends {
		ids[b.id] = ap.Addr()
	}
	return l, ids
}

// TestHashInputs checks what each hashing scheduler hashes, as IPVS: sh and mh the client
// address, sh-port and mh-port the address and port, dh the destination; the program's choice
// is the table entry the Go mirror of its hash predicts.
func TestHashInputs(t *testing.T) {
	requireBPF(t)
	tests := []struct {
		algo  string
		flags director.SchedFlags
		// hash predicts the table index of a connection from src:sport to the VIP.
		hash func(src netip.Addr, sport uint16) uint32
		// spreadsPorts says one client's connections reach several backends.
		spreadsPorts bool
	}{
		{"sh", 0, func(src netip.Addr, _ uint16) uint32 { return SourceHash(src) }, false},
		{"mh", 0, func(src netip.Addr, _ uint16) uint32 { return SourceHash(src) }, false},
		{"sh", director.SchedPort, SourcePortHash, true},
		{"mh", director.SchedPort, SourcePortHash, true},
		{"sh", director.SchedPort | director.SchedFallback, SourcePortHash, true},
		{"dh", 0, func(netip.Addr, uint16) uint32 { return SourceHash(vip) }, false},
	}
	for _, tt := range tests {
		name := tt.algo
		if tt.flags&director.SchedPort != 0 {
			name += "-port"
		}
		if tt.flags&director.SchedFallback != 0 {
			name += "-fallback"
		}
		t.Run(name, func(t *testing.T) {
			if tt.algo == "dh" && tableAlgo("dh") != "mh" {
				t.Skip("dh needs a Maglev table: tableAlgo must map dh to mh")
			}
			l, ids := hashLoader(t, tt.algo, tt.flags)
			table := readTable(t, l, tcp80)
			clients := map[netip.Addr]int{}
			perClient := map[netip.Addr]map[netip.Addr]bool{}
			for i := range 32 {
				src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i * 5)})
				perClient[src] = map[netip.Addr]bool{}
				for p := range uint16(8) {
					sport := 30000 + p*101
					want := ids[table[tt.hash(src, sport)%uint32(len(table))]]
					got := backendOf(t, l, src, sport)
					if got != want {
						t.Fatalf("%s:%d went to %s, the hash predicts %s", src, sport, got, want)
					}
					clients[got]++
					perClient[src][got] = true
				}
			}
			spread := false
			for _, bes := range perClient {
				spread = spread || len(bes) > 1
			}
			if spread != tt.spreadsPorts {
				t.Errorf("one client's ports reach several backends: %v, want %v", spread, tt.spreadsPorts)
			}
			if tt.algo == "dh" && len(clients) != 1 {
				t.Errorf("dh sent one VIP's traffic to %d backends, want 1: %v", len(clients), clients)
			}
			if tt.algo != "dh" && len(clients) != 4 {
				t.Errorf("256 connections reached %d of 4 backends: %v", len(clients), clients)
			}
		})
	}
}

// TestHashMissKeepsBackend checks that an established connection whose flow entry is gone (evicted,
// or on another director) still reaches its backend under every hashing scheduler.
func TestHashMissKeepsBackend(t *testing.T) {
	requireBPF(t)
	for _, tc := range []struct {
		name  string
		algo  string
		flags director.SchedFlags
	}{{"mh", "mh", 0}, {"sh", "sh", 0}, {"sh-port", "sh", director.SchedPort}, {"mh-port", "mh", director.SchedPort}} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := hashLoader(t, tc.algo, tc.flags)
			for i := range 16 {
				src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i * 7)})
				sport := uint16(40000 + i*13)
				first := backendOf(t, l, src, sport)
				clearMap(t, l.objs.Flows)
				clearMap(t, l.objs.Unconfirmed)
				in := packets.TCP(packets.Options{Src: src, Dst: vip, SrcPort: sport, DstPort: 80, TCPFlags: packets.ACK})
				verdict, out := run(t, l.Program(), in, loIfindex)
				if verdict != xdpTX || string(out[0:6]) != string(beMACs[first]) {
					t.Errorf("%s:%d: after the flow tables lost it, verdict %d to %x; want TX to %s", src, sport, verdict, out[0:6], first)
				}
			}
		})
	}
}

// TestHashFallback checks sh-fallback semantics: a client whose hashed real server is drained or
// down is sent to another eligible one, never dropped, and the others keep their real servers
// (Maglev moves only the failed server's share).
func TestHashFallback(t *testing.T) {
	requireBPF(t)
	for _, flags := range []director.SchedFlags{0, director.SchedFallback} {
		for _, failed := range []director.Backend{be(beB, 0, true), be(beB, 1, false)} {
			name := map[director.SchedFlags]string{0: "sh", director.SchedFallback: "sh-fallback"}[flags]
			if failed.Up {
				name += "/drained"
			} else {
				name += "/down"
			}
			t.Run(name, func(t *testing.T) {
				l, _ := hashLoader(t, "sh", flags)
				before := map[netip.Addr]netip.Addr{}
				for i := range 64 {
					src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i * 3)})
					before[src] = backendOf(t, l, src, 1)
				}
				s := svc(tcp80, "sh", be(beA, 1, true), failed, be(beC, 1, true), be(beR, 1, true))
				s.SchedFlags = flags
				apply(t, l, snap(s))
				kept, moved := 0, 0
				for src, was := range before {
					got := backendOf(t, l, src, 2) // a new connection
					switch {
					case got == beB:
						t.Errorf("%s: new connection went to %s, which is out", src, got)
					case was == beB:
						moved++
					case got == was:
						kept++
					}
				}
				if moved == 0 {
					t.Error("no client of the failed server moved")
				}
				others := 64 - moved
				if kept < others*9/10 {
					t.Errorf("%d of %d clients of the healthy servers kept theirs, want at least 90%%", kept, others)
				}
			})
		}
	}
}
