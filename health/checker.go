// Package health runs keepalived's real-server health checks and reports transitions.
//
// A Checker performs one probe. The Scheduler runs each Target's checkers every delay_loop,
// applies keepalived's retry rules, and emits an Event only when a target's state changes.
package health

import (
	"context"
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
