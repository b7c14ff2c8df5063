// Command demo shows Sluice at work in network namespaces: it builds the test/lab topology (a
// client, a director, three real servers on one bridge), runs the real sluice binary on the
// director and narrates what a keepalived+LVS user would check: the spread of new connections,
// a real server failing and coming back, and the XDP program on the director's interface.
// Everything it creates is removed when it ends, also on Ctrl-C or SIGTERM.
//
// Usage (as root): demo -sluice PATH   (or `make demo`)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// connections is how many connections each step of the demo makes.
const connections = 200

func main() {
	bin := flag.String("sluice", "", "path of the sluice binary to run (go build -o bin/sluice ./cmd/sluice)")
	verbose := flag.Bool("v", false, "stream sluice's log while the demo runs")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -sluice PATH [-v]\n\nRuns Sluice in throwaway network namespaces and shows it balancing, failing over and recovering. Needs root.\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if *bin == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root: it creates network namespaces and attaches XDP programs")
		os.Exit(1)
	}
	abs, err := filepath.Abs(*bin)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: sluice binary: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{w: os.Stdout, bin: abs, verbose: *verbose, started: time.Now()}
	err = d.run(ctx)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it created has been removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	w       io.Writer
	bin     string
	verbose bool
	started time.Time

	lab  *lab.Lab
	proc *netns.Proc
	log  *lab.LogTail
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.w, format, args...) }

func (d *demo) step(format string, args ...any) {
	d.printf("\n== %s\n", fmt.Sprintf(format, args...))
}

// run does the whole demo; the namespaces are removed however it ends.
func (d *demo) run(ctx context.Context) (err error) {
	env, err := netns.New()
	if err != nil {
		return err
	}
	defer func() {
		d.printf("\n== Tearing down\n")
		if d.proc != nil {
			if serr := d.proc.Stop(netns.StopGrace); serr != nil && err == nil && ctx.Err() == nil {
				err = fmt.Errorf("sluice did not exit cleanly: %w", serr)
			}
		}
		if cerr := env.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", cerr))
		}
		left, _ := filepath.Glob(filepath.Join("/run/netns", env.Prefix()+"-*"))
		d.printf("   namespaces %s-* removed (%d left); done in %v\n",
			env.Prefix(), len(left), time.Since(d.started).Round(100*time.Millisecond))
	}()

	d.printf("Sluice demo: keepalived.conf in, DR load balancing with XDP out, all inside network namespaces.\n")
	if d.lab, err = lab.Build(env, 3); err != nil {
		return err
	}
	d.topology(env)

	if err := d.start(ctx); err != nil {
		return err
	}

	d.step("1. %d new connections from the client to http://%s/ (each one a new TCP connection)", connections, lab.VIP)
	if err := d.round(ctx, ""); err != nil {
		return err
	}

	rs2 := d.lab.RealServers[1]
	d.step("2. Stopping rs2's HTTP server (%s:%d): new connections to it are refused", rs2.Addr, lab.Port)
	if err := d.failover(ctx, rs2); err != nil {
		return err
	}

	d.step("3. Restarting rs2's HTTP server")
	if err := d.recover(ctx, rs2); err != nil {
		return err
	}

	d.step("4. Stopping sluice")
	return d.stop()
}

func (d *demo) topology(env *netns.Env) {
	d.step("Topology: one bridge (br0) in namespace %s-switch; every host has eth0 on it", env.Prefix())
	d.printf("   %-9s %-36s %s\n", "client", lab.ClientIP.String()+"/24", "sends the requests; tx checksum offload off")
	d.printf("   %-9s %-36s %s\n", "director", lab.DirectorIP.String()+"/24 + VIP "+lab.VIP.String()+"/32",
		"runs sluice; XDP rewrites MACs and sends VIP traffic back out (DR)")
	for _, rs := range d.lab.RealServers {
		d.printf("   %-9s %-36s %s\n", rs.Name, rs.Addr.String()+"/24 + VIP on lo",
			fmt.Sprintf("arp_ignore=1 arp_announce=2; HTTP :%d answers %q", lab.Port, rs.Name))
	}
	d.printf("   Run commands in them with: ip netns exec %s-director ip -d link show eth0\n", env.Prefix())
}

func (d *demo) start(ctx context.Context) error {
	confText := d.lab.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout)
	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	d.lab.Env.Defer(func() error { return os.RemoveAll(dir) })
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		return err
	}
	d.step("keepalived.conf")
	for _, line := range strings.Split(strings.TrimRight(confText, "\n"), "\n") {
		d.printf("%s\n", strings.TrimRight("   "+line, " "))
	}

	d.step("Starting sluice in the director namespace: %s run -f %s -n -l", filepath.Base(d.bin), conf)
	d.log = &lab.LogTail{Max: 2000}
	if d.verbose {
		d.log.OnLine = func(line string) { d.printf("   | %s\n", line) }
	}
	t0 := time.Now()
	if d.proc, err = d.lab.StartSluice(d.bin, conf, d.log); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.proc.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := d.lab.WaitReady(wctx, 20*time.Second); err != nil {
		d.tail(0, 15)
		select {
		case <-d.proc.Done():
			return fmt.Errorf("sluice exited while starting: %v", d.proc.Err())
		default:
		}
		return err
	}
	d.printf("   ready after %v: the VIP answers and all %d real servers have served a connection\n",
		time.Since(t0).Round(10*time.Millisecond), len(d.lab.RealServers))
	return d.printXDP("   ")
}

func (d *demo) printXDP(indent string) error {
	attached, desc, err := d.lab.XDPState()
	if err != nil {
		return err
	}
	if !attached {
		return fmt.Errorf("no XDP program on the director's %s although the VIP answers", lab.Iface)
	}
	d.printf("%sXDP on director %s: %s\n", indent, lab.Iface, desc)
	return nil
}

// round makes the demo's batch of connections and prints the distribution; down names a
// server expected to get none.
func (d *demo) round(ctx context.Context, down string) error {
	t0 := time.Now()
	tally := d.lab.Run(ctx, connections)
	if err := ctx.Err(); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	d.printf("   %-6s %-13s %11s %7s\n", "server", "address", "connections", "share")
	for _, rs := range d.lab.RealServers {
		n := tally.ByServer[rs.Name]
		share := float64(n) / float64(tally.Total)
		note := ""
		if rs.Name == down {
			note = "  (stopped)"
		}
		d.printf("   %-6s %-13s %11d %6.1f%%  %s%s\n", rs.Name, rs.Addr, n, 100*share, strings.Repeat("#", int(share*40+0.5)), note)
	}
	d.printf("   %-6s %-13s %11d\n", "failed", "", len(tally.Failed))
	d.printf("   %d connections in %v (%.0f/s)\n", tally.Total, elapsed.Round(time.Millisecond), float64(tally.Total)/elapsed.Seconds())
	for i, a := range tally.Failed {
		if i == 5 {
			d.printf("   ... %d more failures\n", len(tally.Failed)-i)
			break
		}
		d.printf("   failure: %v\n", a.Err)
	}
	return nil
}

func (d *demo) failover(ctx context.Context, rs *lab.RealServer) error {
	mark := d.log.Mark()
	if err := rs.Stop(); err != nil {
		return err
	}
	t0 := time.Now()
	window := lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin
	d.printf("   TCP_CHECK runs every %v with connect_timeout %v and retry 0: sluice should take rs2 out within %v (+%v to apply)\n",
		lab.DelayLoop, lab.ConnectTimeout, lab.DelayLoop+lab.ConnectTimeout, lab.ApplyMargin)

	// Watch the log for the first line naming the server, for at most the window.
	noticed := time.Duration(0)
	for time.Since(t0) < window {
		if noticed == 0 && d.log.Contains(mark, rs.Addr.String()) {
			noticed = time.Since(t0)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if noticed > 0 {
		d.printf("   sluice logged about %s %v after the server stopped; its log since then:\n", rs.Addr, noticed.Round(10*time.Millisecond))
	} else {
		d.printf("   sluice logged nothing naming %s within %v; its log since then:\n", rs.Addr, window)
	}
	d.tail(mark, 8)

	d.printf("\n   The next %d connections:\n", connections)
	return d.round(ctx, rs.Name)
}

func (d *demo) recover(ctx context.Context, rs *lab.RealServer) error {
	mark := d.log.Mark()
	if err := rs.Start(); err != nil {
		return err
	}
	t0 := time.Now()
	attempts, err := d.lab.WaitServer(ctx, rs.Name, 2*(lab.DelayLoop+lab.ConnectTimeout)+lab.ApplyMargin+2*time.Second)
	if err != nil {
		d.tail(mark, 8)
		return err
	}
	d.printf("   %s served a connection again %v after its server restarted (%d connections tried meanwhile); sluice's log:\n",
		rs.Name, time.Since(t0).Round(10*time.Millisecond), len(attempts))
	d.tail(mark, 8)
	d.printf("\n   The next %d connections:\n", connections)
	return d.round(ctx, "")
}

func (d *demo) stop() error {
	if err := d.printXDP("   before: "); err != nil {
		return err
	}
	err := d.proc.Stop(netns.StopGrace)
	if err != nil {
		d.tail(0, 10)
		return fmt.Errorf("sluice did not exit cleanly on SIGTERM: %w", err)
	}
	d.printf("   sent SIGTERM: sluice exited with status 0\n")
	attached, desc, xerr := d.lab.XDPState()
	switch {
	case xerr != nil:
		return xerr
	case attached:
		return fmt.Errorf("XDP still attached to the director's %s after sluice exited: %s", lab.Iface, desc)
	}
	d.printf("   after:  no XDP program on director %s\n", lab.Iface)
	return nil
}

// tail prints up to n of sluice's log lines written after mark.
func (d *demo) tail(mark, n int) {
	lines := d.log.Since(mark)
	if len(lines) == 0 {
		d.printf("   | (nothing)\n")
		return
	}
	if len(lines) > n {
		d.printf("   | ... %d earlier lines\n", len(lines)-n)
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		d.printf("   | %s\n", l)
	}
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
