// Package health runs keepalived's real-server health checks and reports transitions.
//
// A Checker performs one probe. The Scheduler runs each Target's checkers every delay_loop,
// applies keepalived's retry rules, and emits an Event only when a target's state changes.
package health

import (
	"context"
	"errors"
	"time"
)

// Checker performs one health probe; a nil error means the check passed.
type Checker interface {
	Check(ctx context.Context) error
	// String describes the check for logs, e.g. "TCP_CHECK 10.0.0.2:80".
	String() string
}

// Target is one real server as seen by the health checker.
type Target struct {
	// ID identifies the target in Events; the director chooses it.
	ID string
	// Checkers must all pass for the target to be up. A target with no checkers is always up.
	Checkers []Checker
	// Interval is delay_loop: the time between rounds of checks.
	Interval time.Duration
	// Retry is the number of retries of a failed check before the target goes down.
	Retry int
	// DelayBeforeRetry is the pause before each retry.
	DelayBeforeRetry time.Duration
	// InitiallyUp is the state assumed before the first check (keepalived: up unless alpha).
	InitiallyUp bool
	// Warmup is warmup: the first round starts at an offset within it rather than within
	// Interval (zero: within Interval).
	Warmup time.Duration
	// NotifyFirstDown asks for an Event with FirstDown set when the first round of a target
	// that starts down (alpha) finds it down, for keepalived's notify_down on an alpha
	// server's first failure. Without it no Event confirms the initial state.
	NotifyFirstDown bool
}

// Event reports that a target changed state: it went up or down, or, while up, its weight
// delta changed.
type Event struct {
	ID  string
	Up  bool
	Err error // the last failure when Up is false
	// WeightDelta is to be added to the target's configured weight: the sum of what its
	// WeightCheckers reported in their last passing probes (keepalived's misc_dynamic and
	// FILE_CHECK). It is zero for a target without WeightCheckers, so a consumer that ignores
	// it keeps the configured weight. The consumer clamps the sum to its valid range.
	WeightDelta int
	// FirstDown marks the Event of a NotifyFirstDown target whose first round failed: it
	// was down and stays down, so the consumer runs notify_down without a change of state.
	FirstDown bool
}

// WeightChecker is a Checker whose passing probes also report a weight delta for the target,
// as keepalived's dynamic checkers do. The Scheduler calls CheckWeight instead of Check.
type WeightChecker interface {
	Checker
	// CheckWeight performs one probe; when err is nil, delta is the checker's contribution
	// to the target's WeightDelta until its next probe.
	CheckWeight(ctx context.Context) (delta int, err error)
}

// DefaultTimeout bounds a check whose Checker does not say how long it may take; it is
// keepalived's default connect_timeout.
const DefaultTimeout = 5 * time.Second

// TimeoutChecker is a Checker that knows how long one probe may take. The Scheduler gives each
// probe a context with that deadline, DefaultTimeout for Checkers that do not implement it.
type TimeoutChecker interface {
	Checker
	CheckTimeout() time.Duration
}

// ErrCheckHung is reported for a probe that did not return within its timeout plus a grace
// period, although its context was cancelled. The Scheduler counts it as a failure and does
// not start that checker again until the abandoned probe returns.
var ErrCheckHung = errors.New("check did not return after its timeout")
