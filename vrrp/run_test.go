package vrrp

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// The fakes below stand in for the kernel so Run's wiring is tested unprivileged; the netns
// and keepalived tests run the same code on real sockets.

// frozenClock never fires: these tests drive the instance by packets and cancellation only.
type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time             { return c.t }
func (frozenClock) NewTimer(time.Duration) Timer { return frozenTimer{} }

type frozenTimer struct{}

func (frozenTimer) C() <-chan time.Time { return nil }
func (frozenTimer) Stop() bool          { return true }

var addrCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

type sent struct {
	hex string
	dst netip.Addr
}

type fakeConn struct {
	in     chan received
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	out    []sent
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan received), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, netip.Addr, netip.Addr, int, error) {
	select {
	case r := <-c.in:
		return copy(b, r.b), r.src, r.dst, r.ttl, nil
	case <-c.closed:
		return 0, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, dst netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, sent{hex.EncodeToString(b), dst})
	return nil
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func (c *fakeConn) sent() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sent(nil), c.out...)
}

type fakeNetlink struct {
	mu  sync.Mutex
	ops []string
}

func (f *fakeNetlink) LinkByName(name string) (netlink.Link, error) {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}, nil
}

func (f *fakeNetlink) AddrAdd(_ netlink.Link, a *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "add "+a.IPNet.String())
	return nil
}

func (f *fakeNetlink) AddrDel(_ netlink.Link, a *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "del "+a.IPNet.String())
	return nil
}

func (f *fakeNetlink) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

type fakeAnnouncer struct {
	mu  sync.Mutex
	got []netip.Addr
}

func (a *fakeAnnouncer) Announce(addr netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, addr)
	return nil
}

func (a *fakeAnnouncer) Close() error { return nil }

func (a *fakeAnnouncer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func nextEvent(t *testing.T, in *Instance) Event {
	t.Helper()
	select {
	case ev, ok := <-in.Events():
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func TestRunMasterYieldsAndReleases(t *testing.T) {
	conn, nl, ann := newFakeConn(), &fakeNetlink{}, &fakeAnnouncer{}
	src := netip.MustParseAddr("10.5.0.1")
	in, err := New(Config{
		Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 100, Version: 2, AuthPass: "secret123",
		VIPs:       []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32"), netip.MustParsePrefix("10.5.0.101/32")},
		UnicastSrc: src, StartMaster: true,
		Clock: frozenClock{t0}, Conn: conn, Netlink: nl, Announcer: ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()

	if diff := cmp.Diff(Event{Instance: "VI_1", State: Master, Prev: Initialize, At: t0, VIPs: in.cfg.VIPs, Priority: 100}, nextEvent(t, in), addrCmp); diff != "" {
		t.Errorf("first event (-want +got):\n%s", diff)
	}
	// As master it sent keepalived's exact advert (the golden capture) and announced each VIP
	// garp_master_repeat times.
	if diff := cmp.Diff([]sent{{hex: "21336402" + "0101f777" + "0a050064" + "0a050065" + "7365637265743132", dst: GroupIPv4}}, conn.sent(), cmp.AllowUnexported(sent{}), addrCmp); diff != "" {
		t.Errorf("adverts (-want +got):\n%s", diff)
	}
	if got := ann.count(); got != 2*DefaultGARPMasterRepeat {
		t.Errorf("%d announcements, want %d", got, 2*DefaultGARPMasterRepeat)
	}

	// A higher-priority master appears: yield and remove the VIPs.
	higher := Packet{Version: 2, VRID: 51, Priority: 200, Interval: time.Second, Addrs: in.vips, AuthType: AuthPass, AuthData: pass("secret12")}
	peer := netip.MustParseAddr("10.5.0.2")
	b, err := higher.Marshal(peer, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	conn.in <- received{b: b, src: peer, dst: GroupIPv4, ttl: 255}
	if ev := nextEvent(t, in); ev.State != Backup || ev.Prev != Master {
		t.Errorf("event %+v, want MASTER -> BACKUP", ev)
	}
	// A forged advert (TTL 64, from off-link) is counted and changes nothing.
	conn.in <- received{b: b, src: peer, dst: GroupIPv4, ttl: 64}
	for i := 0; in.Stats().Dropped[ReasonTTL] == 0; i++ {
		if i == 500 {
			t.Fatal("forged advert not counted within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if diff := cmp.Diff([]string{"add 10.5.0.100/32", "add 10.5.0.101/32", "del 10.5.0.100/32", "del 10.5.0.101/32"}, nl.log()); diff != "" {
		t.Errorf("netlink calls (-want +got):\n%s", diff)
	}
	want := Stats{Received: 1, Sent: 1, Dropped: map[Reason]uint64{ReasonTTL: 1}, Transitions: 3}
	if diff := cmp.Diff(want, in.Stats(), addrCmp); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	// Stopping is reported too, and then the channel is closed.
	if ev, ok := <-in.Events(); !ok || ev.State != Initialize {
		t.Errorf("last event %+v (open %v), want INIT", ev, ok)
	}
	if _, ok := <-in.Events(); ok {
		t.Errorf("events not closed after Run returned")
	}
}

func TestRunReleasesOnCancel(t *testing.T) {
	conn, nl := newFakeConn(), &fakeNetlink{}
	src := netip.MustParseAddr("fe80::9837:bfff:fe79:81b7")
	in, err := New(Config{
		Name: "VI_6", Interface: "eth0", VRID: 52, Priority: 150, Version: 3, AdvertInterval: 500 * time.Millisecond,
		VIPs: []netip.Prefix{netip.MustParsePrefix("fd00::100/128")}, UnicastSrc: src, StartMaster: true,
		Clock: frozenClock{t0}, Conn: conn, Netlink: nl, Announcer: &fakeAnnouncer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	nextEvent(t, in)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	// keepalived's own adverts for this instance, priority 150 then 0 (golden capture).
	want := []sent{
		{"31349601" + "00326410" + "fd000000000000000000000000000100", GroupIPv6},
		{"31340001" + "0032fa10" + "fd000000000000000000000000000100", GroupIPv6},
	}
	if diff := cmp.Diff(want, conn.sent(), cmp.AllowUnexported(sent{}), addrCmp); diff != "" {
		t.Errorf("adverts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"add fd00::100/128", "del fd00::100/128"}, nl.log()); diff != "" {
		t.Errorf("netlink calls (-want +got):\n%s", diff)
	}
	if err := in.Run(context.Background()); !errors.Is(err, ErrRunTwice) {
		t.Errorf("second Run = %v, want ErrRunTwice", err)
	}
}
