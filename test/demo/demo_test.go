package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestDemo runs the demo as `make demo` does, with short phases and plain output, against a
// freshly built sluice, and checks what it promises: exit status 0; answered requests in every
// phase; director2 MASTER after director1 was killed; no answer from rs2 while it is stopped;
// rs3's share up after its weight went to 3; and nothing left behind: no namespace, no sluice
// process, no control socket.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("demo: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: creates network namespaces and runs sluice")
	}
	bin, _ := binaries(t)

	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-sluice", bin, "-quick", "-plain"}, &stdout, &stderr)
	out := stdout.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s\nstderr:\n%s", out, stderr.String())
		}
	})
	if code != 0 {
		t.Fatalf("demo exited with status %d: %s", code, stderr.String())
	}

	phases := parseSummary(t, out)
	want := []string{"steady", "kill-master", "restart", "rs2-down", "rs2-up", "reload"}
	if len(phases) != len(want) {
		t.Fatalf("summary lists %d phases, want %d: %+v", len(phases), len(want), phases)
	}
	for i, p := range phases {
		if p.name != want[i] {
			t.Errorf("phase %d is %q, want %q", i+1, p.name, want[i])
		}
		if p.answered == 0 {
			t.Errorf("phase %s: no request answered (sent %d, failed %d)", p.name, p.sent, p.failed)
		}
		if p.sent != p.answered+p.failed {
			t.Errorf("phase %s: sent %d != answered %d + failed %d", p.name, p.sent, p.answered, p.failed)
		}
		if !p.ok {
			t.Errorf("phase %s: not ok: %s", p.name, p.outcome)
		}
	}
	for _, event := range []string{
		"director1: sluice killed with SIGKILL",
		"director2: VRRP MASTER",
		"client: ARP entry for the VIP now points at director2",
		"director1: rs2 failed its check: out of rotation",
		"weight 1 -> 3",
	} {
		if !strings.Contains(out, event) {
			t.Errorf("the demo never printed %q", event)
		}
	}
	if p := phases[1]; !strings.Contains(p.outcome, "director2 MASTER") {
		t.Errorf("kill-master outcome %q: want director2 MASTER", p.outcome)
	}
	if p := phases[3]; p.byServer["rs2"] != 0 {
		t.Errorf("rs2 answered %d requests while its HTTP server was stopped", p.byServer["rs2"])
	}
	// Weights 1:1:3 give rs3 60% of new connections, 1:1:1 a third.
	if before, after := shareOf(phases[0], "rs3"), shareOf(phases[5], "rs3"); after < 0.45 || before > 0.45 {
		t.Errorf("rs3's share: %.0f%% before the reload, %.0f%% after; want about 33%% and 60%%", 100*before, 100*after)
	}

	if !strings.Contains(out, "-*: 0 left after the teardown") {
		t.Error("the summary does not say that no namespace was left")
	}
	checkNothingLeft(t, out, bin)
}

// TestDemoInterrupted stops the demo with SIGTERM, as Ctrl-C would with SIGINT, right after
// it killed director1 (whose socket and VIP are then left behind), and checks that it exits
// with status 130 and removes everything it made.
func TestDemoInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("demo: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: creates network namespaces and runs sluice")
	}
	bin, demo := binaries(t)

	var stdout, stderr bytes.Buffer
	killed := make(chan struct{})
	cmd := exec.Command(demo, "-sluice", bin, "-quick")
	cmd.Stdout = &watchWriter{w: &stdout, word: "sluice killed with SIGKILL", seen: killed}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-killed:
	case err := <-exited:
		t.Fatalf("demo exited before killing director1: %v\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("demo did not kill director1 within 60 s\n%s", stdout.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("demo did not exit within 30 s of SIGTERM\n%s", stdout.String())
	}
	out := stdout.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s\nstderr:\n%s", out, stderr.String())
		}
	})
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("demo exited with %v after SIGTERM, want status 130", err)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say the demo was interrupted: %q", stderr.String())
	}
	checkNothingLeft(t, out, bin)
}

// watchWriter writes to w and closes seen the first time word has been written (in one Write).
type watchWriter struct {
	mu   sync.Mutex
	w    *bytes.Buffer
	word string
	seen chan struct{}
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && bytes.Contains(p, []byte(w.word)) {
		w.done = true
		close(w.seen)
	}
	return w.w.Write(p)
}

// built holds the sluice and demo binaries TestMain builds when the privileged tests will run.
var built struct {
	sluice, demo string
	err          error
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 && !testing.Short() {
		dir, err := os.MkdirTemp("", "sluice-demo-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// One go build for both: they share most packages.
		out, err := exec.Command("go", "build", "-o", dir+"/",
			"github.com/sluice-lb/sluice/cmd/sluice", "github.com/sluice-lb/sluice/test/demo").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("build sluice and the demo: %w\n%s", err, out)
		}
		built.sluice, built.demo = filepath.Join(dir, "sluice"), filepath.Join(dir, "demo")
	}
	return m.Run()
}

// binaries returns the sluice and demo binaries, or fails the test if they could not be built.
func binaries(t *testing.T) (sluice, demo string) {
	t.Helper()
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.sluice, built.demo
}

// checkNothingLeft checks that the demo whose output is out left no namespace, control socket or
// process of bin behind.
func checkNothingLeft(t *testing.T, out, bin string) {
	t.Helper()
	m := regexp.MustCompile(`network namespaces (sluice-[0-9a-f]+)-\*`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("the demo did not print its namespaces' prefix")
	}
	prefix := m[1]
	if left, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"-*")); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if m := regexp.MustCompile(`configs: (\S+) \(`).FindStringSubmatch(out); m == nil {
		t.Error("the demo did not print where it wrote the configs")
	} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("config directory %s left behind (stat: %v)", m[1], err)
	}
	for _, dir := range []string{"director1", "director2"} {
		if _, err := os.Stat(control.SocketPath(prefix + "-" + dir)); !os.IsNotExist(err) {
			t.Errorf("control socket of %s left behind (stat: %v)", dir, err)
		}
	}
	if pids := running(t, bin); len(pids) > 0 {
		t.Errorf("sluice processes left running: %v", pids)
	}
}

// phaseLine is one phase of the demo's printed summary.
type phaseLine struct {
	name                   string
	sent, answered, failed int
	byServer               map[string]int
	ok                     bool
	outcome                string
}

func shareOf(p phaseLine, server string) float64 {
	if p.answered == 0 {
		return 0
	}
	return float64(p.byServer[server]) / float64(p.answered)
}

// summaryRow matches a phase's counts: "  1  steady  3.0s  119  119  0  40  34% ..."; the next
// line says "ok" or "FAIL" and the outcome.
var (
	summaryRow     = regexp.MustCompile(`^\s+(\d+)\s+(\S+)\s+[\d.]+s\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+\d+%)?\s+(\d+)(?:\s+\d+%)?\s+(\d+)(?:\s+\d+%)?\s*$`)
	summaryOutcome = regexp.MustCompile(`^\s+(ok|FAIL)\s+(.*)$`)
)

func parseSummary(t *testing.T, out string) []phaseLine {
	t.Helper()
	_, after, found := strings.Cut(out, "\nSummary:")
	if !found {
		t.Fatal("no summary in the demo's output")
	}
	var phases []phaseLine
	for _, line := range strings.Split(after, "\n") {
		if m := summaryRow.FindStringSubmatch(line); m != nil {
			n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
			phases = append(phases, phaseLine{
				name: m[2], sent: n(3), answered: n(4), failed: n(5),
				byServer: map[string]int{"rs1": n(6), "rs2": n(7), "rs3": n(8)},
			})
			continue
		}
		if m := summaryOutcome.FindStringSubmatch(line); m != nil && len(phases) > 0 {
			p := &phases[len(phases)-1]
			p.ok, p.outcome = m[1] == "ok", m[2]
		}
	}
	return phases
}

// running returns the pids of processes running the executable bin.
func running(t *testing.T, bin string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestUsage checks the flags the demo refuses before it touches anything.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no binary", nil},
		{"stray argument", []string{"-sluice", "bin/sluice", "extra"}},
		{"rate zero", []string{"-sluice", "bin/sluice", "-rate", "0"}},
		{"rate too high", []string{"-sluice", "bin/sluice", "-rate", "1000"}},
		{"unknown flag", []string{"-sluice", "bin/sluice", "-nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := realMain(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), "usage: demo") {
				t.Errorf("stderr does not show the usage:\n%s", stderr.String())
			}
		})
	}
}

// TestWrap checks the view's word wrapping.
func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		text  string
		width int
		want  []string
	}{
		{"empty", "", 10, []string{""}},
		{"fits", "a b c", 10, []string{"a b c"}},
		{"two lines", "aaaa bbbb cccc", 9, []string{"aaaa bbbb", "cccc"}},
		{"word longer than the width", "aaaaaaaaaaaa b", 5, []string{"aaaaaaaaaaaa", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, wrap(tc.text, tc.width)); diff != "" {
				t.Errorf("wrap(%q, %d) (-want +got):\n%s", tc.text, tc.width, diff)
			}
		})
	}
}

// TestSummaryRoundTrip prints a summary and reads it back as TestDemo does, so the two cannot
// drift apart.
func TestSummaryRoundTrip(t *testing.T) {
	sum := &summary{
		prefix:  "sluice-abc123",
		servers: []string{"rs1", "rs2", "rs3"},
		phases: []phaseResult{
			{name: "steady", title: "steady traffic", ok: true, outcome: "director1 MASTER",
				counts: counts{Sent: 10, Answered: 9, Failed: 1, ByServer: map[string]int{"rs1": 3, "rs2": 3, "rs3": 3}}},
			{name: "rs2-down", title: "stop rs2", ok: false, outcome: "NOT SEEN within 13s",
				counts: counts{Sent: 5, Answered: 4, Failed: 1, ByServer: map[string]int{"rs1": 2, "rs3": 2}}},
			{name: "empty", title: "nothing answered", ok: true, outcome: "x",
				counts: counts{Sent: 2, Failed: 2}},
		},
	}
	var b bytes.Buffer
	printSummary(&b, sum)
	got := parseSummary(t, "\n"+b.String())
	want := []phaseLine{
		{name: "steady", sent: 10, answered: 9, failed: 1, byServer: map[string]int{"rs1": 3, "rs2": 3, "rs3": 3}, ok: true, outcome: "steady traffic: director1 MASTER"},
		{name: "rs2-down", sent: 5, answered: 4, failed: 1, byServer: map[string]int{"rs1": 2, "rs2": 0, "rs3": 2}, outcome: "stop rs2: NOT SEEN within 13s"},
		{name: "empty", sent: 2, failed: 2, byServer: map[string]int{"rs1": 0, "rs2": 0, "rs3": 0}, ok: true, outcome: "nothing answered: x"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(phaseLine{})); diff != "" {
		t.Errorf("summary read back (-want +got):\n%s\nprinted:\n%s", diff, b.String())
	}
}

// TestWorld checks who the view calls MASTER and whose view of the real servers it shows.
func TestWorld(t *testing.T) {
	up := map[string]bool{"rs1": true, "rs2": false}
	for _, tc := range []struct {
		name       string
		w          world
		wantMaster int
		wantRS1    string
		wantRS2    string
	}{
		{"nobody answers", world{}, -1, "?", "?"},
		{"director2 master", world{directors: [2]directorState{{vrrp: "BACKUP"}, {vrrp: "MASTER", healthy: up}}}, 1, "up", "down"},
		{"both master: split brain", world{directors: [2]directorState{{vrrp: "MASTER", healthy: up}, {vrrp: "MASTER"}}}, -1, "up", "down"},
		{"only a backup answers", world{directors: [2]directorState{{}, {vrrp: "BACKUP", healthy: map[string]bool{"rs1": true}}}}, -1, "up", "?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.master(); got != tc.wantMaster {
				t.Errorf("master() = %d, want %d", got, tc.wantMaster)
			}
			if got := tc.w.health("rs1"); got != tc.wantRS1 {
				t.Errorf("health(rs1) = %q, want %q", got, tc.wantRS1)
			}
			if got := tc.w.health("rs2"); got != tc.wantRS2 {
				t.Errorf("health(rs2) = %q, want %q", got, tc.wantRS2)
			}
		})
	}
}

// TestCauses checks the summary's list of failure causes.
func TestCauses(t *testing.T) {
	for _, tc := range []struct {
		name string
		by   map[string]int
		want string
	}{
		{"none", nil, ""},
		{"one", map[string]int{"timeout": 2}, "2 timeout"},
		{"most first, ties by name", map[string]int{"timeout": 2, "connection refused": 25, "b": 2}, "25 connection refused, 2 b, 2 timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := causes(tc.by); got != tc.want {
				t.Errorf("causes(%v) = %q, want %q", tc.by, got, tc.want)
			}
		})
	}
}

// TestPerSecond checks the view's rates.
func TestPerSecond(t *testing.T) {
	t0 := time.Now()
	from := sample{at: t0, total: counts{Failed: 1, ByServer: map[string]int{"rs1": 10}}}
	to := sample{at: t0.Add(2 * time.Second), total: counts{Failed: 5, ByServer: map[string]int{"rs1": 30, "rs2": 4}}}
	want := map[string]float64{"rs1": 10, "rs2": 2, "failed": 2}
	if diff := cmp.Diff(want, perSecond(from, to)); diff != "" {
		t.Errorf("perSecond (-want +got):\n%s", diff)
	}
	if got := perSecond(to, to); len(got) != 0 {
		t.Errorf("perSecond over no time = %v, want nothing", got)
	}
}

// TestDrawFits checks that the live view fits the terminal, whatever its size, so that redrawing
// from the top never scrolls.
func TestDrawFits(t *testing.T) {
	d := &demo{
		opts:    options{rate: 40},
		started: time.Now(),
		confDir: "/tmp/sluice-demo-123456789",
		lab:     &lab.VRRPLab{Lab: &lab.Lab{}},
	}
	for i := range 3 {
		d.lab.RealServers = append(d.lab.RealServers, &lab.RealServer{Name: fmt.Sprintf("rs%d", i+1), Addr: lab.FirstRealServerIP})
	}
	for i := range d.dirs {
		d.dirs[i] = &director{name: fmt.Sprintf("director%d", i+1), addr: lab.DirectorIP, priority: 100}
	}
	d.script = []*phase{{title: "kill the MASTER", explain: strings.Repeat("a long explanation ", 20)}}
	d.phase, d.nphase = d.script[0], 1
	for i := range 40 {
		d.event("event %d: %s", i, strings.Repeat("x", 150))
	}
	total := counts{Sent: 100, Answered: 90, Failed: 10, ByServer: map[string]int{"rs1": 90}, LastError: "timeout"}
	for _, size := range [][2]int{{80, 24}, {120, 50}, {40, 10}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			var b strings.Builder
			d.draw(&b, total, map[string]float64{"rs1": 40}, size[0], size[1])
			lines := strings.Split(strings.TrimSuffix(b.String(), ansiClearDown), "\n")
			lines = lines[:len(lines)-1] // after the last newline
			if len(lines) >= size[1] {
				t.Errorf("%d lines on a terminal %d high", len(lines), size[1])
			}
			for _, l := range lines {
				l = strings.TrimPrefix(strings.TrimSuffix(l, ansiClearLine), ansiHome)
				if len([]rune(l)) >= size[0] {
					t.Errorf("line of %d columns on a terminal %d wide: %q", len(l), size[0], l)
				}
			}
			if size[1] >= 24 && !strings.Contains(b.String(), "rs3") {
				t.Error("the view does not list rs3")
			}
		})
	}
}
