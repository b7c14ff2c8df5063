package vrrp

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// setExit makes the script at path exit with code, replacing it atomically so a run in
// progress never reads half a file.
func setExit(t *testing.T, path string, code int) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(sprintf("#!/bin/sh\nexit %d\n", code)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTrackScriptHandsOverVIP runs a real vrrp_script (a file in the test's directory, run
// without a shell as root, as `script_user root` would) on the master of two namespaces:
// when it fails, weight -100 takes the master below the backup, which preempts it and takes
// the VIP; when it succeeds again the master preempts back.
func TestTrackScriptHandsOverVIP(t *testing.T) {
	_, nss := lan(t, "d1", "d2", "client")
	script := filepath.Join(t.TempDir(), "check")
	setExit(t, script, 0)
	vip := netip.MustParsePrefix("10.9.0.100/32")
	cfg := Config{Name: "VI_1", VRID: 51, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second}
	c1, c2 := cfg, cfg
	c1.Priority, c2.Priority = 150, 100
	c1.TrackScripts = []TrackScript{{Name: "chk", Path: []string{script}, Interval: 100 * time.Millisecond,
		Timeout: 2 * time.Second, Weight: -100, Rise: 2, Fall: 2, User: "root"}}
	d1 := start(t, nss[0], c1)
	d1.wait(t, Master, 3*time.Second)
	d2 := start(t, nss[1], c2)
	d2.wait(t, Backup, time.Second)
	touch(t, nss[2], vip.Addr())
	expectHolder(t, nss[2], vip.Addr(), d1, d1, d2)
	if got := d1.inst.Priority(); got != 150 {
		t.Fatalf("d1 effective priority %d while its script succeeds, want 150", got)
	}

	setExit(t, script, 1)
	ev := d1.waitPriority(t, 50, 3*time.Second) // after fall 2 failures
	if ev.State != Master {
		t.Errorf("priority change reported in %v, want MASTER", ev.State)
	}
	d2.wait(t, Master, 3*time.Second) // it ignores d1's 50 and takes over
	d1.wait(t, Backup, time.Second)
	expectHolder(t, nss[2], vip.Addr(), d2, d1, d2)

	setExit(t, script, 0)
	d1.waitPriority(t, 150, 3*time.Second) // after rise 2 successes
	d1.wait(t, Master, 3*time.Second)
	d2.wait(t, Backup, time.Second)
	expectHolder(t, nss[2], vip.Addr(), d1, d1, d2)
}

// TestTrackInterfaceFaults tracks a second interface of the master with weight 0: when it loses
// its carrier the master enters FAULT and releases the VIP to the backup; back up, it preempts.
func TestTrackInterfaceFaults(t *testing.T) {
	_, nss := lan(t, "d1", "d2")
	// A veth pair inside d1 (this kernel has no dummy module); up0 is up with carrier while
	// both ends are up. The namespace's removal removes it.
	if err := nss[0].Netlink().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up1"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"up0", "up1"} {
		if err := nss[0].LinkUp(name); err != nil {
			t.Fatal(err)
		}
	}
	vip := netip.MustParsePrefix("10.9.0.100/32")
	cfg := Config{Name: "VI_1", VRID: 51, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second}
	c1, c2 := cfg, cfg
	c1.Priority, c2.Priority = 150, 100
	c1.TrackInterfaces = []TrackInterface{{Name: "up0"}}
	d1 := start(t, nss[0], c1)
	d1.wait(t, Master, 3*time.Second)
	d2 := start(t, nss[1], c2)
	d2.wait(t, Backup, time.Second)
	expectHolder(t, nil, vip.Addr(), d1, d1, d2)

	// The peer goes down: up0 loses its carrier.
	l, err := nss[0].Link("up1")
	if err != nil {
		t.Fatal(err)
	}
	if err := nss[0].Netlink().LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	d1.wait(t, Fault, time.Second)
	d2.wait(t, Master, 3*time.Second)
	expectHolder(t, nil, vip.Addr(), d2, d1, d2)

	if err := nss[0].Netlink().LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	d1.wait(t, Backup, time.Second)
	d1.wait(t, Master, 3*time.Second)
	expectHolder(t, nil, vip.Addr(), d1, d1, d2)
}

// waitPriority returns the next event reporting effective priority prio within d.
func (n *node) waitPriority(t *testing.T, prio uint8, d time.Duration) Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-n.events:
			if !ok {
				t.Fatalf("%s: events closed while waiting for priority %d", n.ns.Short, prio)
			}
			if ev.Priority == prio && ev.State == ev.Prev {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: effective priority not %d within %v (now %d)", n.ns.Short, prio, d, n.inst.Priority())
		}
	}
}

// TestSyncGroupMovesTogether runs a sync group of two instances (VRID 51 and 52) on each of two
// namespaces. d1's VI_B tracks an interface: when it loses carrier both of d1's members enter
// FAULT and d2's members, each waiting for the other, take both VIPs together. Then d1's
// members recover and preempt, and d2's members yield together.
func TestSyncGroupMovesTogether(t *testing.T) {
	_, nss := lan(t, "d1", "d2")
	if err := nss[0].Netlink().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up1"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"up0", "up1"} {
		if err := nss[0].LinkUp(name); err != nil {
			t.Fatal(err)
		}
	}
	vipA, vipB := netip.MustParsePrefix("10.9.0.100/32"), netip.MustParsePrefix("10.9.0.101/32")
	member := func(name string, vrid uint8, vip netip.Prefix, prio uint8, g *SyncGroup) Config {
		return Config{Name: name, VRID: vrid, Version: 3, AdvertInterval: 100 * time.Millisecond, Priority: prio,
			VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second, Sync: g}
	}
	g1, g2 := NewSyncGroup("G"), NewSyncGroup("G")
	b1 := member("VI_B", 52, vipB, 150, g1)
	b1.TrackInterfaces = []TrackInterface{{Name: "up0"}}
	d1a, d1b := start(t, nss[0], member("VI_A", 51, vipA, 150, g1)), start(t, nss[0], b1)
	d1a.wait(t, Master, 3*time.Second)
	d1b.wait(t, Master, 3*time.Second)
	d2a, d2b := start(t, nss[1], member("VI_A", 51, vipA, 100, g2)), start(t, nss[1], member("VI_B", 52, vipB, 100, g2))
	d2a.wait(t, Backup, time.Second)
	d2b.wait(t, Backup, time.Second)
	expectHolder(t, nil, vipA.Addr(), d1a, d1a, d2a)
	expectHolder(t, nil, vipB.Addr(), d1b, d1b, d2b)

	l, err := nss[0].Link("up1")
	if err != nil {
		t.Fatal(err)
	}
	if err := nss[0].Netlink().LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	d1b.wait(t, Fault, time.Second)
	d1a.wait(t, Fault, time.Second) // its own link is fine: the group put it in FAULT
	evA, evB := d2a.wait(t, Master, 3*time.Second), d2b.wait(t, Master, 3*time.Second)
	if gap := evA.At.Sub(evB.At).Abs(); gap > 50*time.Millisecond {
		t.Errorf("d2's members became master %v apart, want together", gap)
	}
	expectHolder(t, nil, vipA.Addr(), d2a, d1a, d2a)
	expectHolder(t, nil, vipB.Addr(), d2b, d1b, d2b)

	if err := nss[0].Netlink().LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	d1a.wait(t, Master, 3*time.Second)
	d1b.wait(t, Master, 3*time.Second)
	d2a.wait(t, Backup, time.Second)
	d2b.wait(t, Backup, time.Second)
	expectHolder(t, nil, vipA.Addr(), d1a, d1a, d2a)
	expectHolder(t, nil, vipB.Addr(), d1b, d1b, d2b)
}

// TestDontTrackPrimary: with dont_track_primary the instance's own interface going down does
// not put it in FAULT.
func TestDontTrackPrimary(t *testing.T) {
	_, nss := lan(t, "d1")
	d1 := start(t, nss[0], Config{Name: "VI_1", VRID: 51, Version: 3, AdvertInterval: 100 * time.Millisecond,
		Priority: 255, VIPs: []netip.Prefix{netip.MustParsePrefix("10.9.0.100/32")}, DontTrackPrimary: true})
	d1.wait(t, Master, time.Second)
	l, err := nss[0].Link("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nss[0].Netlink().LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-d1.events:
		t.Errorf("transition %v -> %v after its own interface went down, want none", ev.Prev, ev.State)
	case <-time.After(time.Second):
	}
	if st := d1.inst.State(); st != Master {
		t.Errorf("state %v, want MASTER", st)
	}
}
