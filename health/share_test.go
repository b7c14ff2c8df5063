package health

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestSchedulerSharesIdenticalChecks runs one real server in two virtual servers: the targets
// probe alike, so each round probes once and both IDs get every Event.
func TestSchedulerSharesIdenticalChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		f := &fakeCheck{name: "a", fail: []window{{25 * s, 45 * s}}}
		vs1, vs2 := fakeTarget("vs1/rs", f), fakeTarget("vs2/rs", f)
		h.update(vs1, vs2)
		off := h.s.offset("vs1/rs", 10*s)
		h.runUntil(off + 70*s)

		wantProbes := []time.Duration{0, 10 * s, 20 * s, 30 * s, 31 * s, 32 * s, 42 * s, 52 * s, 62 * s}
		if diff := cmp.Diff(wantProbes, f.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got):\n%s", diff)
		}
		want := []timedEvent{
			{At: off + 32*s, ID: "vs1/rs", Err: "FAKE a: refused"},
			{At: off + 32*s, ID: "vs2/rs", Err: "FAKE a: refused"},
			{At: off + 52*s, ID: "vs1/rs", Up: true},
			{At: off + 52*s, ID: "vs2/rs", Up: true},
		}
		if diff := cmp.Diff(want, h.got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		h.close()
	})
}

// TestSchedulerSharedJoinAndLeave: a target joining a shared check that is down learns it at
// once; a target whose definition changes leaves with its state.
func TestSchedulerSharedJoinAndLeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		f := &fakeCheck{name: "a", fail: []window{{0, time.Hour}}}
		h.update(fakeTarget("vs1/rs", f))
		off := h.s.offset("vs1/rs", 10*s)
		h.runUntil(off + 5*s) // down at off+2s
		h.update(fakeTarget("vs1/rs", f), fakeTarget("vs2/rs", f))
		h.runUntil(off + 6*s)
		// vs2 leaves the shared check: it keeps its state (down) and starts probing its own.
		g := &fakeCheck{name: "b"}
		h.update(fakeTarget("vs1/rs", f), fakeTarget("vs2/rs", g))
		offB := h.s.offset("vs2/rs", 10*s)
		h.runUntil(off + 6*s + offB + 1*s)
		h.close()
		want := []timedEvent{
			{At: off + 2*s, ID: "vs1/rs", Err: "FAKE a: refused"},
			{At: off + 5*s, ID: "vs2/rs", Err: "FAKE a: refused"},
			{At: off + 6*s + offB, ID: "vs2/rs", Up: true},
		}
		if diff := cmp.Diff(want, h.got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestProbeKey(t *testing.T) {
	a := netip.MustParseAddrPort("10.0.0.2:80")
	httpCheck := func(digest string) Checker {
		c, err := NewHTTPCheck(HTTPOptions{Addr: a, URLs: []URL{{Path: "/", Digest: digest}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	target := func(cs ...Checker) Target {
		return Target{ID: "x", Interval: 10 * s, Checkers: cs}
	}
	tests := []struct {
		name string
		a, b Target
		same bool
	}{
		{"equal tcp checks", target(TCPCheck{Addr: a}), target(TCPCheck{Addr: a}), true},
		{"tcp timeouts differ", target(TCPCheck{Addr: a}), target(TCPCheck{Addr: a, Timeout: time.Second}), false},
		{"equal http checks", target(httpCheck("")), target(httpCheck("")), true},
		{"http digests differ", target(httpCheck("")), target(httpCheck("00112233445566778899aabbccddeeff")), false},
		{"equal misc checks", target(MiscCheck{Path: []string{"/bin/x", "a"}}), target(MiscCheck{Path: []string{"/bin/x", "a"}}), true},
		{"misc arguments differ", target(MiscCheck{Path: []string{"/bin/x", "a"}}), target(MiscCheck{Path: []string{"/bin/x", "b"}}), false},
		{"distinct pointers", target(&fakeCheck{name: "a"}), target(&fakeCheck{name: "a"}), false},
		{"intervals differ", target(TCPCheck{Addr: a}), Target{ID: "y", Interval: 5 * s, Checkers: []Checker{TCPCheck{Addr: a}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probeKey(tt.a) == probeKey(tt.b); got != tt.same {
				t.Errorf("same key = %v, want %v:\n%q\n%q", got, tt.same, probeKey(tt.a), probeKey(tt.b))
			}
		})
	}
}

// TestSchedulerWarmup: a target with a warmup starts its first round within the warmup, not
// within its interval.
func TestSchedulerWarmup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
		checks := make([]*fakeCheck, len(ids))
		var targets []Target
		for i, id := range ids {
			checks[i] = &fakeCheck{name: id}
			targets = append(targets, Target{ID: id, Interval: 100 * s, Warmup: 2 * s, InitiallyUp: true, Checkers: []Checker{checks[i]}})
		}
		h.update(targets...)
		h.runUntil(2 * s)
		h.close()
		for i, c := range checks {
			// The harness measures probe times from the offset within Interval.
			first := h.s.offset(ids[i], 2*s) - h.s.offset(ids[i], 100*s)
			if diff := cmp.Diff([]time.Duration{first}, c.probeTimes()); diff != "" {
				t.Errorf("target %s probes (-want +got):\n%s", ids[i], diff)
			}
		}
	})
}
