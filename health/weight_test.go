package health

import (
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSchedulerWeightDelta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		misc := &weightedFake{
			fakeCheck: &fakeCheck{name: "misc", fail: []window{{45 * s, 55 * s}}},
			steps:     []weightStep{{0, 5}, {20 * s, 7}, {30 * s, 7}},
		}
		file := &weightedFake{fakeCheck: &fakeCheck{name: "file"}, steps: []weightStep{{0, -2}, {70 * s, 0}}}
		plain := &fakeCheck{name: "tcp"}
		tg := Target{ID: "rs", Interval: 10 * s, InitiallyUp: true, Checkers: []Checker{misc, plain, file}}
		h.update(tg)
		h.runUntil(100*s + h.s.offset("rs", 10*s))
		h.close()
		off := h.s.offset("rs", 10*s)
		want := []timedEvent{
			{At: off, ID: "rs", Up: true, WeightDelta: 3},        // first round: 5 - 2
			{At: off + 20*s, ID: "rs", Up: true, WeightDelta: 5}, // misc reports 7
			{At: off + 50*s, ID: "rs", Err: "FAKE misc: refused", WeightDelta: 5},
			{At: off + 60*s, ID: "rs", Up: true, WeightDelta: 5}, // back up, misc still 7
			{At: off + 70*s, ID: "rs", Up: true, WeightDelta: 7}, // file reports 0
		}
		if diff := cmp.Diff(want, h.got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}
