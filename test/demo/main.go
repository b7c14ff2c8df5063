// Command demo shows Sluice replacing keepalived+LVS, live, in network namespaces: a client, two
// directors running the real `sluice run` with a keepalived.conf each (VRRP, MASTER priority
// 150 and BACKUP 100, one VIP; one DR virtual server with HTTP_GET checks) and three real HTTP
// servers. While the client sends a steady stream of short requests to the VIP, it kills the
// MASTER, restarts it, stops and restarts a real server and reloads a changed config, and shows
// who is MASTER and where the requests go. It ends by itself, removes everything it created
// (also on Ctrl-C or SIGTERM) and prints a summary per phase.
//
// The script is demo.go's phases; directors.go writes the keepalived.conf and runs the daemons,
// traffic.go is the client, watch.go what the demo observes, view.go what it shows. See
// docs/demo.md.
//
// Usage (as root): demo -sluice PATH [-quick] [-plain] [-rate N] [-v]   (or `make demo`)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("sluice", "", "path of the sluice binary to run (go build -o bin/sluice ./cmd/sluice)")
	quick := fs.Bool("quick", false, "short phases (about 25 s in all), as CI runs it")
	rate := fs.Int("rate", 40, "client requests per second, 1..200")
	plain := fs.Bool("plain", false, "print plain lines instead of redrawing the terminal")
	verbose := fs.Bool("v", false, "print the daemons' logs at the end")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: demo -sluice PATH [-quick] [-plain] [-v]\n\n"+
			"Runs two Sluice directors with VRRP and three real servers in throwaway network namespaces,\n"+
			"and shows failover, health checks and a reload under traffic. Needs root.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bin == "" || fs.NArg() > 0 || *rate < 1 || *rate > 200 {
		fs.Usage()
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "demo: needs root: it creates network namespaces and runs sluice, which attaches XDP programs")
		return 1
	}
	abs, err := filepath.Abs(*bin)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: sluice binary: %v\n", err)
		return 1
	}

	o := options{sluice: abs, phase: fullPhase, rate: *rate, verbose: *verbose, out: stdout}
	if *quick {
		o.phase = quickPhase
	}
	if f, ok := stdout.(*os.File); ok && !*plain {
		o.live = isTerminal(f)
		o.size = terminalSize(f)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, o)
	if sum != nil {
		printSummary(stdout, sum)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "demo: interrupted; everything it created has been removed")
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	for _, p := range sum.phases {
		if !p.ok {
			fmt.Fprintf(stderr, "demo: phase %q did not show what it should: %s\n", p.name, p.outcome)
			return 1
		}
	}
	return 0
}
