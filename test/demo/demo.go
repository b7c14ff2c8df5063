package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// options tune one run of the demo.
type options struct {
	sluice  string                     // path of the sluice binary
	phase   time.Duration              // how long each phase runs at least
	rate    int                        // client requests per second
	live    bool                       // redraw a terminal view; otherwise print plain lines
	size    func() (width, height int) // the terminal's, for the live view
	verbose bool                       // print the daemons' logs after the summary
	out     io.Writer
}

// Phase lengths: the full demo for people, the quick one for CI. A phase runs at least this
// long and, past it, until what it shows has happened (at most phaseGrace more).
const (
	fullPhase  = 8 * time.Second
	quickPhase = 3 * time.Second
	phaseGrace = 10 * time.Second
	// startTimeout bounds the start: both daemons up, director1 MASTER, every real server answering.
	startTimeout = 20 * time.Second
	// requestTimeout bounds one client request, connect to last byte.
	requestTimeout = time.Second
)

// demo is one run: the lab, the two directors, the client, and what has been seen so far.
type demo struct {
	opts    options
	started time.Time
	lab     *lab.VRRPLab
	dirs    [2]*director
	client  *client
	confDir string
	script  []*phase
	hupMark int // director2's log position when it was sent SIGHUP

	mu     sync.Mutex
	world  world // the latest observation, see watch
	events []event
	phase  *phase // the running phase; nil before the first and after the last
	nphase int    // its number, from 1
}

// event is one line of the view's event list.
type event struct {
	at   time.Duration // since the demo started
	text string
}

func (d *demo) event(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, event{at: time.Since(d.started), text: fmt.Sprintf(format, args...)})
}

// phase is one act of the demo.
type phase struct {
	name    string // short, for the summary
	title   string // what the view says is running
	explain string // what to watch, in one line
	// act starts the phase (nil: nothing to do).
	act func(ctx context.Context) error
	// done says whether what the phase shows has happened, given the latest observation and the
	// requests of this phase so far.
	done func(w world, c counts) bool
	// outcome describes what happened, given how long after the phase started done held.
	outcome func(after time.Duration) string
}

// phaseResult is what the summary reports about a phase.
type phaseResult struct {
	name, title string
	took        time.Duration
	counts      counts
	ok          bool   // done held within the phase
	outcome     string // what happened, or what did not
}

// summary is the outcome of a run.
type summary struct {
	prefix   string   // of the namespaces the run created
	servers  []string // the real servers' names
	phases   []phaseResult
	total    counts
	leftover []string // namespaces still there after the teardown
}

// phases is the script of the demo.
func (d *demo) phases() []*phase {
	d1 := d.dirs[0]
	rs2 := d.lab.RealServers[1]
	var stopped time.Time
	return []*phase{
		{
			name:    "steady",
			title:   "steady traffic",
			explain: "director1 (priority 150) is MASTER: it holds the VIP, and its XDP program spreads new connections over rs1-rs3",
			done:    func(w world, c counts) bool { return w.master() == 0 && len(c.ByServer) == 3 },
			outcome: func(time.Duration) string { return "director1 MASTER; every real server answered" },
		},
		{
			name:  "kill-master",
			title: "kill the MASTER (SIGKILL)",
			// SIGKILL rather than SIGTERM: a director that dies without a word is what VRRP is
			// for. (On SIGTERM sluice sends a priority 0 advert and the BACKUP takes over at
			// once; the demo's teardown stops the daemons that way.)
			explain: "director1 dies without a word, like a crash: its XDP program goes with it, and its kernel, " +
				"which still has the VIP, refuses the client's connections. director2 hears no advert for " +
				"3 x advert_int + skew (about 0.8 s), becomes MASTER, adds the VIP and sends gratuitous ARP; the client follows.",
			act: func(context.Context) error {
				if err := d1.kill(); err != nil {
					return err
				}
				d.event("director1: sluice killed with SIGKILL")
				return nil
			},
			done: func(w world, c counts) bool { return w.master() == 1 && w.clientVia == 1 },
			outcome: func(after time.Duration) string {
				return fmt.Sprintf("director2 MASTER, client following, %v after the kill", round(after))
			},
		},
		{
			name:    "restart",
			title:   "restart the old MASTER",
			explain: "director1 comes back with priority 150 > 100 and preempts (no nopreempt in its config): it is MASTER again",
			act: func(context.Context) error {
				if err := d1.start(); err != nil {
					return err
				}
				d.event("director1: sluice started again")
				return nil
			},
			done: func(w world, c counts) bool {
				return w.master() == 0 && w.directors[1].vrrp == "BACKUP" && w.clientVia == 0
			},
			outcome: func(after time.Duration) string {
				return fmt.Sprintf("director1 MASTER again, director2 BACKUP, %v after the restart", round(after))
			},
		},
		{
			name:  "rs2-down",
			title: "stop rs2's HTTP server",
			explain: fmt.Sprintf("HTTP_GET fails within delay_loop %v + connect_timeout %v; rs2 leaves the rotation, the other two take its share",
				lab.DelayLoop, lab.ConnectTimeout),
			act: func(context.Context) error {
				stopped = time.Now()
				d.event("rs2: HTTP server stopped")
				return rs2.Stop()
			},
			done: func(w world, c counts) bool { return w.health(rs2.Name) == "down" },
			outcome: func(after time.Duration) string {
				return fmt.Sprintf("rs2 out of rotation %v after it stopped", round(after))
			},
		},
		{
			name:    "rs2-up",
			title:   "start rs2's HTTP server again",
			explain: "the next successful HTTP_GET puts rs2 back; it gets its share of new connections again",
			act: func(context.Context) error {
				d.event("rs2: HTTP server started (down for %v)", round(time.Since(stopped)))
				return rs2.Start()
			},
			done: func(w world, c counts) bool { return w.health(rs2.Name) == "up" && c.ByServer[rs2.Name] > 0 },
			outcome: func(after time.Duration) string {
				return fmt.Sprintf("rs2 back in rotation and answering %v after it started", round(after))
			},
		},
		{
			name:    "reload",
			title:   "reload a changed config: rs3 weight 1 -> 3",
			explain: "wrr with weights 1:1:3: rs3 should now get about 60% of new connections; director1 reloads with `sluice reload`, director2 with SIGHUP",
			act:     d.reload,
			done: func(w world, c counts) bool {
				// A BACKUP forwards nothing, so its status lists no services: its log says it reloaded.
				return w.master() == 0 && w.weight("rs3") == 3 && d.dirs[1].log.Contains(d.hupMark, "configuration reloaded")
			},
			outcome: func(after time.Duration) string {
				return fmt.Sprintf("rs3 at weight 3 on director1, director2 reloaded too, %v after the reload", round(after))
			},
		},
	}
}

// reload writes both directors' configs with rs3 at weight 3, shows director1's `sluice plan`,
// and reloads director1 with `sluice reload` and director2 with SIGHUP.
func (d *demo) reload(ctx context.Context) error {
	weights := map[string]int{"rs3": 3}
	d1, d2 := d.dirs[0], d.dirs[1]
	next := filepath.Join(d.confDir, "director1.next.conf")
	if err := d1.writeConf(next, d.lab.RealServers, weights); err != nil {
		return err
	}
	plan, err := d1.sluice(ctx, "plan", "-f", next)
	if err != nil {
		return err
	}
	d.event("director1: sluice plan -f %s:", filepath.Base(next))
	for _, line := range strings.Split(strings.TrimSpace(plan), "\n") {
		if !strings.HasPrefix(line, "reloading ") { // its header names the file again
			d.event("  %s", strings.TrimSpace(line))
		}
	}
	if err := os.Rename(next, d1.conf); err != nil {
		return err
	}
	if _, err := d1.sluice(ctx, "reload"); err != nil {
		return err
	}
	d.event("director1: sluice reload: configuration reloaded")
	if err := d2.writeConf(d2.conf, d.lab.RealServers, weights); err != nil {
		return err
	}
	d.hupMark = d2.log.Mark()
	if err := d2.signal(syscall.SIGHUP); err != nil {
		return err
	}
	d.event("director2: SIGHUP sent")
	return nil
}

// run builds the topology, plays every phase while the view shows what happens, tears everything
// down however it ends, and returns the summary.
func run(ctx context.Context, o options) (sum *summary, err error) {
	d := &demo{opts: o, started: time.Now()}
	env, err := netns.New()
	if err != nil {
		return nil, err
	}
	sum = &summary{prefix: env.Prefix()}
	defer func() {
		err = errors.Join(err, d.teardown(env, sum))
		if o.verbose || err != nil {
			d.printLogs(err != nil && !o.verbose)
		}
	}()

	fmt.Fprintf(o.out, "Sluice demo: two directors sharing a VIP with VRRP, three real servers, one client, in network namespaces %s-*\n", env.Prefix())
	if err := d.build(env); err != nil {
		return sum, err
	}
	if err := d.startDirectors(ctx); err != nil {
		return sum, err
	}

	for _, rs := range d.lab.RealServers {
		sum.servers = append(sum.servers, rs.Name)
	}
	d.script = d.phases()
	d.client = newClient(d.lab.Lab, o.rate, requestTimeout)
	d.client.startPhase() // phase 1's counts
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); d.client.run(bg) }()
	go func() { defer wg.Done(); d.watch(bg) }()
	go func() { defer wg.Done(); d.show(bg) }()

	for i, p := range d.script {
		if i > 0 {
			d.client.startPhase()
		}
		res, perr := d.play(ctx, i+1, p)
		sum.phases = append(sum.phases, res)
		if perr != nil {
			err = perr
			break
		}
	}
	d.mu.Lock()
	d.phase = nil
	d.mu.Unlock()
	stopBG()
	wg.Wait()
	counts := d.client.phaseCounts()
	for i := range sum.phases {
		sum.phases[i].counts = counts[i]
	}
	sum.total, _ = d.client.snapshot()
	if err == nil {
		err = ctx.Err()
	}
	return sum, err
}

// build creates the namespaces: the lab's client and three real servers, two directors, and a
// keepalived.conf for each.
func (d *demo) build(env *netns.Env) error {
	var err error
	if d.lab, err = lab.BuildVRRP(env, 3); err != nil {
		return err
	}
	if d.confDir, err = os.MkdirTemp("", "sluice-demo-"); err != nil {
		return err
	}
	env.Defer(func() error { return os.RemoveAll(d.confDir) })
	for i, prio := range []int{150, 100} {
		name := fmt.Sprintf("director%d", i+1)
		d.dirs[i] = &director{
			name:     name,
			ns:       d.lab.Directors[i],
			addr:     []netip.Addr{lab.DirectorIP, lab.SecondDirectorIP}[i],
			priority: prio,
			conf:     filepath.Join(d.confDir, name+".conf"),
			bin:      d.opts.sluice,
			env:      env,
			log:      &lab.LogTail{Max: 500},
		}
		if err := d.dirs[i].writeConf(d.dirs[i].conf, d.lab.RealServers, nil); err != nil {
			return err
		}
		// A killed daemon leaves its socket behind; remove it whatever happens.
		sock := d.dirs[i].socket()
		env.Defer(func() error {
			if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		})
	}
	fmt.Fprintf(d.opts.out, "  client %s, director1 %s, director2 %s, VIP %s, real servers", lab.ClientIP, lab.DirectorIP, lab.SecondDirectorIP, lab.VIP)
	for _, rs := range d.lab.RealServers {
		fmt.Fprintf(d.opts.out, " %s %s", rs.Name, rs.Addr)
	}
	fmt.Fprintf(d.opts.out, "\n  configs: %s (director1 priority 150, director2 priority 100)\n", d.confDir)
	return nil
}

// startDirectors starts director1's daemon and waits until it is MASTER, then director2's and
// waits until it is BACKUP, and until every real server answers through the VIP. (Started at
// the same moment, either may be MASTER for an instant before priority settles it.)
func (d *demo) startDirectors(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	for i, want := range []func(w world) bool{
		func(w world) bool { return w.master() == 0 && w.directors[0].vip },
		func(w world) bool { return w.master() == 0 && w.directors[1].vrrp == "BACKUP" },
	} {
		dir := d.dirs[i]
		if err := dir.start(); err != nil {
			return err
		}
		fmt.Fprintf(d.opts.out, "  %s: sluice run -f %s -n -l\n", dir.name, dir.conf)
		for {
			if !dir.running() {
				return fmt.Errorf("sluice on %s exited while starting: %v", dir.name, dir.process().Err())
			}
			w := d.observe(ctx)
			if want(w) {
				fmt.Fprintf(d.opts.out, "  %s: VRRP %s\n", dir.name, w.directors[i].vrrp)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not ready within %v: director1 VRRP %q, director2 VRRP %q",
					startTimeout, w.directors[0].vrrp, w.directors[1].vrrp)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return d.lab.WaitReady(ctx, max(time.Until(deadline), 5*time.Second))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// play runs phase p: its act, then traffic until it has run its length and what it shows has
// happened (or its grace has run out too).
func (d *demo) play(ctx context.Context, n int, p *phase) (phaseResult, error) {
	res := phaseResult{name: p.name, title: p.title}
	t0 := time.Now()
	d.mu.Lock()
	d.phase, d.nphase = p, n
	d.mu.Unlock()
	d.event("phase %d: %s", n, p.title)
	if p.act != nil {
		if err := p.act(ctx); err != nil {
			d.event("%v", err)
			return res, err
		}
	}
	var doneAfter time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		elapsed := time.Since(t0)
		if !res.ok {
			d.mu.Lock()
			w := d.world
			d.mu.Unlock()
			_, c := d.client.snapshot()
			if p.done(w, c) {
				res.ok, doneAfter = true, elapsed
				d.event("%s", p.outcome(doneAfter))
			}
		}
		if elapsed >= d.opts.phase && (res.ok || elapsed >= d.opts.phase+phaseGrace) {
			break
		}
		select {
		case <-ctx.Done():
			res.took, res.outcome = time.Since(t0), "interrupted"
			if res.ok {
				res.outcome = p.outcome(doneAfter) + "; then interrupted"
			}
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	res.took = time.Since(t0)
	if res.ok {
		res.outcome = p.outcome(doneAfter)
	} else {
		res.outcome = fmt.Sprintf("NOT SEEN within %v", res.took.Round(100*time.Millisecond))
		d.event("%s: %s", p.title, res.outcome)
	}
	return res, nil
}

// teardown stops the daemons (SIGTERM), removes every namespace, link and file the run made,
// and checks that none is left.
func (d *demo) teardown(env *netns.Env, sum *summary) error {
	var errs []error
	for _, dir := range d.dirs {
		if dir != nil {
			errs = append(errs, dir.stop())
		}
	}
	errs = append(errs, env.Close())
	left, _ := filepath.Glob(filepath.Join("/run/netns", env.Prefix()+"-*"))
	sum.leftover = left
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left after the teardown: %v", left))
	}
	return errors.Join(errs...)
}

func round(t time.Duration) time.Duration { return t.Round(10 * time.Millisecond) }

// printLogs prints what the daemons logged: the last lines only when short.
func (d *demo) printLogs(short bool) {
	for _, dir := range d.dirs {
		if dir == nil {
			continue
		}
		lines := dir.log.Since(0)
		fmt.Fprintf(d.opts.out, "\n%s's sluice log:\n", dir.name)
		if short && len(lines) > 20 {
			fmt.Fprintf(d.opts.out, "  | ... %d earlier lines\n", len(lines)-20)
			lines = lines[len(lines)-20:]
		}
		for _, l := range lines {
			fmt.Fprintf(d.opts.out, "  | %s\n", l)
		}
	}
}
