package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
)

// fakeXDP stands in for the loader: the tests need attach to fail on a chosen interface, which
// a real kernel does only in the setups the VM test builds. Services whose VIP is on an
// interface in fail come back as *loader.AttachError.
type fakeXDP struct {
	ifOf    map[netip.Addr]int
	fail    map[int]bool
	other   error // joined into every Apply's error
	applied []director.Snapshot
	stats   director.TrafficStats
	closed  bool
}

func (f *fakeXDP) Apply(_ context.Context, s director.Snapshot) error {
	f.applied = append(f.applied, s)
	byIf := map[int][]director.ServiceKey{}
	for _, svc := range s.Services {
		if i := f.ifOf[svc.Key.VIP]; f.fail[i] {
			byIf[i] = append(byIf[i], svc.Key)
		}
	}
	errs := []error{f.other}
	for i, keys := range byIf {
		errs = append(errs, &loader.AttachError{Ifindex: i, Name: fmt.Sprintf("eth%d", i), Services: keys,
			Err: fmt.Errorf("attach xdp to eth%d: native: %w; generic: %w", i, syscall.EBUSY, syscall.EEXIST)})
	}
	return errors.Join(errs...)
}

func (f *fakeXDP) TrafficStats() (director.TrafficStats, error) { return f.stats, nil }
func (f *fakeXDP) Close() error                                 { f.closed = true; return nil }

// fakeIPVS stands in for kernel IPVS, which exists only in the VM (test/vm/guest covers it).
type fakeIPVS struct {
	applied []director.Snapshot
	stats   director.TrafficStats
	closed  bool
}

func (f *fakeIPVS) Apply(_ context.Context, s director.Snapshot) error {
	f.applied = append(f.applied, s)
	return nil
}
func (f *fakeIPVS) TrafficStats() (director.TrafficStats, error) { return f.stats, nil }
func (f *fakeIPVS) Close() error                                 { f.closed = true; return nil }

var (
	vipA = netip.MustParseAddr("192.0.2.1")    // on eth1, XDP attaches
	vipB = netip.MustParseAddr("198.51.100.1") // on eth2, XDP cannot attach
	keyA = director.ServiceKey{VIP: vipA, Port: 80, Proto: director.TCP}
	keyB = director.ServiceKey{VIP: vipB, Port: 80, Proto: director.TCP}
	keyC = director.ServiceKey{VIP: vipB, Port: 53, Proto: director.UDP}
)

func snapOf(keys ...director.ServiceKey) director.Snapshot {
	s := director.Snapshot{Timeouts: director.Timeouts{TCP: 60e9}}
	for _, k := range keys {
		s.Services = append(s.Services, director.Service{Key: k, Scheduler: "rr",
			Backends: []director.Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1, Up: true}}})
	}
	return s
}

func keysOf(s director.Snapshot) []director.ServiceKey {
	var out []director.ServiceKey
	for _, svc := range s.Services {
		out = append(out, svc.Key)
	}
	return out
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func newAuto(xdp *fakeXDP, fb *fakeIPVS, fbErr error) (*Auto, *bytes.Buffer, *int) {
	var buf bytes.Buffer
	opens := new(int)
	a := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), XDP: xdp,
		OpenFallback: func() (Forwarder, error) {
			*opens++
			if fbErr != nil {
				return nil, fbErr
			}
			return fb, nil
		}})
	return a, &buf, opens
}

func TestApplySplitsByInterface(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		fail     map[int]bool
		wantXDP  []director.ServiceKey
		wantIPVS []director.ServiceKey
		opens    int
		logLines int
	}{
		{name: "every interface attaches", wantXDP: []director.ServiceKey{keyA, keyB, keyC}},
		{name: "one interface fails", fail: map[int]bool{2: true},
			wantXDP: []director.ServiceKey{keyA}, wantIPVS: []director.ServiceKey{keyB, keyC}, opens: 1, logLines: 1},
		{name: "every interface fails", fail: map[int]bool{1: true, 2: true},
			wantIPVS: []director.ServiceKey{keyA, keyB, keyC}, opens: 1, logLines: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: tc.fail}
			fb := &fakeIPVS{}
			a, log, opens := newAuto(xdp, fb, nil)
			s := snapOf(keyA, keyB, keyC)
			for range 2 { // a second, unchanged Apply changes nothing
				if err := a.Apply(ctx, s); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			last := xdp.applied[len(xdp.applied)-1]
			if diff := cmp.Diff(tc.wantXDP, keysOf(last), addrCmp); diff != "" {
				t.Errorf("XDP serves (-want +got):\n%s", diff)
			}
			if last.Timeouts != s.Timeouts {
				t.Errorf("XDP got timeouts %+v, want %+v", last.Timeouts, s.Timeouts)
			}
			var gotIPVS []director.ServiceKey
			if len(fb.applied) > 0 {
				gotIPVS = keysOf(fb.applied[len(fb.applied)-1])
				if fb.applied[len(fb.applied)-1].Timeouts != s.Timeouts {
					t.Errorf("IPVS did not get the snapshot's timeouts")
				}
			}
			if diff := cmp.Diff(tc.wantIPVS, gotIPVS, addrCmp); diff != "" {
				t.Errorf("IPVS serves (-want +got):\n%s", diff)
			}
			if *opens != tc.opens {
				t.Errorf("IPVS opened %d times, want %d", *opens, tc.opens)
			}
			if n := strings.Count(log.String(), "serving its services with kernel IPVS"); n != tc.logLines {
				t.Errorf("%d log lines about the fallback, want %d (one per interface):\n%s", n, tc.logLines, log)
			}
			if tc.fail != nil && len(xdp.applied) != 3 {
				t.Errorf("XDP applied %d times, want 3 (try, without the failed interface, then once more)", len(xdp.applied))
			}
		})
	}
}

func TestFailuresForStatus(t *testing.T) {
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: map[int]bool{2: true}}
	a, _, _ := newAuto(xdp, &fakeIPVS{}, nil)
	if err := a.Apply(context.Background(), snapOf(keyA, keyB, keyC)); err != nil {
		t.Fatal(err)
	}
	want := []Failure{{Ifindex: 2, Name: "eth2", Services: []director.ServiceKey{keyC, keyB},
		Reason: "attach xdp to eth2: native: device or resource busy; generic: file exists"}}
	if diff := cmp.Diff(want, a.Failures(), addrCmp); diff != "" {
		t.Errorf("Failures (-want +got):\n%s", diff)
	}

	// A moved service leaving the configuration leaves IPVS; the failure goes with the last one.
	if err := a.Apply(context.Background(), snapOf(keyA, keyB)); err != nil {
		t.Fatal(err)
	}
	want[0].Services = []director.ServiceKey{keyB}
	if diff := cmp.Diff(want, a.Failures(), addrCmp); diff != "" {
		t.Errorf("Failures after removing %s (-want +got):\n%s", keyC, diff)
	}
	if err := a.Apply(context.Background(), snapOf(keyA)); err != nil {
		t.Fatal(err)
	}
	if got := a.Failures(); len(got) != 0 {
		t.Errorf("Failures = %+v after every moved service left, want none", got)
	}
}

func TestRemovedServiceLeavesIPVS(t *testing.T) {
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: map[int]bool{2: true}}
	fb := &fakeIPVS{}
	a, _, _ := newAuto(xdp, fb, nil)
	ctx := context.Background()
	if err := a.Apply(ctx, snapOf(keyA, keyB)); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, snapOf(keyA)); err != nil {
		t.Fatal(err)
	}
	if got := fb.applied[len(fb.applied)-1].Services; len(got) != 0 {
		t.Errorf("IPVS still holds %v after the service left the configuration", got)
	}
}

func TestIPVSUnavailable(t *testing.T) {
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: map[int]bool{2: true}}
	a, log, opens := newAuto(xdp, nil, errors.New("ip_vs module not loaded"))
	ctx := context.Background()
	for range 2 {
		err := a.Apply(ctx, snapOf(keyA, keyB))
		if err == nil || !strings.Contains(err.Error(), "not served") || !strings.Contains(err.Error(), "ip_vs module not loaded") {
			t.Errorf("Apply = %v, want an error saying the services are not served and why", err)
		}
	}
	if diff := cmp.Diff([]director.ServiceKey{keyA}, keysOf(xdp.applied[len(xdp.applied)-1]), addrCmp); diff != "" {
		t.Errorf("XDP serves (-want +got):\n%s", diff)
	}
	if *opens != 1 {
		t.Errorf("IPVS open tried %d times, want 1", *opens)
	}
	if !strings.Contains(log.String(), "kernel IPVS is unavailable") {
		t.Errorf("no log line saying IPVS is unavailable:\n%s", log)
	}
	f := a.Failures()
	if len(f) != 1 || f[0].FallbackErr != "ip_vs module not loaded" {
		t.Errorf("Failures = %+v, want eth2 with IPVS's error", f)
	}
}

func TestOtherErrorsPassThrough(t *testing.T) {
	other := fmt.Errorf("service SCTP 192.0.2.1:9: %w", director.ErrUnsupported)
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: map[int]bool{2: true}, other: other}
	a, _, _ := newAuto(xdp, &fakeIPVS{}, nil)
	err := a.Apply(context.Background(), snapOf(keyA, keyB))
	if !errors.Is(err, director.ErrUnsupported) {
		t.Errorf("Apply = %v, want XDP's other error kept", err)
	}
	var ae *loader.AttachError
	if errors.As(err, &ae) {
		t.Errorf("Apply = %v, want the handled attach error left out", err)
	}
}

func TestTrafficStatsMerged(t *testing.T) {
	rs := netip.MustParseAddrPort("10.0.0.1:80")
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1, vipB: 2}, fail: map[int]bool{2: true},
		stats: director.TrafficStats{
			Services: map[director.ServiceKey]director.Counters{keyA: {Packets: 10}},
			Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{keyA: {rs: {Packets: 10}}},
			Verdicts: map[string]uint64{"tx_dr": 10},
		}}
	fb := &fakeIPVS{stats: director.TrafficStats{
		Services: map[director.ServiceKey]director.Counters{keyB: {Packets: 7, ActiveConns: 2, InactConns: 1}},
		Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{keyB: {rs: {Packets: 7, ActiveConns: 2, InactConns: 1}}},
	}}
	a, _, _ := newAuto(xdp, fb, nil)
	if err := a.Apply(context.Background(), snapOf(keyA, keyB)); err != nil {
		t.Fatal(err)
	}
	got, err := a.TrafficStats()
	if err != nil {
		t.Fatal(err)
	}
	want := director.TrafficStats{
		Services: map[director.ServiceKey]director.Counters{keyA: {Packets: 10}, keyB: {Packets: 7, ActiveConns: 2, InactConns: 1}},
		Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{
			keyA: {rs: {Packets: 10}}, keyB: {rs: {Packets: 7, ActiveConns: 2, InactConns: 1}}},
		Verdicts: map[string]uint64{"tx_dr": 10},
	}
	if diff := cmp.Diff(want, got, addrCmp, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("TrafficStats (-want +got):\n%s", diff)
	}
}

func TestCloseClosesBoth(t *testing.T) {
	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipB: 2}, fail: map[int]bool{2: true}}
	fb := &fakeIPVS{}
	a, _, _ := newAuto(xdp, fb, nil)
	if err := a.Apply(context.Background(), snapOf(keyB)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !xdp.closed || !fb.closed {
		t.Errorf("closed xdp=%v ipvs=%v, want both", xdp.closed, fb.closed)
	}
	if err := a.Apply(context.Background(), snapOf(keyB)); err == nil {
		t.Error("Apply after Close succeeded")
	}
}

// TestIPVSOnlyKinds checks that fwmark and SCTP services, which XDP cannot serve, go to IPVS
// when it opens, and stay with XDP (which refuses them) when it does not.
func TestIPVSOnlyKinds(t *testing.T) {
	fwm := director.FWMarkKey(5, false)
	sctp := director.ServiceKey{VIP: vipA, Port: 9899, Proto: director.SCTP}
	ctx := context.Background()

	xdp := &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1}}
	fb := &fakeIPVS{}
	a, log, _ := newAuto(xdp, fb, nil)
	if err := a.Apply(ctx, snapOf(keyA, fwm, sctp)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]director.ServiceKey{keyA}, keysOf(xdp.applied[len(xdp.applied)-1]), addrCmp); diff != "" {
		t.Errorf("XDP serves (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]director.ServiceKey{fwm, sctp}, keysOf(fb.applied[len(fb.applied)-1]), addrCmp); diff != "" {
		t.Errorf("IPVS serves (-want +got):\n%s", diff)
	}
	if n := strings.Count(log.String(), "XDP cannot serve this kind of service"); n != 2 {
		t.Errorf("%d log lines for the IPVS-only services, want 2:\n%s", n, log)
	}

	xdp = &fakeXDP{ifOf: map[netip.Addr]int{vipA: 1}}
	a, _, _ = newAuto(xdp, nil, errors.New("ip_vs module not loaded"))
	if err := a.Apply(ctx, snapOf(keyA, fwm)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]director.ServiceKey{keyA, fwm}, keysOf(xdp.applied[len(xdp.applied)-1]), addrCmp); diff != "" {
		t.Errorf("without IPVS, XDP is handed (-want +got):\n%s", diff)
	}
}
