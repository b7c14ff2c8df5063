package vrrp

import "time"

// Clock is an Instance's time source; tests inject a fake one so they need not sleep.
type Clock interface {
	Now() time.Time
	// NewTimer returns a Timer that sends the time on its channel once d has elapsed.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer an Instance uses.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the Timer from firing; it reports whether the Timer was still pending.
	Stop() bool
}

type systemClock struct{}

func (systemClock) Now() time.Time                 { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }
