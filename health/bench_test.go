package health

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lagCheck wraps a Checker and records how late each probe starts: a round should start
// Interval after the previous one ended.
type lagCheck struct {
	Checker
	interval time.Duration

	mu      sync.Mutex
	lastEnd time.Time
	lags    []time.Duration
}

func (l *lagCheck) Check(ctx context.Context) error {
	start := time.Now()
	l.mu.Lock()
	if !l.lastEnd.IsZero() {
		l.lags = append(l.lags, start.Sub(l.lastEnd.Add(l.interval)))
	}
	l.mu.Unlock()
	err := l.Checker.Check(ctx)
	l.mu.Lock()
	l.lastEnd = time.Now()
	l.mu.Unlock()
	return err
}

// BenchmarkSchedulerTCP checks many targets every second with TCP_CHECK against loopback
// listeners; each iteration is one second of checking. It reports the process's CPU time per
// second (checker and listeners together) and the 99th percentile of how late rounds start.
// A probe costs 0.13 to 0.2 ms of CPU, both ends of the connection counted, so 10,000
// targets a second need one and a half idle cores: more than the shared test machine had
// (probes then start late for want of CPU, not of the Scheduler), hence at most 3,000 here
// and 10,000 in BenchmarkSchedulerNoop, which measures the Scheduler alone.
func BenchmarkSchedulerTCP(b *testing.B) {
	for _, n := range []int{1000, 3000} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) { benchScheduler(b, n, true) })
	}
}

// BenchmarkSchedulerNoop runs 10,000 targets whose checks pass at once: the Scheduler's own
// CPU time and lag.
func BenchmarkSchedulerNoop(b *testing.B) {
	b.Run("targets=10000", func(b *testing.B) { benchScheduler(b, 10000, false) })
}

type passCheck struct{}

func (passCheck) Check(context.Context) error { return nil }
func (passCheck) String() string              { return "PASS" }

func benchScheduler(b *testing.B, n int, tcp bool) {
	// Several listeners on several loopback addresses, so that the probes' TIME_WAIT sockets
	// spread over many address pairs.
	var addrs []netip.AddrPort
	for i := range 16 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i+1))
		if err != nil {
			b.Fatalf("listen: %v", err)
		}
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	const interval = time.Second
	checks := make([]*lagCheck, n)
	targets := make([]Target, n)
	for i := range n {
		var c Checker = passCheck{}
		if tcp {
			c = TCPCheck{Addr: addrs[i%len(addrs)], Timeout: interval}
		}
		checks[i] = &lagCheck{Checker: c, interval: interval}
		targets[i] = Target{ID: fmt.Sprintf("rs%d", i), Interval: interval, Checkers: []Checker{checks[i]}, InitiallyUp: true}
	}
	events := make(chan Event, n)
	var downs sync.Map
	go func() {
		for ev := range events {
			if !ev.Up {
				downs.Store(ev.ID, ev.Err)
			}
		}
	}()
	s := NewScheduler(events, WithLogger(slog.New(slog.DiscardHandler)))
	if err := s.Update(targets); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	time.Sleep(interval) // every target has started its first round

	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for range b.N {
		time.Sleep(interval)
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cancel()
	<-done
	close(events)

	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
	var lags []time.Duration
	for _, c := range checks {
		c.mu.Lock()
		lags = append(lags, c.lags...)
		c.mu.Unlock()
	}
	slices.Sort(lags)
	down := 0
	var example any
	downs.Range(func(_, v any) bool { down++; example = v; return true })
	if down > 0 {
		b.Errorf("%d targets went down, e.g.: %v", down, example)
	}
	if len(lags) == 0 {
		ended := 0
		for _, c := range checks {
			c.mu.Lock()
			if !c.lastEnd.IsZero() {
				ended++
			}
			c.mu.Unlock()
		}
		b.Fatalf("no round was probed twice (%d of %d probed once)", ended, n)
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/s")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
	b.ReportMetric(float64(len(lags))/float64(b.N), "rounds/s")
}
