package director

import (
	"context"
	"sync"
)

// recorder is a Dataplane that records every snapshot it is given. The director's contract is
// with the interface, so the unit tests need no kernel; the loader's own tests and the e2e tests
// exercise the real data plane.
type recorder struct {
	mu      sync.Mutex
	applied []Snapshot
	fail    error
	closed  bool
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Apply(_ context.Context, s Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.applied = append(r.applied, s)
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recorder) last() (Snapshot, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return Snapshot{}, 0
	}
	return r.applied[len(r.applied)-1], len(r.applied)
}
