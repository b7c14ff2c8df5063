package vrrp

import (
	"encoding/hex"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lastAdvertAddrs decodes the address list of the last advert sent.
func lastAdvertAddrs(t *testing.T, c *fakeConn) []netip.Addr {
	t.Helper()
	out := c.sent()
	if len(out) == 0 {
		t.Fatal("no advert sent")
	}
	b, err := hex.DecodeString(out[len(out)-1].hex)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Unmarshal(b, netip.MustParseAddr("10.5.0.1"), out[len(out)-1].dst)
	if err != nil {
		t.Fatalf("decode advert: %v", err)
	}
	return p.Addrs
}

// TestSetVIPsInPlace checks a reload's new virtual addresses applied to a running MASTER: the
// state stays, addresses gone are removed, new ones added and announced, and the next advert
// (sent at once) lists the new set.
func TestSetVIPsInPlace(t *testing.T) {
	a, b, c := netip.MustParsePrefix("10.5.0.100/32"), netip.MustParsePrefix("10.5.0.101/32"), netip.MustParsePrefix("10.5.0.102/32")
	in, conn, nl := runFake(t, Config{Name: "VI_1", VRID: 51, Priority: 100, StartMaster: true,
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), VIPs: []netip.Prefix{a}})
	ann := in.cfg.Announcer.(*fakeAnnouncer)
	waitEvent(t, in, Master, Initialize, 0)
	if !eventually(5*time.Second, func() bool { return len(conn.sent()) == 1 && ann.count() > 0 }) {
		t.Fatalf("no first advert and announcement: %d adverts", len(conn.sent()))
	}
	nl.mu.Lock()
	nl.ops = nil
	nl.mu.Unlock()
	announced := ann.count()

	if err := in.SetVIPs([]netip.Prefix{b, c}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"del 10.5.0.100/32", "add 10.5.0.101/32", "add 10.5.0.102/32"}, nl.log()); diff != "" {
		t.Errorf("netlink calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{b.Addr(), c.Addr()}, lastAdvertAddrs(t, conn), addrCmp); diff != "" {
		t.Errorf("advert's addresses after the change (-want +got):\n%s", diff)
	}
	ann.mu.Lock()
	newly := slices.Clone(ann.got[announced:])
	ann.mu.Unlock()
	if len(newly) == 0 || slices.ContainsFunc(newly, func(x netip.Addr) bool { return x == a.Addr() }) {
		t.Errorf("announced %v after the change, want only the new addresses", newly)
	}
	if st := in.State(); st != Master {
		t.Errorf("state %s after the change, want MASTER kept", st)
	}
	select {
	case ev := <-in.Events():
		t.Errorf("event %+v: an address change is not a transition", ev)
	default:
	}

	// The family may not change in place; a rejected change leaves the addresses as they were.
	if err := in.SetVIPs([]netip.Prefix{netip.MustParsePrefix("fd00::1/128")}, nil, nil); err == nil {
		t.Error("an IPv6 address list accepted for an IPv4 instance")
	}
	if err := in.SetVIPs(nil, nil, nil); err == nil {
		t.Error("an empty address list accepted")
	}
	if diff := cmp.Diff([]netip.Addr{b.Addr(), c.Addr()}, lastAdvertAddrs(t, conn), addrCmp); diff != "" {
		t.Errorf("advert's addresses after refused changes (-want +got):\n%s", diff)
	}
}

// TestSetVIPsBackup checks that a BACKUP takes the new addresses without touching the
// interface, and then accepts a master's advert listing them.
func TestSetVIPsBackup(t *testing.T) {
	a, b := netip.MustParsePrefix("10.5.0.100/32"), netip.MustParsePrefix("10.5.0.101/32")
	in, conn, nl := runFake(t, Config{Name: "VI_1", VRID: 51, Priority: 100,
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), VIPs: []netip.Prefix{a}})
	waitEvent(t, in, Backup, Initialize, 0)
	if err := in.SetVIPs([]netip.Prefix{a, b}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, op := range nl.log() {
		if op != "del 10.5.0.100/32" { // a BACKUP start removes leftover VIPs
			t.Errorf("netlink call %q on a BACKUP's address change", op)
		}
	}
	pkt, err := (&Packet{Version: 3, VRID: 51, Priority: 200, Interval: time.Second,
		Addrs: []netip.Addr{a.Addr(), b.Addr()}}).Marshal(netip.MustParseAddr("10.5.0.2"), GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	conn.in <- received{b: pkt, src: netip.MustParseAddr("10.5.0.2"), dst: GroupIPv4, ttl: 255}
	if !eventually(5*time.Second, func() bool { return in.Stats().Received == 1 }) {
		t.Errorf("the master's advert with the new address list was not accepted: %+v", in.Stats())
	}
}
