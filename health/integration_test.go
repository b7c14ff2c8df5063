package health

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestSchedulerHTTPShared runs the Scheduler on the real clock with two targets (one real
// server in two virtual servers) whose HTTP_GET checks are built separately but alike: the
// server must see one request per round, as many as for a third, lone target, and both
// targets must follow its state.
func TestSchedulerHTTPShared(t *testing.T) {
	var healthy atomic.Bool
	var shared, lone atomic.Int64
	healthy.Store(true)
	srv := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/lone" {
			lone.Add(1)
			w.Write([]byte("ok"))
			return
		}
		shared.Add(1)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}, nil)
	check := func() Checker {
		return mustHTTPCheck(t, HTTPOptions{Addr: srv.addr, Timeout: time.Second, URLs: []URL{{Path: "/", Digest: md5hex("ok")}}})
	}
	const interval = 50 * time.Millisecond
	events := make(chan Event, 16)
	s := NewScheduler(events, WithLogger(slog.New(slog.DiscardHandler)))
	if err := s.Update([]Target{
		{ID: "vs1/rs", Interval: interval, Checkers: []Checker{check()}, InitiallyUp: true},
		{ID: "vs2/rs", Interval: interval, Checkers: []Checker{check()}, InitiallyUp: true},
		{ID: "lone", Interval: interval, Checkers: []Checker{mustHTTPCheck(t, HTTPOptions{Addr: srv.addr, Timeout: time.Second, URLs: []URL{{Path: "/lone"}}})}, InitiallyUp: true},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	time.Sleep(10 * interval)
	// Two unshared targets would make twice as many requests as the lone one.
	if n, l := shared.Load(), lone.Load(); l < 3 || n > l+2 {
		t.Errorf("%d requests for the two shared targets, %d for the lone one; want about as many", n, l)
	}
	expect := func(up bool) {
		t.Helper()
		got := map[string]bool{}
		timeout := time.After(5 * time.Second)
		for len(got) < 2 {
			select {
			case ev := <-events:
				if ev.ID == "lone" || ev.Up != up {
					t.Fatalf("event %+v, want Up %v", ev, up)
				}
				got[ev.ID] = true
			case <-timeout:
				t.Fatalf("only %v went up=%v", got, up)
			}
		}
	}
	healthy.Store(false)
	expect(false)
	healthy.Store(true)
	expect(true)
}
