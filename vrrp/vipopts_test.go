package vrrp

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/test/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// recordingNetlink records every address call with its link and options.
type recordingNetlink struct {
	mu  sync.Mutex
	ops []string
}

func (f *recordingNetlink) LinkByName(name string) (netlink.Link, error) {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}, nil
}

func (f *recordingNetlink) record(op string, l netlink.Link, a *netlink.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, sprintf("%s %s dev %s brd %v scope %d label %q", op, a.IPNet, l.Attrs().Name, a.Broadcast, a.Scope, a.Label))
}

func (f *recordingNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	f.record("add", l, a)
	return nil
}

func (f *recordingNetlink) AddrDel(l netlink.Link, a *netlink.Addr) error {
	f.record("del", l, a)
	return nil
}

func (f *recordingNetlink) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

// A master adds the VIPs and the excluded addresses with their options, announces them all,
// advertises only the VIPs, and removes them all the same way when it stops.
func TestRunVIPOptionsAndExcluded(t *testing.T) {
	conn, nl, ann := newFakeConn(), &recordingNetlink{}, &fakeAnnouncer{}
	vip1, vip2 := netip.MustParsePrefix("10.5.0.100/32"), netip.MustParsePrefix("10.6.0.1/24")
	ex1, ex2 := netip.MustParsePrefix("192.0.2.5/32"), netip.MustParsePrefix("fd00::5/64")
	in, err := New(Config{
		Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 100, Version: 2,
		VIPs: []netip.Prefix{vip1, vip2}, ExcludedVIPs: []netip.Prefix{ex1, ex2},
		VIPOptions: map[netip.Addr]VIPOptions{
			vip2.Addr(): {Broadcast: netip.MustParseAddr("10.6.0.255"), Dev: "eth1", Scope: unix.RT_SCOPE_LINK, Label: "eth1:vip"},
			ex1.Addr():  {Dev: "lo", Scope: unix.RT_SCOPE_HOST},
		},
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), StartMaster: true, GARPMasterRepeat: 1,
		Clock: frozenClock{t0}, Conn: conn, Netlink: nl, Announcer: ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	if ev := nextEvent(t, in); ev.State != Master {
		t.Fatalf("first event %+v, want MASTER", ev)
	}
	// keepalived's advert carries the two VIPs only: count 2, length 8 + 2*4 + 8.
	adverts := conn.sent()
	if len(adverts) != 1 {
		t.Fatalf("%d adverts, want 1", len(adverts))
	}
	p, err := Unmarshal(unhex(t, adverts[0].hex), in.src, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{vip1.Addr(), vip2.Addr()}, p.Addrs, addrCmp); diff != "" {
		t.Errorf("advertised addresses (-want +got):\n%s", diff)
	}
	ann.mu.Lock()
	announced := append([]netip.Addr(nil), ann.got...)
	ann.mu.Unlock()
	if diff := cmp.Diff([]netip.Addr{vip1.Addr(), vip2.Addr(), ex1.Addr(), ex2.Addr()}, announced, addrCmp); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	var want []string
	for _, op := range []string{"add", "del"} {
		want = append(want,
			op+` 10.5.0.100/32 dev eth0 brd <nil> scope 0 label ""`,
			op+` 10.6.0.1/24 dev eth1 brd 10.6.0.255 scope 253 label "eth1:vip"`,
			op+` 192.0.2.5/32 dev lo brd <nil> scope 254 label ""`,
			op+` fd00::5/64 dev eth0 brd <nil> scope 0 label ""`)
	}
	if diff := cmp.Diff(want, nl.log()); diff != "" {
		t.Errorf("netlink calls (-want +got):\n%s", diff)
	}
}

// unicast_fault_no_peer: an instance meant for unicast but with no peer is in FAULT, sends
// nothing and adds nothing, even when it would start as master.
func TestRunUnicastFaultNoPeer(t *testing.T) {
	conn, nl, ann := newFakeConn(), &fakeNetlink{}, &fakeAnnouncer{}
	in, err := New(Config{
		Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 255, Version: 2,
		VIPs:       []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32")},
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), UnicastFaultNoPeer: true,
		Clock: frozenClock{t0}, Conn: conn, Netlink: nl, Announcer: ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	if ev := nextEvent(t, in); ev.State != Fault {
		t.Errorf("first event %+v, want FAULT", ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if len(conn.sent()) != 0 || len(nl.log()) != 0 || ann.count() != 0 {
		t.Errorf("a faulted instance sent %d adverts, made %v, announced %d times", len(conn.sent()), nl.log(), ann.count())
	}
}

// addrOn returns ifname's address a in ns, or nil.
func addrOn(t *testing.T, ns *netns.NS, ifname string, a netip.Addr) *netlink.Addr {
	t.Helper()
	l, err := ns.Link(ifname)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ns.Netlink().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return &x
		}
	}
	return nil
}

// With real kernels: the master puts each address on its dev with its prefix, broadcast,
// scope and label, sends the gratuitous ARP for an address on another interface from that
// interface, keeps the excluded addresses out of its adverts (a backup with the VIPs alone
// accepts them), and removes everything when it stops.
func TestVIPOptionsNetns(t *testing.T) {
	env, nss := lan(t, "a", "b")
	a, b := nss[0], nss[1]
	c, err := env.NewNS("c")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Veth(a, "eth1", c, "eth1"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns  *netns.NS
		pfx string
	}{{a, "10.8.0.1/24"}, {c, "10.8.0.2/24"}, {c, "10.7.0.2/24"}} {
		if err := x.ns.AddAddr("eth1", netip.MustParsePrefix(x.pfx)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.TxOffloadOff("eth1"); err != nil {
		t.Fatal(err)
	}
	// c learns addresses from gratuitous ARP it has no entry for.
	if err := c.Sysctl("net/ipv4/conf/eth1/arp_accept", "1"); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParsePrefix("10.9.0.100/32")
	// Not in eth1's subnet: Linux refuses a secondary address with another scope than its
	// primary's.
	other := netip.MustParsePrefix("10.7.0.200/24")
	onLo := netip.MustParsePrefix("192.0.2.5/32")
	ex6 := netip.MustParsePrefix("fd09::55/64")
	master := start(t, a, Config{
		Name: "VI_1", VRID: 60, Priority: 150, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: []netip.Prefix{vip, other}, ExcludedVIPs: []netip.Prefix{onLo, ex6},
		VIPOptions: map[netip.Addr]VIPOptions{
			other.Addr(): {Broadcast: netip.MustParseAddr("10.7.0.255"), Dev: "eth1", Scope: unix.RT_SCOPE_SITE, Label: "eth1:vip",
				Flags: unix.IFA_F_NOPREFIXROUTE},
			onLo.Addr(): {Dev: "lo", Scope: unix.RT_SCOPE_HOST},
		},
		GARPMasterRepeat: 1,
	})
	backup := start(t, b, Config{
		Name: "VI_1", VRID: 60, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: []netip.Prefix{vip, other},
	})
	master.wait(t, Master, 3*time.Second)

	if !eventually(2*time.Second, func() bool { return addrOn(t, a, "lo", onLo.Addr()) != nil }) {
		t.Fatalf("%s not added", onLo)
	}
	for _, tt := range []struct {
		dev   string
		pfx   netip.Prefix
		brd   string
		scope int
		label string
	}{
		{"eth0", vip, "<nil>", 0, "eth0"},
		{"eth1", other, "10.7.0.255", unix.RT_SCOPE_SITE, "eth1:vip"},
		{"lo", onLo, "<nil>", unix.RT_SCOPE_HOST, "lo"},
		{"eth0", ex6, "<nil>", 0, ""},
	} {
		got := addrOn(t, a, tt.dev, tt.pfx.Addr())
		if got == nil {
			t.Errorf("%s not on %s", tt.pfx, tt.dev)
			continue
		}
		if tt.dev == "eth1" && got.Flags&unix.IFA_F_NOPREFIXROUTE == 0 {
			t.Errorf("%s on eth1: flags %#x, want noprefixroute", tt.pfx, got.Flags)
		}
		ones, _ := got.Mask.Size()
		if ones != tt.pfx.Bits() || got.Broadcast.String() != tt.brd || got.Scope != tt.scope || got.Label != tt.label {
			t.Errorf("%s on %s: /%d brd %s scope %d label %q, want /%d brd %s scope %d label %q",
				tt.pfx, tt.dev, ones, got.Broadcast, got.Scope, got.Label, tt.pfx.Bits(), tt.brd, tt.scope, tt.label)
		}
	}
	// The gratuitous ARP for the eth1 address went out of eth1.
	mac, err := a.HardwareAddr("eth1")
	if err != nil {
		t.Fatal(err)
	}
	neigh := func() string {
		l, err := c.Link("eth1")
		if err != nil {
			t.Fatal(err)
		}
		ns, err := c.Netlink().NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == other.Addr() && n.HardwareAddr != nil {
				return n.HardwareAddr.String()
			}
		}
		return ""
	}
	if !eventually(2*time.Second, func() bool { return neigh() == mac }) {
		t.Errorf("c's neighbor entry for %s is %q, want %s from the gratuitous ARP on eth1", other.Addr(), neigh(), mac)
	}
	// The backup, configured with the VIPs alone, accepts the master's adverts.
	if !eventually(2*time.Second, func() bool { return backup.inst.Stats().Received >= 3 }) {
		t.Errorf("backup stats %+v: adverts not accepted", backup.inst.Stats())
	}
	if d := backup.inst.Stats().Dropped[ReasonAddresses]; d != 0 {
		t.Errorf("backup dropped %d adverts for their address list: excluded addresses advertised", d)
	}
	if st := backup.inst.State(); st != Backup {
		t.Errorf("backup is %v, want BACKUP", st)
	}

	master.stop(t)
	for _, x := range []struct {
		dev string
		a   netip.Addr
	}{{"eth0", vip.Addr()}, {"eth1", other.Addr()}, {"lo", onLo.Addr()}, {"eth0", ex6.Addr()}} {
		if addrOn(t, a, x.dev, x.a) != nil {
			t.Errorf("%s still on %s after stop", x.a, x.dev)
		}
	}
}

// Against a real keepalived unicast master that also holds virtual_ipaddress_excluded
// addresses: its adverts carry the VIP alone (a Sluice backup with the VIP alone accepts them),
// and a Sluice unicast_peer min_ttl/max_ttl range that excludes keepalived's TTL 255 drops them
// as peer_ttl, so Sluice takes over.
func TestKeepalivedExcludedAndPeerTTL(t *testing.T) {
	vip := netip.MustParsePrefix("10.9.0.100/32")
	kaAddr, goAddr := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	conf := keepalivedConf(kaCase{version: 3, interval: 200 * time.Millisecond, unicast: true}, "MASTER", 200, kaAddr, goAddr, vip)
	conf = strings.Replace(conf, "  virtual_ipaddress {", "  virtual_ipaddress_excluded {\n    192.0.2.77/32\n    fd09::77/64\n  }\n  virtual_ipaddress {", 1)
	down := MasterDownInterval(3, 100, 200*time.Millisecond)
	for _, tt := range []struct {
		name   string
		ttl    TTLRange
		master bool
	}{
		{"TTL 255 inside min_ttl 255", TTLRange{Min: 255, Max: 255}, false},
		{"TTL 255 above max_ttl 254", TTLRange{Min: 0, Max: 254}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, nss := lan(t, "ka", "go")
			startKeepalived(t, env, nss[0], conf)
			if !eventually(5*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", netip.MustParseAddr("192.0.2.77")) }) {
				t.Fatalf("keepalived did not become master with its excluded address")
			}
			sl := start(t, nss[1], Config{Name: "VI_1", VRID: 51, Priority: 100, Version: 3, AdvertInterval: 200 * time.Millisecond,
				VIPs: []netip.Prefix{vip}, UnicastSrc: goAddr, UnicastPeers: []netip.Addr{kaAddr},
				UnicastPeerTTL: map[netip.Addr]TTLRange{kaAddr: tt.ttl}})
			sl.wait(t, Backup, time.Second)
			time.Sleep(down + 500*time.Millisecond)
			stats := sl.inst.Stats()
			if tt.master {
				if st := sl.inst.State(); st != Master || stats.Dropped[ReasonPeerTTL] == 0 {
					t.Errorf("state %v, stats %+v: want MASTER with keepalived's adverts dropped as peer_ttl", st, stats)
				}
				return
			}
			if st := sl.inst.State(); st != Backup || stats.Received == 0 || len(stats.Dropped) != 0 {
				t.Errorf("state %v, stats %+v: want BACKUP, keepalived's adverts received and none dropped", st, stats)
			}
		})
	}
}
