package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/test/lab"
)

// isTerminal reports whether f is a terminal, where the view redraws itself.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalSize returns a function that reports f's terminal's width and height, or 100x40
// when it cannot tell.
func terminalSize(f *os.File) func() (width, height int) {
	return func() (int, int) {
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil || ws.Col == 0 || ws.Row == 0 {
			return 100, 40
		}
		return int(ws.Col), int(ws.Row)
	}
}

// ANSI escapes for the live view: cursor home, clear to end of line, clear to end of screen.
const (
	ansiHome      = "\x1b[H"
	ansiClearLine = "\x1b[K"
	ansiClearDown = "\x1b[J"
	ansiClearAll  = "\x1b[2J"
)

// rateWindow is how far back the per-second rates look.
const rateWindow = time.Second

// sample is the client's totals at one moment, to compute rates from.
type sample struct {
	at    time.Time
	total counts
}

// show draws the view until ctx ends: redrawn four times per second on a terminal, else one
// plain line per second plus every event as it happens.
func (d *demo) show(ctx context.Context) {
	every := time.Second
	if d.opts.live {
		every = 250 * time.Millisecond
		fmt.Fprint(d.opts.out, ansiClearAll)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var history []sample
	printed := 0 // events already printed, in plain mode
	for {
		now := time.Now()
		total, _ := d.client.snapshot()
		history = append(history, sample{now, total})
		for len(history) > 2 && now.Sub(history[1].at) >= rateWindow {
			history = history[1:]
		}
		rates := perSecond(history[0], history[len(history)-1])
		if d.opts.live {
			d.redraw(total, rates)
		} else {
			printed = d.plain(printed, total, rates)
		}
		select {
		case <-ctx.Done():
			// One last look, with the last phase's outcome.
			total, _ := d.client.snapshot()
			if d.opts.live {
				d.redraw(total, rates)
			} else {
				d.plain(printed, total, nil)
			}
			return
		case <-tick.C:
		}
	}
}

// redraw draws the live view in one write, at the terminal's current size.
func (d *demo) redraw(total counts, rates map[string]float64) {
	width, height := 100, 40
	if d.opts.size != nil {
		width, height = d.opts.size()
	}
	var b strings.Builder
	d.draw(&b, total, rates, width, height)
	io.WriteString(d.opts.out, b.String())
}

// perSecond returns requests per second between two samples, by real server name and under
// "failed".
func perSecond(from, to sample) map[string]float64 {
	dt := to.at.Sub(from.at).Seconds()
	out := map[string]float64{}
	if dt <= 0 {
		return out
	}
	for name, n := range to.total.ByServer {
		out[name] = float64(n-from.total.ByServer[name]) / dt
	}
	out["failed"] = float64(to.total.Failed-from.total.Failed) / dt
	return out
}

// snapshotView returns what the view shows besides the traffic.
func (d *demo) snapshotView() (w world, p *phase, n int, events []event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.world, d.phase, d.nphase, append([]event(nil), d.events...)
}

// maxEvents is how many of the latest events the live view lists.
const maxEvents = 12

// draw renders the live view into b, fitted to a terminal of the given size: lines are cut at
// its width and the event list shortened to its height, so the view never scrolls.
func (d *demo) draw(b *strings.Builder, total counts, rates map[string]float64, width, height int) {
	w, p, n, events := d.snapshotView()
	var top, bottom []string
	line := func(format string, args ...any) { top = append(top, fmt.Sprintf(format, args...)) }

	title, explain := "starting", ""
	switch {
	case p != nil:
		title, explain = fmt.Sprintf("phase %d/%d: %s", n, len(d.script), p.title), p.explain
	case n > 0:
		title = "finished; tearing down"
	}
	line("Sluice demo  +%-6s  %s", fmt.Sprintf("%.1fs", time.Since(d.started).Seconds()), title)
	for _, l := range wrap(explain, max(width-3, 40)) {
		line("  %s", l)
	}
	line("  configs: %s/director{1,2}.conf", d.confDir)
	line("")
	line("  %-10s %-12s %-5s %-8s %-7s %s", "DIRECTOR", "ADDRESS", "PRIO", "SLUICE", "VRRP", "VIP")
	for i, dir := range d.dirs {
		s := w.directors[i]
		line("  %-10s %-12s %-5d %-8s %-7s %s", dir.name, dir.addr, dir.priority, procState(dir, w, s), orDash(s.vrrp), vipState(s))
	}
	via := "none yet"
	if w.clientVia >= 0 {
		via = d.dirs[w.clientVia].name
	}
	line("  the client's ARP entry for the VIP %s points at: %s", lab.VIP, via)
	line("")
	reporter := "no director answers"
	if r := w.reporter(); r >= 0 {
		reporter = d.dirs[r].name
	}
	line("  %-11s %-12s %-6s %-6s %6s %7s   (from %s)", "REAL SERVER", "ADDRESS", "WEIGHT", "CHECK", "REQ/S", "TOTAL", reporter)
	for _, rs := range d.lab.RealServers {
		r := rates[rs.Name]
		line("  %-11s %-12s %-6s %-6s %6.0f %7d   %s", rs.Name, rs.Addr, orDash(itoa(w.weight(rs.Name))), w.health(rs.Name),
			r, total.ByServer[rs.Name], bar(r, float64(d.opts.rate)))
	}
	line("  %-11s %-12s %-6s %-6s %6.0f %7d", "failed", "", "", "", rates["failed"], total.Failed)
	if total.LastError != "" {
		line("  last failure at +%.1fs: %s", total.LastErrorAt.Sub(d.started).Seconds(), total.LastError)
	}
	line("  client %s: %d new connections/s, %v timeout; %d sent, %d answered",
		lab.ClientIP, d.opts.rate, requestTimeout, total.Sent, total.Answered)
	line("")
	line("  EVENTS")
	bottom = []string{"", "  Ctrl-C ends the demo early; everything it made is removed either way."}

	// As many of the latest events as fit; the last line of the terminal stays empty.
	room := min(maxEvents, height-1-len(top)-len(bottom))
	events = events[len(events)-min(max(room, 0), len(events)):]
	b.WriteString(ansiHome)
	all := top
	for _, e := range events {
		all = append(all, fmt.Sprintf("  %7s  %s", fmt.Sprintf("+%.1fs", e.at.Seconds()), e.text))
	}
	all = append(all, bottom...)
	if len(all) > height-1 { // a tiny terminal: show what fits
		all = all[:max(height-1, 0)]
	}
	for _, l := range all {
		if r := []rune(l); len(r) >= width {
			l = string(r[:max(width-1, 0)])
		}
		b.WriteString(l + ansiClearLine + "\n")
	}
	b.WriteString(ansiClearDown)
}

// plain prints the events after the first printed, then one status line; it returns how many
// events have been printed.
func (d *demo) plain(printed int, total counts, rates map[string]float64) int {
	w, p, n, events := d.snapshotView()
	out := d.opts.out
	for _, e := range events[printed:] {
		fmt.Fprintf(out, "%7s  %s\n", fmt.Sprintf("+%.1fs", e.at.Seconds()), e.text)
	}
	if rates == nil || p == nil || !w.observed {
		return len(events)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%7s  [%d %s]", fmt.Sprintf("+%.1fs", time.Since(d.started).Seconds()), n, p.name)
	for i, dir := range d.dirs {
		s := w.directors[i]
		state := orDash(s.vrrp)
		if !s.running {
			state = procState(dir, w, s)
		}
		fmt.Fprintf(&b, " %s %s", dir.name, state)
		if s.vip {
			b.WriteString("+VIP")
		}
	}
	b.WriteString(" |")
	for _, rs := range d.lab.RealServers {
		fmt.Fprintf(&b, " %s %.0f/s %s", rs.Name, rates[rs.Name], w.health(rs.Name))
	}
	fmt.Fprintf(&b, " | failed %.0f/s | sent %d, answered %d, failed %d", rates["failed"], total.Sent, total.Answered, total.Failed)
	fmt.Fprintln(out, b.String())
	return len(events)
}

func procState(dir *director, w world, s directorState) string {
	switch {
	case !w.observed:
		return "-"
	case s.running:
		return "running"
	case dir.process() == nil:
		return "-"
	default:
		return "killed"
	}
}

func vipState(s directorState) string {
	switch {
	case s.vip && !s.running:
		return "on " + lab.Iface + " (stale: left by the killed daemon)"
	case s.vip && s.vrrp != "MASTER":
		return "on " + lab.Iface + " (stale: not MASTER)"
	case s.vip:
		return "on " + lab.Iface
	default:
		return "-"
	}
}

func orDash(s string) string {
	if s == "" || s == "0" {
		return "-"
	}
	return s
}

func itoa(i int) string { return fmt.Sprint(i) }

// bar draws v out of full as up to 20 hashes.
func bar(v, full float64) string {
	if full <= 0 || v <= 0 {
		return ""
	}
	n := int(20*v/full + 0.5)
	return strings.Repeat("#", min(n, 20))
}

// printSummary prints what each phase sent, answered and failed, and what it showed.
func printSummary(out io.Writer, sum *summary) {
	servers := sum.servers
	fmt.Fprintf(out, "\nSummary: requests sent, answered and failed per phase (each a new connection to http://%s/)\n", lab.VIP)
	fmt.Fprintf(out, "  %-2s %-12s %6s %6s %8s %6s", "", "PHASE", "TIME", "SENT", "ANSWERED", "FAILED")
	for _, s := range servers {
		fmt.Fprintf(out, " %10s", s)
	}
	fmt.Fprintln(out)
	for i, p := range sum.phases {
		c := p.counts
		fmt.Fprintf(out, "  %-2d %-12s %6s %6d %8d %6d", i+1, p.name, fmt.Sprintf("%.1fs", p.took.Seconds()), c.Sent, c.Answered, c.Failed)
		for _, s := range servers {
			fmt.Fprintf(out, " %10s", share(c.ByServer[s], c.Answered))
		}
		fmt.Fprintln(out)
		mark := "ok  "
		if !p.ok {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "     %s %s: %s\n", mark, p.title, p.outcome)
		if c.Failed > 0 {
			fmt.Fprintf(out, "          failed: %s\n", causes(c.FailedBy))
		}
	}
	t := sum.total
	fmt.Fprintf(out, "  %-2s %-12s %6s %6d %8d %6d", "", "total", "", t.Sent, t.Answered, t.Failed)
	for _, s := range servers {
		fmt.Fprintf(out, " %10s", share(t.ByServer[s], t.Answered))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  namespaces %s-*: %d left after the teardown\n", sum.prefix, len(sum.leftover))
}

// share formats n of total as "N (P%)".
func share(n, total int) string {
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d %3.0f%%", n, 100*float64(n)/float64(total))
}

// wrap splits text into lines of at most width bytes, at spaces; always at least one line.
func wrap(text string, width int) []string {
	var out []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			out = append(out, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(out, line)
}

// causes lists failure counts by cause, most frequent first: "25 connection refused, 2 timeout".
func causes(by map[string]int) string {
	names := slices.Collect(maps.Keys(by))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(by[b]-by[a], strings.Compare(a, b)) })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%d %s", by[n], n)
	}
	return strings.Join(parts, ", ")
}
