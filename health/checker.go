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
}

// Event reports that a target changed state.
type Event struct {
	ID  string
	Up  bool
	Err error // the last failure when Up is false
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
