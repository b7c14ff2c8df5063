package health

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// epoch is when every fake clock starts.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // pending
}

type fakeTimer struct {
	clk  *fakeClock
	when time.Time
	c    chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, when: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	i := slices.Index(t.clk.timers, t)
	if i < 0 {
		return false
	}
	t.clk.timers = slices.Delete(t.clk.timers, i, i+1)
	return true
}

// next returns when the earliest pending timer fires.
func (c *fakeClock) next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return slices.MinFunc(c.timers, func(a, b *fakeTimer) int { return a.when.Compare(b.when) }).when, true
}

// set moves the clock to now and fires the timers that are due.
func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.when.After(now) {
			return false
		}
		t.c <- now
		return true
	})
}

// window is a span of fake time, relative to a fakeCheck's origin.
type window struct{ from, to time.Duration }

func (w window) has(d time.Duration) bool { return d >= w.from && d < w.to }

var errRefused = errors.New("refused")

// fakeCheck is a Checker scripted by time: probes that start in a fail window fail, in a hang
// window they block until the window ends (ignoring their context), and in a slow window they
// block until their context is done.
type fakeCheck struct {
	name    string
	fail    []window
	hang    []window
	slow    []window
	timeout time.Duration

	clk    *fakeClock
	origin time.Time
	stop   chan struct{} // releases hung probes when a test ends

	mu     sync.Mutex
	probes []time.Duration // start times of probes, relative to origin
}

func (f *fakeCheck) Check(ctx context.Context) error {
	at := f.clk.Now().Sub(f.origin)
	f.mu.Lock()
	f.probes = append(f.probes, at)
	f.mu.Unlock()
	for _, w := range f.hang {
		if w.has(at) {
			t := f.clk.NewTimer(w.to - at)
			select {
			case <-t.C():
			case <-f.stop:
			}
			return nil
		}
	}
	for _, w := range f.slow {
		if w.has(at) {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	for _, w := range f.fail {
		if w.has(at) {
			return errRefused
		}
	}
	return nil
}

func (f *fakeCheck) CheckTimeout() time.Duration { return f.timeout }
func (f *fakeCheck) String() string              { return "FAKE " + f.name }

// fake returns f, also for types that embed it.
func (f *fakeCheck) fake() *fakeCheck { return f }

// weightedFake is a fakeCheck that is a WeightChecker: its passing probes report the delta of
// the last step at or before the probe's time.
type weightedFake struct {
	*fakeCheck
	steps []weightStep
}

type weightStep struct {
	from  time.Duration
	delta int
}

func (w *weightedFake) CheckWeight(ctx context.Context) (int, error) {
	at := w.clk.Now().Sub(w.origin)
	if err := w.Check(ctx); err != nil {
		return 0, err
	}
	d := 0
	for _, s := range w.steps {
		if at >= s.from {
			d = s.delta
		}
	}
	return d, nil
}

func (f *fakeCheck) probeTimes() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.probes)
}

// timedEvent is an Event and when it was received, relative to the harness's epoch.
type timedEvent struct {
	At  time.Duration
	ID  string
	Up  bool
	Err string
	// WeightDelta is the Event's WeightDelta.
	WeightDelta int
	FirstDown   bool
}

// harness runs a Scheduler on a fake clock inside a synctest bubble, where synctest.Wait tells
// when the Scheduler and the probes it started have nothing left to do until the clock moves.
type harness struct {
	t      *testing.T
	clk    *fakeClock
	s      *Scheduler
	events <-chan Event
	stop   chan struct{}
	cancel context.CancelFunc
	done   chan error
	got    []timedEvent
}

// newHarness starts a Scheduler whose events the harness collects; call it inside
// synctest.Test.
func newHarness(t *testing.T) *harness {
	t.Helper()
	events := make(chan Event, 64)
	return newHarnessOn(t, events, events)
}

// newHarnessOn starts a Scheduler that sends events on send; the harness collects those that
// arrive on collect, which may be nil.
func newHarnessOn(t *testing.T, send chan<- Event, collect <-chan Event) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		clk:    &fakeClock{now: epoch},
		events: collect,
		stop:   make(chan struct{}),
		done:   make(chan error, 1),
	}
	h.s = NewScheduler(send, WithClock(h.clk), WithSeed(1), WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.s.Run(ctx) }()
	return h
}

// update passes targets to the Scheduler, pointing their fake checks at the clock with their
// origin at the target's first round.
func (h *harness) update(targets ...Target) {
	h.t.Helper()
	for _, tg := range targets {
		for _, c := range tg.Checkers {
			if ff, ok := c.(interface{ fake() *fakeCheck }); ok && ff.fake().clk == nil {
				f := ff.fake()
				f.clk, f.stop = h.clk, h.stop
				f.origin = h.clk.Now().Add(h.s.offset(tg.ID, tg.Interval))
			}
		}
	}
	if err := h.s.Update(targets); err != nil {
		h.t.Fatalf("Update: %v", err)
	}
}

// runUntil moves the clock to epoch+d, stopping at every timer on the way.
func (h *harness) runUntil(d time.Duration) {
	h.t.Helper()
	end := epoch.Add(d)
	for {
		synctest.Wait()
		h.drain()
		next, ok := h.clk.next()
		if !ok || next.After(end) {
			break
		}
		h.clk.set(next)
	}
	h.clk.set(end)
	synctest.Wait()
	h.drain()
}

func (h *harness) drain() {
	for {
		select {
		case ev := <-h.events:
			te := timedEvent{At: h.clk.Now().Sub(epoch), ID: ev.ID, Up: ev.Up, WeightDelta: ev.WeightDelta, FirstDown: ev.FirstDown}
			if ev.Err != nil {
				te.Err = ev.Err.Error()
			}
			h.got = append(h.got, te)
		default:
			return
		}
	}
}

// close stops the Scheduler and releases hung probes.
func (h *harness) close() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		h.t.Errorf("Run returned %v, want %v", err, context.Canceled)
	}
	close(h.stop)
	synctest.Wait()
}
