package bfd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/sluice-lb/sluice/test/netns"
)

func TestNewManagerRejects(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name string
		in   []Instance
	}{
		{"no name", []Instance{{Neighbor: a}}},
		{"no neighbor", []Instance{{Name: "x"}}},
		{"duplicate name", []Instance{{Name: "x", Neighbor: a}, {Name: "x", Neighbor: netip.MustParseAddr("10.0.0.2")}}},
		{"same neighbor", []Instance{{Name: "x", Neighbor: a}, {Name: "y", Neighbor: a}}},
		{"mixed families", []Instance{{Name: "x", Neighbor: a, Source: netip.MustParseAddr("::1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewManager(tt.in); err == nil {
				t.Error("NewManager accepted the instances")
			}
		})
	}
}

// TestGTSM checks RFC 5881's TTL rule: a single-hop session ignores packets whose TTL is
// below 255, and accepts them with max_hops allowing it.
func TestGTSM(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ttl      int
		maxHops  uint8
		multihop bool
		want     State
	}{
		{"ttl 255 accepted", 255, 0, false, Init},
		{"ttl 254 dropped", 254, 0, false, Down},
		{"ttl 254 within max_hops", 254, 1, false, Init},
		{"max_hops 255 disables the check", 1, 255, false, Init},
		{"multihop on port 4784", 250, 10, true, Init},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ka, sl := pair(t)
			port := SingleHopPort
			if tt.multihop {
				port = MultihopPort
			}
			m, err := NewManager([]Instance{{Name: "peer", Neighbor: netip.MustParseAddr("10.7.0.1"), MaxHops: tt.maxHops, Multihop: tt.multihop}})
			if err != nil {
				t.Fatal(err)
			}
			startManager(t, sl, m)
			var c net.PacketConn
			if err := ka.Do(func() (err error) { c, err = net.ListenPacket("udp4", "10.7.0.1:50000"); return err }); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := ipv4.NewPacketConn(c).SetTTL(tt.ttl); err != nil {
				t.Fatal(err)
			}
			p := Packet{State: Down, DetectMult: 3, MyDiscriminator: 77, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
			dst := &net.UDPAddr{IP: net.ParseIP("10.7.0.2"), Port: port}
			// A few packets, in case the first is sent before the listener reads.
			for range 5 {
				if _, err := c.WriteTo(p.Append(nil), dst); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s, _ := m.State("peer"); s != tt.want {
				t.Errorf("state %s, want %s", s, tt.want)
			}
		})
	}
}

// TestSluiceIPv6 runs two Managers against each other over IPv6 (hop limit 255 both ways):
// they come Up, and stopping one sends AdminDown, which takes the other Down at once.
func TestSluiceIPv6(t *testing.T) {
	env := netns.ForTest(t)
	a, err := env.NewNS("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.NewNS("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Veth(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns   *netns.NS
		addr string
	}{{a, "fd07::1/64"}, {b, "fd07::2/64"}} {
		if err := x.ns.Sysctl("net/ipv6/conf/all/accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
		if err := x.ns.Sysctl("net/ipv6/conf/eth0/accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
		if err := x.ns.AddAddr("eth0", netip.MustParsePrefix(x.addr)); err != nil {
			t.Fatal(err)
		}
		if err := x.ns.LinkUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	// Even without DAD an address is briefly unusable after the link comes up: wait until
	// each side can bind its own (bounded).
	for _, x := range []struct {
		ns   *netns.NS
		addr string
	}{{a, "[fd07::1]:0"}, {b, "[fd07::2]:0"}} {
		err := x.ns.Do(func() error {
			var err error
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var c net.PacketConn
				if c, err = net.ListenPacket("udp6", x.addr); err == nil {
					return c.Close()
				}
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s never became usable: %v", x.addr, err)
		}
	}
	inst := func(name, nb, src string) Instance {
		return Instance{Name: name, Neighbor: netip.MustParseAddr(nb), Source: netip.MustParseAddr(src),
			MinRx: 100 * time.Millisecond, MinTx: 100 * time.Millisecond, Multiplier: 3}
	}
	ma, err := NewManager([]Instance{inst("B", "fd07::2", "fd07::1")})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := NewManager([]Instance{inst("A", "fd07::1", "fd07::2")})
	if err != nil {
		t.Fatal(err)
	}
	// The addresses are usable once both ends of the veth are up.
	for i := 0; ; i++ {
		err := a.Do(ma.Open)
		if err == nil {
			break
		}
		if i == 60 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	startManager(t, a, ma)
	if err := b.Do(mb.Open); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		mb.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	waitState(t, ma, "B", Up, 10*time.Second)
	waitState(t, mb, "A", Up, 5*time.Second)
	// Stopping b sends AdminDown: a goes Down well before its 300 ms detection time.
	cancel()
	<-done
	took := waitState(t, ma, "B", Down, 2*time.Second)
	if took > 250*time.Millisecond {
		t.Errorf("Down %v after the peer stopped; AdminDown should be at once", took)
	}
}
