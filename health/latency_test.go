package health

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestProbeObserverReportsLatency checks that every probe that returns is reported with its
// duration on the Scheduler's clock and its outcome, under every ID sharing it.
func TestProbeObserverReportsLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		var mu sync.Mutex
		type seen struct {
			IDs     []string
			Check   string
			Latency time.Duration
			Failed  bool
		}
		var got []seen
		// Set before the first Update, which Run receives on a channel: no race with Run.
		h.s.observe = func(p Probe) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, seen{p.IDs, p.Check, p.Latency, p.Err != nil})
		}
		// The first probe blocks until its 2s timeout; later ones pass at once.
		slow := &fakeCheck{name: "slow", slow: []window{{0, 1 * s}}, timeout: 2 * s}
		a, b := fakeTarget("A", slow), fakeTarget("B", slow)
		a.Retry, b.Retry = 0, 0
		h.update(a, b)
		h.runUntil(25 * s)
		h.close()
		mu.Lock()
		defer mu.Unlock()
		ids := []string{"A", "B"}
		want := []seen{
			{ids, "FAKE slow", 2 * s, true},
			{ids, "FAKE slow", 0, false},
			{ids, "FAKE slow", 0, false},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("probes (-want +got):\n%s", diff)
		}
	})
}
