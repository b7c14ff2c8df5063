package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// hangGrace is how long past its timeout a probe may run before the Scheduler abandons it.
const hangGrace = time.Second

// Scheduler runs the health checks of a set of Targets and sends an Event on every change of a
// target's state, following keepalived's rules:
//
//   - A target starts in its InitiallyUp state; each of its checkers starts in that state too.
//   - A round runs the target's checkers one after the other. The next round starts Interval
//     after a round ends, as keepalived re-arms delay_loop when a check completes. The first
//     round starts at an offset within Interval (Warmup, if set) derived from the target's ID
//     and the seed, so that targets added together are not probed together.
//   - A failed probe of a checker that is up is retried up to Retry times, DelayBeforeRetry
//     apart; the checker goes down when the last retry fails. A checker that is down is not
//     retried, and goes up after one passing probe.
//   - A target is up when all its checkers are up (always, if it has none). The Event of a
//     target that goes down carries the error of the probe that took it down.
//   - A WeightChecker's passing probe sets its weight delta; a target's WeightDelta is the
//     sum over its checkers. A change of it while the target is up is sent as an Event (with
//     Up true) at the end of the round.
//
// Each probe gets a context that is cancelled after its timeout (TimeoutChecker, else
// DefaultTimeout); a probe that returns after that fails. A probe that has not returned a
// second after its timeout is abandoned: it fails with ErrCheckHung and is logged, and its
// checker fails at once, without being called, until the abandoned probe returns. So a target
// has at most one probe running, plus at most one abandoned probe per hung checker.
//
// Targets that probe alike (equal Interval, Retry, DelayBeforeRetry, InitiallyUp and
// checkers; see probeKey) share one schedule and one probe per round, and each of their IDs
// gets every Event: keepalived probes a real server once per virtual server that lists it,
// Sluice once. The first ID of such a group sets the round's offset. A target joining a group
// learns its state at once (an Event if it differs from InitiallyUp); one leaving keeps it.
//
// No Event is sent for a target's initial state, nor for a target Update removes, with one
// exception: a target with NotifyFirstDown that starts down and whose first round ends down
// gets an Event with FirstDown set (keepalived's notify_down for an alpha server). Events wait
// in a queue inside the Scheduler, so a slow reader delays them but not the checks.
//
// All state belongs to the goroutine in Run; Update hands it a new set of targets.
type Scheduler struct {
	events chan<- Event
	clock  Clock
	log    *slog.Logger
	seed   uint64

	mu      sync.Mutex
	desired []Target      // the last set passed to Update
	updated chan struct{} // signals Run that desired changed

	// Owned by Run.
	ctx      context.Context
	targets  map[string]*target
	queue    dueQueue          // targets waiting for a time, earliest first
	probes   map[uint64]*probe // probes whose goroutine has not returned
	results  chan probeResult  // from probe goroutines to Run
	out      []Event           // events not yet sent
	probeSeq uint64            // the ID of the last probe started
	observe  func(Probe)       // told of every finished probe; nil for none
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithClock sets the time source; the default is the system clock.
func WithClock(c Clock) Option { return func(s *Scheduler) { s.clock = c } }

// WithLogger sets where check failures are logged; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// Probe is one finished probe of a target's checker, as WithProbeObserver reports it.
type Probe struct {
	// IDs are the target IDs the probe was made for (targets that probe alike share probes).
	IDs []string
	// Check is the checker's String.
	Check string
	// Latency is how long the probe took, on the Scheduler's clock.
	Latency time.Duration
	// Err is why the probe failed; nil when it passed.
	Err error
}

// WithProbeObserver has f told of every probe that returns, passed or failed, for latency
// metrics; abandoned probes are not reported. f runs on Run's goroutine and must not block.
func WithProbeObserver(f func(Probe)) Option { return func(s *Scheduler) { s.observe = f } }

// WithSeed sets the seed of the targets' start offsets; the default is random. Offsets depend
// only on the seed, the target's ID and its Interval.
func WithSeed(seed uint64) Option { return func(s *Scheduler) { s.seed = seed } }

// NewScheduler returns a Scheduler that sends state changes on events. It has no targets until
// Update is called and checks nothing until Run is.
func NewScheduler(events chan<- Event, opts ...Option) *Scheduler {
	s := &Scheduler{
		events:  events,
		clock:   systemClock{},
		log:     slog.Default(),
		seed:    rand.Uint64(),
		updated: make(chan struct{}, 1),
		targets: make(map[string]*target),
		probes:  make(map[uint64]*probe),
		results: make(chan probeResult),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Update replaces the set of targets; it may be called before or while Run runs, and does not
// block. Targets are matched by ID: new ones start as described on Scheduler, missing ones
// stop (no Event is sent for them), and the others keep their state and schedule while their
// new definition applies from its next use. If a kept target's checkers (by String) changed,
// its round in progress is dropped, checkers with an unchanged String keep their state, new
// ones start in the target's current state, and the next round starts at the target's offset.
// An invalid set is rejected and the running one kept.
func (s *Scheduler) Update(targets []Target) error {
	seen := make(map[string]bool, len(targets))
	ts := make([]Target, len(targets))
	for i, t := range targets {
		switch {
		case t.ID == "":
			return fmt.Errorf("update health targets: target %d has no id", i)
		case seen[t.ID]:
			return fmt.Errorf("update health targets: duplicate id %q", t.ID)
		case t.Interval <= 0:
			return fmt.Errorf("update health targets: target %q: interval %v is not positive", t.ID, t.Interval)
		case t.Retry < 0 || t.DelayBeforeRetry < 0 || t.Warmup < 0:
			return fmt.Errorf("update health targets: target %q: negative retry, delay before retry or warmup", t.ID)
		}
		seen[t.ID] = true
		t.Checkers = slices.Clone(t.Checkers)
		ts[i] = t
	}
	s.mu.Lock()
	s.desired = ts
	s.mu.Unlock()
	select {
	case s.updated <- struct{}{}:
	default: // Run has yet to pick up an earlier update and will read this one.
	}
	return nil
}

// Run checks the targets until ctx is done, then returns ctx.Err(). Probes still running are
// cancelled, not waited for. Run must not be called more than once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.ctx = ctx
	var (
		timer Timer
		armed time.Time // when timer fires
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var timerC <-chan time.Time
		if len(s.queue) == 0 {
			if timer != nil {
				timer.Stop()
				timer = nil
			}
		} else {
			if next := s.queue[0].due; timer == nil || !next.Equal(armed) {
				if timer != nil {
					timer.Stop()
				}
				timer, armed = s.clock.NewTimer(next.Sub(s.clock.Now())), next
			}
			timerC = timer.C()
		}
		var out chan<- Event
		var ev Event
		if len(s.out) > 0 {
			out, ev = s.events, s.out[0]
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.updated:
			s.reconcile(s.clock.Now())
		case r := <-s.results:
			s.finishProbe(r, s.clock.Now())
		case <-timerC:
			timer = nil
			now := s.clock.Now()
			for len(s.queue) > 0 && !s.queue[0].due.After(now) {
				s.fire(heap.Pop(&s.queue).(*target), now)
			}
		case out <- ev:
			s.out[0] = Event{}
			s.out = s.out[1:]
		}
	}
}

// phase is what a target waits for.
type phase int

const (
	waitRound phase = iota // the next round, at due
	waitRetry              // the retry of the current check, at due
	waitProbe              // the probe in flight; due is its timeout, then its hang limit
)

type target struct {
	Target
	key     string                 // probeKey of its definition
	members map[string]memberState // the IDs it probes for
	up      bool
	err     error // why it is down
	checks  []*check
	phase   phase
	due     time.Time
	index   int    // in the queue; -1 when not queued
	cur     int    // the check of the current round
	tries   int    // retries of the current check so far
	probe   *probe // the probe in flight, in waitProbe
	started bool   // its first round has ended
}

// memberState is what the consumer of Events last learnt, or was to assume, of a target ID.
type memberState struct {
	up    bool
	delta int
}

type check struct {
	Checker
	up     bool
	busy   bool // a probe of this check has not returned
	weight int  // the delta of the last passing probe of a WeightChecker
}

type probe struct {
	id       uint64
	t        *target
	c        *check
	cancel   context.CancelFunc
	timeout  time.Duration
	timedOut bool // cancelled at its timeout
	start    time.Time
}

type probeResult struct {
	id     uint64
	err    error
	weight int
}

func (s *Scheduler) reconcile(now time.Time) {
	s.mu.Lock()
	desired := s.desired
	s.mu.Unlock()

	// Targets that probe alike share one internal target.
	var keys []string
	groups := make(map[string][]Target)
	for _, d := range desired {
		k := probeKey(d)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], d)
	}
	known := make(map[string]memberState) // by ID, before this update
	owner := make(map[string]*target)
	for _, t := range s.targets {
		for id, st := range t.members {
			known[id], owner[id] = st, t
		}
	}

	next := make(map[string]*target, len(keys))
	taken := make(map[*target]bool, len(keys))
	for _, k := range keys {
		group := groups[k]
		t := s.targets[k]
		primary := group[0].ID
		if t != nil {
			primary = t.ID
		}
		if t == nil {
			// A target whose definition changed keeps its running state, unless the
			// target it had is still used by others.
			for _, d := range group {
				if o := owner[d.ID]; o != nil && groups[o.key] == nil && !taken[o] {
					t = o
					break
				}
			}
			if t != nil {
				primary = t.ID
				s.redefine(t, group[0], now)
			}
		}
		fresh := t == nil
		if fresh {
			up := group[0].InitiallyUp
			for _, d := range group {
				if st, ok := known[d.ID]; ok {
					up = st.up // an ID moving from a shared target: start from what it was
					break
				}
			}
			t = &target{Target: group[0], up: up, index: -1}
			for _, c := range group[0].Checkers {
				t.checks = append(t.checks, &check{Checker: c, up: up})
			}
		}
		// The first round's offset derives from the ID; keep it while that ID stays.
		t.Target = group[0]
		t.key = k
		members := make(map[string]memberState, len(group))
		for _, d := range group {
			if d.ID == primary {
				t.ID = primary
			}
			st, ok := t.members[d.ID] // redefine may just have told it
			if !ok {
				st, ok = known[d.ID]
			}
			if !ok {
				st = memberState{up: d.InitiallyUp}
			}
			members[d.ID] = st
		}
		t.members = members
		if t.index >= 0 {
			heap.Fix(&s.queue, t.index)
		}
		next[k], taken[t] = t, true
		s.evaluate(t, nil) // a target without checkers is up; a member may learn the state
		if fresh {
			s.schedule(t, now.Add(s.offset(t.ID, t.firstWithin())))
		}
	}
	for _, t := range s.targets {
		if next[t.key] == t {
			continue
		}
		if t.probe != nil {
			t.probe.cancel()
			t.probe = nil
		}
		if t.index >= 0 {
			heap.Remove(&s.queue, t.index)
		}
	}
	s.targets = next
}

// probeKey identifies what a target probes and when: targets with equal keys share probes.
func probeKey(d Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d %v %v %v %v", d.Interval, d.Retry, d.DelayBeforeRetry, d.InitiallyUp, d.Warmup, d.NotifyFirstDown)
	for _, c := range d.Checkers {
		b.WriteString("\x00")
		b.WriteString(checkKey(c))
	}
	return b.String()
}

// checkKey identifies a checker's probe: by its value, or, for a pointer, by the address unless
// the type says how (keyedChecker), so that distinct checkers are never merged.
func checkKey(c Checker) string {
	if k, ok := c.(keyedChecker); ok {
		return fmt.Sprintf("%T %s", c, k.probeKey())
	}
	if reflect.ValueOf(c).Kind() == reflect.Pointer {
		return fmt.Sprintf("%T %p", c, c)
	}
	return fmt.Sprintf("%T %#v", c, c)
}

// keyedChecker is a checker whose probeKey describes every option of its probe.
type keyedChecker interface {
	probeKey() string
}

// redefine applies a new definition d to a running target t.
func (s *Scheduler) redefine(t *target, d Target, now time.Time) {
	same := len(d.Checkers) == len(t.checks)
	for i := 0; same && i < len(d.Checkers); i++ {
		same = d.Checkers[i].String() == t.checks[i].String()
	}
	id := t.ID // the caller decides which ID the target goes by
	t.Target = d
	t.ID = id
	if same {
		for i, c := range d.Checkers {
			t.checks[i].Checker = c
		}
		return
	}

	old := t.checks
	t.checks = nil
	for _, c := range d.Checkers {
		i := slices.IndexFunc(old, func(o *check) bool { return o != nil && o.String() == c.String() })
		if i < 0 {
			t.checks = append(t.checks, &check{Checker: c, up: t.up})
			continue
		}
		old[i].Checker = c
		t.checks = append(t.checks, old[i])
		old[i] = nil
	}
	if t.phase != waitRound {
		if t.probe != nil {
			t.probe.cancel()
			t.probe = nil
		}
		t.phase = waitRound
		s.schedule(t, now.Add(s.offset(t.ID, t.Interval)))
	}
	s.evaluate(t, nil) // dropping a failed check may bring the target up
}

// fire handles a target whose due time has come.
func (s *Scheduler) fire(t *target, now time.Time) {
	switch t.phase {
	case waitRound:
		t.cur, t.tries = 0, 0
		s.startProbe(t, now)
	case waitRetry:
		s.startProbe(t, now)
	case waitProbe:
		p := t.probe
		if !p.timedOut {
			p.timedOut = true
			p.cancel()
			s.schedule(t, now.Add(hangGrace))
			return
		}
		s.log.Warn("health check hung; abandoning it", "target", t.ID, "check", p.c.String(), "timeout", p.timeout)
		t.probe = nil // p stays in s.probes, and p.c busy, until its goroutine returns
		s.checkDone(t, p.c, fmt.Errorf("%w (%v)", ErrCheckHung, p.timeout), now)
	}
}

// startProbe probes the current check of t's round, or ends the round.
func (s *Scheduler) startProbe(t *target, now time.Time) {
	if t.cur >= len(t.checks) {
		s.roundDone(t)
		t.phase = waitRound
		s.schedule(t, now.Add(t.Interval))
		return
	}
	c := t.checks[t.cur]
	if c.busy {
		s.checkDone(t, c, fmt.Errorf("%w: the previous probe is still running", ErrCheckHung), now)
		return
	}
	timeout := DefaultTimeout
	if tc, ok := c.Checker.(TimeoutChecker); ok && tc.CheckTimeout() > 0 {
		timeout = tc.CheckTimeout()
	}
	// The context has a deadline of its own for checkers that read it (net.Dialer does); the
	// Scheduler also cancels it on its clock.
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	s.probeSeq++
	p := &probe{id: s.probeSeq, t: t, c: c, cancel: cancel, timeout: timeout, start: now}
	s.probes[p.id] = p
	c.busy = true
	t.probe = p
	t.phase = waitProbe
	s.schedule(t, now.Add(timeout))
	go func(ch Checker) {
		var r probeResult
		if wc, ok := ch.(WeightChecker); ok {
			r.weight, r.err = wc.CheckWeight(ctx)
		} else {
			r.err = ch.Check(ctx)
		}
		r.id = p.id
		select {
		case s.results <- r:
		case <-s.ctx.Done():
		}
	}(c.Checker)
}

func (s *Scheduler) finishProbe(r probeResult, now time.Time) {
	p := s.probes[r.id]
	delete(s.probes, r.id)
	p.cancel()
	p.c.busy = false
	t := p.t
	if t.probe != p {
		return // abandoned, or its target was removed or redefined
	}
	t.probe = nil
	err := r.err
	if p.timedOut {
		if err == nil {
			err = context.DeadlineExceeded
		}
		err = fmt.Errorf("timed out after %v: %w", p.timeout, err)
	}
	if err == nil {
		p.c.weight = r.weight
	}
	if s.observe != nil {
		ids := slices.Sorted(maps.Keys(t.members))
		s.observe(Probe{IDs: ids, Check: p.c.String(), Latency: now.Sub(p.start), Err: err})
	}
	s.checkDone(t, p.c, err, now)
}

// checkDone applies the outcome of one probe of c, the current check of t, and moves on.
func (s *Scheduler) checkDone(t *target, c *check, err error, now time.Time) {
	if err != nil && c.up && t.tries < t.Retry {
		t.tries++
		s.log.Debug("health check failed; retrying", "target", t.ID, "check", c.String(), "retry", t.tries, "err", err)
		t.phase = waitRetry
		s.schedule(t, now.Add(t.DelayBeforeRetry))
		return
	}
	if up := err == nil; up != c.up {
		c.up = up
		if up {
			s.log.Info("health check passed", "target", t.ID, "check", c.String())
		} else {
			s.log.Info("health check failed", "target", t.ID, "check", c.String(), "retries", t.tries, "err", err)
		}
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", c, err)
	}
	s.evaluate(t, err)
	t.cur++
	t.tries = 0
	s.startProbe(t, now)
}

// evaluate recomputes t's state from its checks and queues an Event for each of its IDs whose
// state changed.
func (s *Scheduler) evaluate(t *target, err error) {
	up := true
	for _, c := range t.checks {
		up = up && c.up
	}
	if up != t.up {
		t.up = up
		t.err = err
		if t.err == nil {
			t.err = errors.New("a check is down")
		}
	} else if !up && err != nil {
		t.err = err // the latest failure, for a FirstDown Event
	}
	s.notify(t, false)
}

// roundDone sends an Event for a change of an up target's weight delta. Weight changes wait
// for the end of a round, so that one round's probes make one Event. At the end of the first
// round it sends the FirstDown Events.
func (s *Scheduler) roundDone(t *target) {
	s.notify(t, true)
	if t.started {
		return
	}
	t.started = true
	if t.up || !t.NotifyFirstDown || t.InitiallyUp {
		return
	}
	ids := slices.Sorted(maps.Keys(t.members))
	for _, id := range ids {
		if t.members[id].up {
			continue
		}
		err := t.err
		if err == nil {
			err = errors.New("a check is down")
		}
		s.out = append(s.out, Event{ID: id, Up: false, Err: err, FirstDown: true})
	}
}

// notify queues an Event for each ID of t whose consumer's view differs from t's state: in up,
// or also in weight delta when withWeight.
func (s *Scheduler) notify(t *target, withWeight bool) {
	delta := 0
	for _, c := range t.checks {
		delta += c.weight
	}
	ids := slices.Collect(maps.Keys(t.members))
	if len(ids) > 1 {
		slices.Sort(ids) // the same order every time
	}
	for _, id := range ids {
		st := t.members[id]
		if st.up == t.up && (!withWeight || !t.up || st.delta == delta) {
			continue
		}
		t.members[id] = memberState{up: t.up, delta: delta}
		ev := Event{ID: id, Up: t.up, WeightDelta: delta}
		if !t.up {
			ev.Err = t.err
		}
		s.out = append(s.out, ev)
	}
}

func (s *Scheduler) schedule(t *target, due time.Time) {
	t.due = due
	if t.index >= 0 {
		heap.Fix(&s.queue, t.index)
	} else {
		heap.Push(&s.queue, t)
	}
}

// firstWithin is the span within which a new target's first round starts: Warmup if set,
// else Interval.
func (t *target) firstWithin() time.Duration {
	if t.Warmup > 0 {
		return t.Warmup
	}
	return t.Interval
}

// offset returns when, within interval, the first round of target id starts.
func (s *Scheduler) offset(id string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	var seed [8]byte
	for i := range seed {
		seed[i] = byte(s.seed >> (8 * i))
	}
	h.Write(seed[:])
	h.Write([]byte(id))
	return time.Duration(h.Sum64() % uint64(interval))
}

// dueQueue is a heap of targets by due time, then ID so that ties resolve the same every time.
type dueQueue []*target

func (q dueQueue) Len() int { return len(q) }
func (q dueQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].ID < q[j].ID
}
func (q dueQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *dueQueue) Push(x any) {
	t := x.(*target)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *dueQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*q = old[:len(old)-1]
	return t
}
