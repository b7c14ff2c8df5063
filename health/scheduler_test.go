package health

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const s = time.Second

func TestSchedulerStateMachine(t *testing.T) {
	// Every case runs one target with Interval 10s and DelayBeforeRetry 1s; times are relative
	// to the target's first round. Rounds start 10s after the previous one ends.
	tests := []struct {
		name          string
		checks        []*fakeCheck
		retry         int
		initiallyDown bool
		firstDown     bool // NotifyFirstDown
		until         time.Duration
		want          []timedEvent
		wantProbes    map[string][]time.Duration // by check name; nil: not checked
	}{
		{
			name:       "no events while up",
			checks:     []*fakeCheck{{name: "a"}},
			retry:      2,
			until:      100 * s,
			wantProbes: map[string][]time.Duration{"a": {0, 10 * s, 20 * s, 30 * s, 40 * s, 50 * s, 60 * s, 70 * s, 80 * s, 90 * s, 100 * s}},
		},
		{
			name:   "goes down after the last retry fails",
			checks: []*fakeCheck{{name: "a", fail: []window{{25 * s, time.Hour}}}},
			retry:  2,
			until:  60 * s,
			want:   []timedEvent{{At: 32 * s, ID: "rs", Err: "FAKE a: refused"}},
			// Down: probed every round, without retries.
			wantProbes: map[string][]time.Duration{"a": {0, 10 * s, 20 * s, 30 * s, 31 * s, 32 * s, 42 * s, 52 * s}},
		},
		{
			name:   "a failure the retries outlast sends nothing",
			checks: []*fakeCheck{{name: "a", fail: []window{{30 * s, 31*s + 500*time.Millisecond}}}},
			retry:  2,
			until:  45 * s,
			// The round that retried ends at 32s, so the next one starts at 42s.
			wantProbes: map[string][]time.Duration{"a": {0, 10 * s, 20 * s, 30 * s, 31 * s, 32 * s, 42 * s}},
		},
		{
			name:   "recovers after one passing round",
			checks: []*fakeCheck{{name: "a", fail: []window{{25 * s, 55 * s}}}},
			retry:  2,
			until:  100 * s,
			want: []timedEvent{
				{At: 32 * s, ID: "rs", Err: "FAKE a: refused"},
				{At: 62 * s, ID: "rs", Up: true},
			},
		},
		{
			name:   "retry 0 goes down at the first failure",
			checks: []*fakeCheck{{name: "a", fail: []window{{25 * s, time.Hour}}}},
			until:  60 * s,
			want:   []timedEvent{{At: 30 * s, ID: "rs", Err: "FAKE a: refused"}},
		},
		{
			name:          "initially down goes up after the first round",
			checks:        []*fakeCheck{{name: "a"}, {name: "b"}},
			retry:         2,
			initiallyDown: true,
			until:         30 * s,
			want:          []timedEvent{{At: 0, ID: "rs", Up: true}},
		},
		{
			name:          "initially down and failing sends nothing and does not retry",
			checks:        []*fakeCheck{{name: "a", fail: []window{{0, time.Hour}}}},
			retry:         2,
			initiallyDown: true,
			until:         25 * s,
			wantProbes:    map[string][]time.Duration{"a": {0, 10 * s, 20 * s}},
		},
		{
			name:          "alpha: a failing first round sends one FirstDown event",
			checks:        []*fakeCheck{{name: "a", fail: []window{{0, time.Hour}}}},
			retry:         2,
			initiallyDown: true,
			firstDown:     true,
			until:         25 * s,
			want:          []timedEvent{{At: 0, ID: "rs", Err: "FAKE a: refused", FirstDown: true}},
			wantProbes:    map[string][]time.Duration{"a": {0, 10 * s, 20 * s}},
		},
		{
			name:          "alpha: a passing first round sends only up",
			checks:        []*fakeCheck{{name: "a", fail: []window{{15 * s, time.Hour}}}},
			retry:         2,
			initiallyDown: true,
			firstDown:     true,
			until:         45 * s,
			// Up at once; the later failure is an ordinary down after the retries.
			want: []timedEvent{{At: 0, ID: "rs", Up: true}, {At: 22 * s, ID: "rs", Err: "FAKE a: refused"}},
		},
		{
			name:      "FirstDown needs a target that starts down",
			checks:    []*fakeCheck{{name: "a"}},
			retry:     2,
			firstDown: true,
			until:     25 * s,
		},
		{
			name: "up only while all checks pass",
			checks: []*fakeCheck{
				{name: "a", fail: []window{{25 * s, 55 * s}}},
				{name: "b", fail: []window{{45 * s, 85 * s}}},
			},
			retry: 2,
			until: 120 * s,
			// a goes down at 32s and is up again at 64s, but b went down at 54s until 94s.
			want: []timedEvent{
				{At: 32 * s, ID: "rs", Err: "FAKE a: refused"},
				{At: 94 * s, ID: "rs", Up: true},
			},
			wantProbes: map[string][]time.Duration{
				"a": {0, 10 * s, 20 * s, 30 * s, 31 * s, 32 * s, 42 * s, 52 * s, 64 * s, 74 * s, 84 * s, 94 * s, 104 * s, 114 * s},
				"b": {0, 10 * s, 20 * s, 32 * s, 42 * s, 52 * s, 53 * s, 54 * s, 64 * s, 74 * s, 84 * s, 94 * s, 104 * s, 114 * s},
			},
		},
		{
			name:   "a probe that overruns its timeout fails",
			checks: []*fakeCheck{{name: "a", timeout: 3 * s, slow: []window{{25 * s, 45 * s}}}},
			retry:  2,
			until:  60 * s,
			// Probes at 30s, 34s and 38s each take their 3s.
			want: []timedEvent{
				{At: 41 * s, ID: "rs", Err: "FAKE a: timed out after 3s: context canceled"},
				{At: 51 * s, ID: "rs", Up: true},
			},
		},
		{
			name:   "a hung probe is abandoned and its check not called again until it returns",
			checks: []*fakeCheck{{name: "a", timeout: 3 * s, hang: []window{{0, 20 * s}}}},
			retry:  1,
			until:  40 * s,
			// Abandoned at 4s; the retry at 5s fails at once; so does the round at 15s. The
			// probe returns at 20s and the round at 25s passes.
			want: []timedEvent{
				{At: 5 * s, ID: "rs", Err: "FAKE a: check did not return after its timeout: the previous probe is still running"},
				{At: 25 * s, ID: "rs", Up: true},
			},
			wantProbes: map[string][]time.Duration{"a": {0, 25 * s, 35 * s}},
		},
		{
			name: "a hung check does not hold up the next one",
			checks: []*fakeCheck{
				{name: "a", timeout: 3 * s, hang: []window{{0, 100 * s}}},
				{name: "b"},
			},
			until: 20 * s,
			want:  []timedEvent{{At: 4 * s, ID: "rs", Err: "FAKE a: check did not return after its timeout (3s)"}},
			// b follows a's abandonment at 4s; a fails without a probe at 14s.
			wantProbes: map[string][]time.Duration{"a": {0}, "b": {4 * s, 14 * s}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				var checkers []Checker
				for _, c := range tt.checks {
					checkers = append(checkers, c)
				}
				target := Target{
					ID:               "rs",
					Checkers:         checkers,
					Interval:         10 * s,
					Retry:            tt.retry,
					DelayBeforeRetry: 1 * s,
					InitiallyUp:      !tt.initiallyDown,
					NotifyFirstDown:  tt.firstDown,
				}
				off := h.s.offset(target.ID, target.Interval)
				h.update(target)
				h.runUntil(off + tt.until)
				h.close()

				var want []timedEvent
				for _, ev := range tt.want {
					ev.At += off
					want = append(want, ev)
				}
				if diff := cmp.Diff(want, h.got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				for _, c := range tt.checks {
					want, ok := tt.wantProbes[c.name]
					if !ok {
						continue
					}
					if diff := cmp.Diff(want, c.probeTimes()); diff != "" {
						t.Errorf("probes of %s (-want +got):\n%s", c.name, diff)
					}
				}
			})
		})
	}
}

func TestSchedulerNoCheckers(t *testing.T) {
	tests := []struct {
		name        string
		initiallyUp bool
		want        []timedEvent
	}{
		{name: "initially up", initiallyUp: true},
		{name: "initially down goes up at once", want: []timedEvent{{At: 5 * s, ID: "rs", Up: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				h.runUntil(5 * s)
				h.update(Target{ID: "rs", Interval: 10 * s, InitiallyUp: tt.initiallyUp})
				h.runUntil(60 * s)
				h.close()
				if diff := cmp.Diff(tt.want, h.got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// fakeTarget returns a target with Interval 10s, Retry 2 and DelayBeforeRetry 1s.
func fakeTarget(id string, checks ...*fakeCheck) Target {
	t := Target{ID: id, Interval: 10 * s, Retry: 2, DelayBeforeRetry: 1 * s, InitiallyUp: true}
	for _, c := range checks {
		t.Checkers = append(t.Checkers, c)
	}
	return t
}

func TestSchedulerUpdate(t *testing.T) {
	t.Run("adds and removes targets and keeps the others' schedule", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t)
			a := &fakeCheck{name: "a"}
			b := &fakeCheck{name: "b", fail: []window{{0, time.Hour}}}
			c := &fakeCheck{name: "c"}
			h.update(fakeTarget("A", a), fakeTarget("B", b))
			h.runUntil(50 * s)
			h.update(fakeTarget("A", a), Target{ID: "C", Checkers: []Checker{c}, Interval: 10 * s})
			h.runUntil(100 * s)
			h.close()

			offB, offC := h.s.offset("B", 10*s), h.s.offset("C", 10*s)
			want := []timedEvent{
				{At: offB + 2*s, ID: "B", Err: "FAKE b: refused"},
				{At: 50*s + offC, ID: "C", Up: true},
			}
			if diff := cmp.Diff(want, h.got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			for _, at := range b.probeTimes() {
				if at+offB > 50*s {
					t.Errorf("removed target B probed at %v", at+offB)
				}
			}
			var wantA []time.Duration
			for at := time.Duration(0); at+h.s.offset("A", 10*s) <= 100*s; at += 10 * s {
				wantA = append(wantA, at)
			}
			if diff := cmp.Diff(wantA, a.probeTimes()); diff != "" {
				t.Errorf("probes of kept target A (-want +got):\n%s", diff)
			}
		})
	})

	t.Run("a kept target keeps its state and takes its new checker", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t)
			old := &fakeCheck{name: "a", fail: []window{{0, time.Hour}}}
			h.update(fakeTarget("A", old))
			h.runUntil(30 * s)
			// Same String, so the same check: A stays down and is up after its next round.
			fixed := &fakeCheck{name: "a", clk: h.clk, stop: h.stop, origin: epoch}
			h.update(fakeTarget("A", fixed))
			h.runUntil(60 * s)
			h.close()

			off := h.s.offset("A", 10*s)
			// Down at off+2s; rounds then start at off+12s, off+22s, ...
			next := off + 12*s
			for next <= 30*s {
				next += 10 * s
			}
			want := []timedEvent{
				{At: off + 2*s, ID: "A", Err: "FAKE a: refused"},
				{At: next, ID: "A", Up: true},
			}
			if diff := cmp.Diff(want, h.got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if got := old.probeTimes(); got[len(got)-1]+off > 30*s {
				t.Errorf("replaced checker probed at %v", got[len(got)-1]+off)
			}
		})
	})

	t.Run("dropping the failing check brings a target up at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t)
			a := &fakeCheck{name: "a", fail: []window{{0, time.Hour}}}
			b := &fakeCheck{name: "b"}
			h.update(fakeTarget("A", a, b))
			h.runUntil(30 * s)
			h.update(fakeTarget("A", b))
			h.runUntil(60 * s)
			h.close()

			want := []timedEvent{
				{At: h.s.offset("A", 10*s) + 2*s, ID: "A", Err: "FAKE a: refused"},
				{At: 30 * s, ID: "A", Up: true},
			}
			if diff := cmp.Diff(want, h.got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	})

	t.Run("a new check of a down target starts down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t)
			a := &fakeCheck{name: "a", fail: []window{{0, time.Hour}}}
			c := &fakeCheck{name: "c", fail: []window{{0, time.Hour}}}
			h.update(fakeTarget("A", a))
			h.runUntil(30 * s)
			h.update(fakeTarget("A", c))
			h.runUntil(60 * s)
			h.close()

			want := []timedEvent{{At: h.s.offset("A", 10*s) + 2*s, ID: "A", Err: "FAKE a: refused"}}
			if diff := cmp.Diff(want, h.got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			// c starts down, so it is probed once per round, without retries.
			probes := c.probeTimes()
			for i := 1; i < len(probes); i++ {
				if d := probes[i] - probes[i-1]; d != 10*s {
					t.Errorf("probes of c %v apart, want 10s: %v", d, probes)
				}
			}
		})
	})

	t.Run("removing a target with a hung probe", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t)
			a := &fakeCheck{name: "a"}
			b := &fakeCheck{name: "b", timeout: 3 * s, hang: []window{{0, 200 * s}}}
			h.update(fakeTarget("A", a), fakeTarget("B", b))
			h.runUntil(h.s.offset("B", 10*s) + 1*s) // B's probe is in flight
			h.update(fakeTarget("A", a))
			h.runUntil(250 * s)
			h.close()

			if len(h.got) != 0 {
				t.Errorf("events %v, want none", h.got)
			}
			if got := len(b.probeTimes()); got != 1 {
				t.Errorf("b probed %d times, want 1", got)
			}
			if got := len(a.probeTimes()); got < 24 {
				t.Errorf("a probed %d times in 250s, want about 25", got)
			}
		})
	})
}

func TestSchedulerUpdateRejects(t *testing.T) {
	valid := Target{ID: "A", Interval: 10 * s}
	tests := []struct {
		name    string
		targets []Target
	}{
		{name: "empty id", targets: []Target{{Interval: s}}},
		{name: "duplicate id", targets: []Target{valid, valid}},
		{name: "zero interval", targets: []Target{{ID: "A"}}},
		{name: "negative retry", targets: []Target{{ID: "A", Interval: s, Retry: -1}}},
		{name: "negative delay before retry", targets: []Target{{ID: "A", Interval: s, DelayBeforeRetry: -s}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sch := NewScheduler(make(chan Event))
			if err := sch.Update([]Target{valid}); err != nil {
				t.Fatalf("Update(valid): %v", err)
			}
			if err := sch.Update(tt.targets); err == nil {
				t.Fatalf("Update(%+v) succeeded, want an error", tt.targets)
			}
			if diff := cmp.Diff([]Target{valid}, sch.desired); diff != "" {
				t.Errorf("targets after a rejected update (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchedulerSpreadsTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		const n = 100
		checks := make([]*fakeCheck, n)
		var targets []Target
		for i := range checks {
			checks[i] = &fakeCheck{name: fmt.Sprint(i)}
			targets = append(targets, fakeTarget(fmt.Sprintf("10.0.0.%d:80", i), checks[i]))
		}
		h.update(targets...)
		h.runUntil(10*s - 1)
		h.close()

		// Ten one-second buckets of ten targets each on average.
		var buckets [10]int
		for i, c := range checks {
			probes := c.probeTimes()
			if len(probes) != 1 {
				t.Fatalf("target %d probed %d times in its first interval, want 1", i, len(probes))
			}
			buckets[(c.origin.Sub(epoch)+probes[0])/s]++
		}
		for i, b := range buckets {
			if b > 25 {
				t.Errorf("%d of %d targets start in second %d: %v", b, n, i, buckets)
			}
		}
	})
}

func TestSchedulerOffsetIsSeeded(t *testing.T) {
	a := NewScheduler(nil, WithSeed(7))
	b := NewScheduler(nil, WithSeed(7))
	c := NewScheduler(nil, WithSeed(8))
	var same, differ int
	for i := range 50 {
		id := fmt.Sprintf("10.0.0.%d:80", i)
		if a.offset(id, time.Minute) != b.offset(id, time.Minute) {
			t.Fatalf("offset(%q) differs between two schedulers with the same seed", id)
		}
		if a.offset(id, time.Minute) == c.offset(id, time.Minute) {
			same++
		} else {
			differ++
		}
		if o := a.offset(id, time.Minute); o < 0 || o >= time.Minute {
			t.Errorf("offset(%q) = %v, want within [0, 1m)", id, o)
		}
	}
	if differ == 0 {
		t.Errorf("offsets do not depend on the seed")
	}
}

// TestSchedulerEventsDoNotBlockChecks holds events back from a slow reader: checks go on and
// every transition arrives, in order.
func TestSchedulerEventsDoNotBlockChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unbuffered := make(chan Event)
		h := newHarnessOn(t, unbuffered, nil)
		a := &fakeCheck{name: "a", fail: []window{{0, 30 * s}, {60 * s, 90 * s}}}
		h.update(fakeTarget("A", a))
		h.runUntil(200 * s)
		var got []bool
		for range 4 {
			got = append(got, (<-unbuffered).Up)
		}
		h.close()
		if diff := cmp.Diff([]bool{false, true, false, true}, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if n := len(a.probeTimes()); n < 19 {
			t.Errorf("a probed %d times in 200s, want about 20", n)
		}
	})
}
