package vrrp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
)

// fakeBFD stands in for the director's BFD sessions (package bfd runs and tests the real ones,
// also against keepalived's): the states a test sets.
type fakeBFD struct {
	mu sync.Mutex
	up map[string]bool
}

func (f *fakeBFD) set(name string, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up[name] = up
}

func (f *fakeBFD) state(name string) (up, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	up, ok = f.up[name]
	return up, ok
}

// runBFDTracked runs an instance tracking the session "bfd1" of b on the system clock, so that
// the BFD poll runs.
func runBFDTracked(t *testing.T, b *fakeBFD, weight int, startMaster bool) *Instance {
	t.Helper()
	in, err := New(Config{Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 100, Version: 3, StartMaster: startMaster,
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32")}, UnicastSrc: netip.MustParseAddr("10.5.0.1"),
		TrackBFDs: []TrackBFD{{Name: "bfd1", Weight: weight}}, BFDState: b.state,
		Clock: systemClock{}, Conn: newFakeConn(), Netlink: &fakeNetlink{}, Announcer: &fakeAnnouncer{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return in
}

// TestTrackBFDWeightZero: a tracked session that is down (Down at start, as BFD sessions start)
// faults the instance; Up, the instance leaves FAULT.
func TestTrackBFDWeightZero(t *testing.T) {
	b := &fakeBFD{up: map[string]bool{"bfd1": false}}
	in := runBFDTracked(t, b, 0, false)
	waitEvent(t, in, Fault, Initialize, 0)
	b.set("bfd1", true)
	waitEvent(t, in, Backup, Fault, 0)
	b.set("bfd1", false)
	waitEvent(t, in, Fault, Backup, 0)
}

// TestTrackBFDWeight: with a negative weight a session going down lowers the priority by it,
// and coming back restores it; the state stays MASTER throughout.
func TestTrackBFDWeight(t *testing.T) {
	b := &fakeBFD{up: map[string]bool{"bfd1": true}}
	in := runBFDTracked(t, b, -30, true)
	waitEvent(t, in, Master, Initialize, 100)
	b.set("bfd1", false)
	waitEvent(t, in, Master, Master, 70)
	b.set("bfd1", true)
	waitEvent(t, in, Master, Master, 100)
}

// TestTrackBFDNeedsSessions: track_bfd without a way to read sessions is refused.
func TestTrackBFDNeedsSessions(t *testing.T) {
	_, err := New(Config{Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 100,
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32")}, UnicastSrc: netip.MustParseAddr("10.5.0.1"),
		TrackBFDs: []TrackBFD{{Name: "bfd1"}}, Conn: newFakeConn(), Netlink: &fakeNetlink{}, Announcer: &fakeAnnouncer{}})
	if err == nil {
		t.Error("track_bfd without BFDState accepted")
	}
}
