package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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

	mu        sync.Mutex
	lastStart time.Time
	lastEnd   time.Time
	lags      []time.Duration
}

func (l *lagCheck) Check(ctx context.Context) error {
	start := time.Now()
	l.mu.Lock()
	l.lastStart = start
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

// CheckTimeout passes the wrapped checker's timeout on, so the Scheduler times the probe out
// as it would the bare checker.
func (l *lagCheck) CheckTimeout() time.Duration {
	if tc, ok := l.Checker.(TimeoutChecker); ok {
		return tc.CheckTimeout()
	}
	return 0
}

// benchSizes are the numbers of targets each benchmark checks every second.
var benchSizes = []int{1000, 3000, 10000}

// BenchmarkSchedulerTCP checks many targets every second with TCP_CHECK against loopback
// listeners; each iteration is one second of checking. It reports the process's CPU time per
// second (checker and listeners together), the 99th percentile of how late rounds start
// (rounds still waiting when the measurement ends count with how late they are by then),
// rounds started a second (n when the machine keeps up), rounds overdue at the end, and
// targets that went down although every server is up (probes timed out for want of CPU).
// The servers run in a process of their own and report their CPU time apart
// (server-cpu-ms/s). A probe costs the checking process 0.12 to 0.2 ms of CPU, so 10,000
// targets a second need more than one idle core: on a smaller or busier machine probes
// start late for want of CPU, not of the Scheduler (BenchmarkSchedulerNoop measures the
// Scheduler alone). docs/health.md has the measured numbers.
func BenchmarkSchedulerTCP(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) { benchScheduler(b, n, benchTCP) })
	}
}

// BenchmarkSchedulerHTTP checks many targets every second with HTTP_GET against net/http
// servers on loopback: each check requests /health and accepts status_code 200, and every
// second target also checks the body's digest. Metrics as in BenchmarkSchedulerTCP.
func BenchmarkSchedulerHTTP(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) { benchScheduler(b, n, benchHTTP) })
	}
}

// BenchmarkSchedulerNoop runs 10,000 targets whose checks pass at once: the Scheduler's own
// CPU time and lag.
func BenchmarkSchedulerNoop(b *testing.B) {
	b.Run("targets=10000", func(b *testing.B) { benchScheduler(b, 10000, benchNoop) })
}

type passCheck struct{}

func (passCheck) Check(context.Context) error { return nil }
func (passCheck) String() string              { return "PASS" }

// benchKind is what a benchmark's targets are checked with.
type benchKind int

const (
	benchNoop benchKind = iota
	benchTCP
	benchHTTP
)

// benchListeners is how many loopback addresses the listeners are spread over: every probe
// leaves a socket in TIME_WAIT for a minute, and a single address pair has only some 28,000
// ephemeral ports (ip_local_port_range) for them.
const benchListeners = 64

// benchBody is what the benchmark's HTTP servers answer on /health.
const benchBody = "<html><body>sluice health check benchmark: OK</body></html>\n"

// benchAddr returns the i-th loopback address of the benchmark, 127.1.0.1 onwards; all of
// 127.0.0.0/8 is local on Linux.
func benchAddr(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, i%250+1) }

// benchRaiseNoFile makes sure the process may hold need file descriptors, raising
// RLIMIT_NOFILE (and its hard limit, which needs CAP_SYS_RESOURCE) if not; the old limit comes
// back when the benchmark ends.
func benchRaiseNoFile(b *testing.B, need uint64) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		b.Fatalf("get RLIMIT_NOFILE: %v", err)
	}
	if old.Cur >= need {
		return
	}
	lim := syscall.Rlimit{Cur: need, Max: max(old.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raise RLIMIT_NOFILE from %d (hard %d) to %d: %v (run as root or raise ulimit -n)", old.Cur, old.Max, need, err)
	}
	b.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// benchServeEnv names, in the environment of the benchmark's server process, what it serves:
// "tcp" or "http".
const benchServeEnv = "SLUICE_HEALTH_BENCH_SERVE"

// TestBenchServer is the benchmarks' server process, which benchServe starts from the test
// binary: it listens, prints its addresses, then serves until its standard input closes. Run
// any other way it skips.
func TestBenchServer(t *testing.T) {
	kind := os.Getenv(benchServeEnv)
	if kind == "" {
		t.Skip("the health benchmarks' server process; runs only when a benchmark starts it")
	}
	addrs, stop, err := benchListen(kind)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, a := range addrs {
		fmt.Println(a)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

// benchListen starts benchListeners TCP listeners (kind "tcp": accept and close) or HTTP
// servers ("http") and returns their addresses and a function stopping them.
func benchListen(kind string) ([]netip.AddrPort, func(), error) {
	var addrs []netip.AddrPort
	var stops []func()
	stop := func() {
		for _, f := range stops {
			f()
		}
	}
	for i := range benchListeners {
		ln, err := net.Listen("tcp", benchAddr(i)+":0")
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("listen: %w", err)
		}
		addrs = append(addrs, ln.Addr().(*net.TCPAddr).AddrPort())
		if kind == "http" {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				io.WriteString(w, benchBody)
			})
			srv := &http.Server{
				Handler:           mux,
				ReadHeaderTimeout: 5 * time.Second,
				WriteTimeout:      5 * time.Second,
				ErrorLog:          log.New(io.Discard, "", 0),
			}
			srv.SetKeepAlivesEnabled(false)
			go srv.Serve(ln)
			stops = append(stops, func() { srv.Close() })
			continue
		}
		stops = append(stops, func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err != nil { // EMFILE: back off as net/http does, bounded by the listener's close
					time.Sleep(5 * time.Millisecond)
					continue
				}
				c.Close()
			}
		}()
	}
	return addrs, stop, nil
}

// benchServer is the benchmark's server process.
type benchServer struct {
	addrs []netip.AddrPort
	pid   int
}

// benchServe starts the servers in a process of their own (the test binary running
// TestBenchServer), so that the benchmark's CPU time is the checker's alone and each side
// has its own file descriptor limit. The process ends with b.
func benchServe(b *testing.B, kind string) benchServer {
	exe, err := os.Executable()
	if err != nil {
		b.Fatalf("find the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestBenchServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchServeEnv+"="+kind)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the server process: %v", err)
	}
	b.Cleanup(func() {
		stdin.Close()
		t := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		cmd.Wait()
		t.Stop()
	})
	type result struct {
		addrs []netip.AddrPort
		err   error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && len(r.addrs) <= benchListeners {
			if sc.Text() == "ready" {
				got <- r
				io.Copy(io.Discard, stdout)
				return
			}
			a, err := netip.ParseAddrPort(sc.Text())
			if err != nil {
				r.err = fmt.Errorf("server process printed %q", sc.Text())
				break
			}
			r.addrs = append(r.addrs, a)
		}
		if r.err == nil {
			r.err = fmt.Errorf("server process did not get ready: %v", sc.Err())
		}
		got <- r
	}()
	select {
	case r := <-got:
		if r.err != nil {
			b.Fatal(r.err)
		}
		return benchServer{addrs: r.addrs, pid: cmd.Process.Pid}
	case <-time.After(30 * time.Second):
		b.Fatal("server process did not get ready within 30 s")
	}
	return benchServer{}
}

// cpu returns the CPU time the server process has used, from /proc (in clock ticks of 10 ms,
// USER_HZ on Linux).
func (s benchServer) cpu(b *testing.B) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		b.Fatalf("read the server process's CPU time: %v", err)
	}
	// The fields after the command name, which is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("parse /proc/%d/stat: %d fields", s.pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("parse /proc/%d/stat: %v", s.pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func benchScheduler(b *testing.B, n int, kind benchKind) {
	// Checked every second, with keepalived's default connect_timeout: a probe that the machine
	// is too busy to finish at once makes its next round late rather than failing.
	const interval, timeout = time.Second, DefaultTimeout
	var srv benchServer
	switch kind {
	case benchTCP:
		srv = benchServe(b, "tcp")
	case benchHTTP:
		srv = benchServe(b, "http")
	}
	addrs := srv.addrs
	if kind != benchNoop {
		// Every target's probe may be open at once, plus headroom for the runtime. The server
		// process has the same limit and the same needs.
		benchRaiseNoFile(b, uint64(n+1024))
	}
	sum := md5.Sum([]byte(benchBody))
	digest := hex.EncodeToString(sum[:])
	checks := make([]*lagCheck, n)
	targets := make([]Target, n)
	for i := range n {
		var c Checker = passCheck{}
		switch kind {
		case benchTCP:
			c = TCPCheck{Addr: addrs[i%len(addrs)], Timeout: timeout}
		case benchHTTP:
			u := URL{Path: "/health", StatusCodes: []StatusRange{{200, 200}}}
			if i%2 == 1 {
				u.Digest = digest
			}
			hc, err := NewHTTPCheck(HTTPOptions{Addr: addrs[i%len(addrs)], Timeout: timeout, URLs: []URL{u}})
			if err != nil {
				b.Fatal(err)
			}
			c = hc
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
	defer func() { cancel(); <-done }()

	// Wait for every target's first probe to end (within Interval, when the machine keeps up),
	// then count only the rounds of the measured seconds.
	const warmup = 10 * interval
	for deadline := time.Now().Add(warmup); ; time.Sleep(interval / 10) {
		ended := 0
		for _, c := range checks {
			c.mu.Lock()
			if !c.lastEnd.IsZero() {
				ended++
			}
			c.mu.Unlock()
		}
		if ended == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d targets probed once within %v: this machine cannot keep up", ended, n, warmup)
		}
	}
	for _, c := range checks {
		c.mu.Lock()
		c.lags = c.lags[:0]
		c.mu.Unlock()
	}
	var before, after syscall.Rusage
	var srvBefore, srvAfter time.Duration
	if srv.pid != 0 {
		srvBefore = srv.cpu(b)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for range b.N {
		time.Sleep(interval)
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if srv.pid != 0 {
		srvAfter = srv.cpu(b)
	}
	stop := time.Now()
	cancel()
	<-done
	close(events)

	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
	var lags []time.Duration
	rounds, overdue := 0, 0
	for _, c := range checks {
		c.mu.Lock()
		lags = append(lags, c.lags...)
		rounds += len(c.lags)
		// A round that was due but had not started when the measurement stopped is late by
		// at least this much: without it a starved machine would show only its lucky rounds.
		if due := c.lastEnd.Add(interval); !c.lastEnd.Before(c.lastStart) && due.Before(stop) {
			lags = append(lags, stop.Sub(due))
			overdue++
		}
		c.mu.Unlock()
	}
	slices.Sort(lags)
	down := 0
	var example any
	downs.Range(func(_, v any) bool { down++; example = v; return true })
	if down > 0 {
		// Every server is up: a target marked down is a probe that timed out, and a benchmark
		// reports that as a result (the "down" metric) rather than failing. On a machine with
		// the CPU for n probes a second it stays 0.
		b.Logf("%d s of checking: %d of %d targets went down, e.g.: %v", b.N, down, n, example)
	}
	if len(lags) == 0 {
		b.Fatalf("no round of %d targets started or fell due in %d s", n, b.N)
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/s")
	if srv.pid != 0 {
		b.ReportMetric(float64((srvAfter-srvBefore).Milliseconds())/float64(b.N), "server-cpu-ms/s")
	}
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
	b.ReportMetric(float64(rounds)/float64(b.N), "rounds/s")
	b.ReportMetric(float64(overdue), "overdue")
	b.ReportMetric(float64(down), "down")
}
