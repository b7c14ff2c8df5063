package vrrp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runFake runs an instance wired to the fakes of run_test.go and a frozen clock: scripts run
// once, at start, and the instance moves only on packets, tracking and its sync group.
func runFake(t *testing.T, cfg Config) (*Instance, *fakeConn, *fakeNetlink) {
	t.Helper()
	conn, nl := newFakeConn(), &fakeNetlink{}
	cfg.Interface, cfg.Version = "eth0", 3
	if len(cfg.VIPs) == 0 {
		cfg.VIPs = []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32")}
	}
	cfg.Clock, cfg.Conn, cfg.Netlink, cfg.Announcer = frozenClock{t0}, conn, nl, &fakeAnnouncer{}
	in, err := New(cfg)
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
	return in, conn, nl
}

// waitEvent returns the next event matching st, prev and prio (0: any), skipping others.
func waitEvent(t *testing.T, in *Instance, st, prev State, prio uint8) Event {
	t.Helper()
	for {
		ev := nextEvent(t, in)
		if ev.State == st && ev.Prev == prev && (prio == 0 || ev.Priority == prio) {
			return ev
		}
	}
}

func failing(context.Context, TrackScript) error { return errors.New("exit status 1") }

func TestRunTrackScriptLowersPriority(t *testing.T) {
	in, conn, _ := runFake(t, Config{
		Name: "VI_1", VRID: 51, Priority: 100, StartMaster: true, UnicastSrc: netip.MustParseAddr("10.5.0.1"),
		TrackScripts: []TrackScript{{Name: "chk", Path: []string{"/bin/false"}, Weight: -60}},
		RunScript:    failing,
	})
	// Master at start with the script assumed good, then its first run fails: 100 - 60.
	waitEvent(t, in, Master, Initialize, 0)
	if ev := waitEvent(t, in, Master, Master, 40); ev.Instance != "VI_1" {
		t.Errorf("priority event %+v", ev)
	}
	if got := in.Priority(); got != 40 {
		t.Errorf("Priority() = %d, want 40", got)
	}
	// Adverts carry it: a priority-0 advert is answered at once.
	peer := netip.MustParseAddr("10.5.0.2")
	rel := Packet{Version: 3, VRID: 51, Priority: 0, Interval: time.Second, Addrs: in.vips}
	b, err := rel.Marshal(peer, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	conn.in <- received{b: b, src: peer, dst: GroupIPv4, ttl: 255}
	if !eventually(5*time.Second, func() bool { return len(conn.sent()) == 2 }) {
		t.Fatalf("sent %d adverts, want 2", len(conn.sent()))
	}
	p, err := Unmarshal(mustHex(t, conn.sent()[1].hex), netip.MustParseAddr("10.5.0.1"), GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if p.Priority != 40 {
		t.Errorf("advert priority %d, want 40", p.Priority)
	}
}

func TestRunTrackFaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "prio")
	if err := os.WriteFile(file, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		prev State // the script starts good: BACKUP first; files are read before the start
	}{
		{"script weight 0", Config{TrackScripts: []TrackScript{{Name: "chk", Path: []string{"x"}}}, RunScript: failing}, Backup},
		{"file weight 0 nonzero", Config{TrackFiles: []TrackFile{{Name: "f", Path: file}}}, Initialize},
		{"init_fail", Config{TrackScripts: []TrackScript{{Name: "chk", Path: []string{"x"}, InitFail: true}}, RunScript: func(ctx context.Context, _ TrackScript) error {
			<-ctx.Done() // never reports: init_fail alone keeps it failed
			return ctx.Err()
		}}, Initialize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.Name, c.VRID, c.Priority, c.UnicastSrc = "VI_1", 51, 100, netip.MustParseAddr("10.5.0.1")
			in, _, nl := runFake(t, c)
			waitEvent(t, in, Fault, tt.prev, 0)
			// Removing leftover VIPs at start is fine; adding any is not.
			for _, call := range nl.log() {
				if strings.HasPrefix(call, "add") {
					t.Errorf("netlink calls %v in FAULT", nl.log())
				}
			}
		})
	}
}

func TestSyncGroup(t *testing.T) {
	g := NewSyncGroup("G")
	// B's script's first run ends when the test says how.
	result := make(chan error)
	script := func(ctx context.Context, _ TrackScript) error {
		select {
		case err := <-result:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a, aconn, _ := runFake(t, Config{Name: "A", VRID: 1, Priority: 100, StartMaster: true, Sync: g,
		UnicastSrc: netip.MustParseAddr("10.5.0.1")})
	b, _, bnl := runFake(t, Config{Name: "B", VRID: 2, Priority: 100, StartMaster: true, Sync: g,
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), VIPs: []netip.Prefix{netip.MustParsePrefix("10.5.0.200/32")},
		TrackScripts: []TrackScript{{Name: "chk", Path: []string{"x"}, Weight: -50}}, RunScript: script})
	waitEvent(t, a, Master, Initialize, 0)
	waitEvent(t, b, Master, Initialize, 0)
	if got := b.Priority(); got != 100 {
		t.Errorf("member priority %d: a sync group member's tracking weight must be forced to 0", got)
	}

	// A yields to a higher-priority master: B follows it to BACKUP.
	peer := netip.MustParseAddr("10.5.0.2")
	hi := Packet{Version: 3, VRID: 1, Priority: 200, Interval: time.Second, Addrs: a.vips}
	pkt, err := hi.Marshal(peer, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	aconn.in <- received{b: pkt, src: peer, dst: GroupIPv4, ttl: 255}
	waitEvent(t, a, Backup, Master, 0)
	waitEvent(t, b, Backup, Master, 0)
	if !eventually(5*time.Second, func() bool { l := bnl.log(); return len(l) == 2 && l[1] == "del 10.5.0.200/32" }) {
		t.Errorf("B's netlink calls %v, want its VIP removed", bnl.log())
	}

	// B's script fails (weight 0 in a sync group): B enters FAULT, and A with it.
	result <- errors.New("exit status 1")
	waitEvent(t, b, Fault, Backup, 0)
	waitEvent(t, a, Fault, Backup, 0)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	return unhex(t, s)
}

func TestSetPriorityInPlace(t *testing.T) {
	in, conn, _ := runFake(t, Config{Name: "VI_1", VRID: 51, Priority: 100, StartMaster: true,
		UnicastSrc:   netip.MustParseAddr("10.5.0.1"),
		TrackScripts: []TrackScript{{Name: "chk", Path: []string{"x"}, Weight: -60}}, RunScript: failing})
	waitEvent(t, in, Master, Initialize, 0)
	waitEvent(t, in, Master, Master, 40)
	// A reload raises the configured priority: tracking still applies, the state stays.
	if err := in.SetPriority(120); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, in, Master, Master, 60)
	if got := len(conn.sent()); got != 1 {
		t.Errorf("%d adverts sent, want only the first: a priority change sends none by itself", got)
	}
	for _, p := range []uint8{0, 255} {
		if err := in.SetPriority(p); err == nil {
			t.Errorf("SetPriority(%d) accepted", p)
		}
	}
}

func TestSetPriorityRefusals(t *testing.T) {
	owner, _, _ := runFake(t, Config{Name: "VI_O", VRID: 52, Priority: 255, UnicastSrc: netip.MustParseAddr("10.5.0.1")})
	if err := owner.SetPriority(100); err == nil {
		t.Error("the owner's priority changed in place")
	}
	in, err := New(Config{Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 100, VIPs: []netip.Prefix{netip.MustParsePrefix("10.5.0.100/32")},
		UnicastSrc: netip.MustParseAddr("10.5.0.1"), Clock: frozenClock{t0}, Conn: newFakeConn(), Netlink: &fakeNetlink{}, Announcer: &fakeAnnouncer{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := in.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.SetPriority(90); !errors.Is(err, ErrNotRunning) {
		t.Errorf("SetPriority after Run returned = %v, want ErrNotRunning", err)
	}
}
