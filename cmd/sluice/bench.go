package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-lb/sluice/bench"
)

// benchMain runs the benchmark harness: sluice bench [--quick] [--json] [--svg FILE]
// [--generator live-frames|pktgen|auto].
func benchMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "fewer scenarios, one second each (under two minutes)")
	smoke := fs.Bool("smoke", false, "one tiny scenario: only check that the harness works")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per scenario, instead of the table")
	svg := fs.String("svg", "", "also write an SVG chart of Mpps per scenario to `FILE`")
	dur := fs.Duration("duration", 0, "how long each forwarder is measured per scenario (default 5s, 1s with --quick)")
	rounds := fs.Int("rounds", 0, "turns Sluice and the baselines take per scenario, best kept (default 5)")
	generator := fs.String("generator", bench.GeneratorLiveFrames, "traffic generator of the UDP scenarios: `live-frames`, pktgen (kernel pktgen; TCP scenarios keep live frames) or auto (pktgen when the kernel has it)")
	filter := fs.String("run", "", "only the throughput scenarios matching `REGEXP` (as the progress names them: \"established dr ipv4 TCP\")")
	throughputOnly := fs.Bool("throughput-only", false, "skip the test-run costs and the control-plane timings")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *rounds < 0 {
		fmt.Fprintf(stderr, "sluice bench: --rounds %d: want a positive count\n", *rounds)
		return 2
	}
	if *dur < 0 {
		fmt.Fprintf(stderr, "sluice bench: --duration %s: want a positive duration\n", *dur)
		return 2
	}
	switch *generator {
	case bench.GeneratorLiveFrames, bench.GeneratorPktgen, bench.GeneratorAuto:
	default:
		fmt.Fprintf(stderr, "sluice bench: --generator %q: want live-frames, pktgen or auto\n", *generator)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "sluice bench: needs root (creates network namespaces and loads BPF programs)")
		return 1
	}
	// Interrupting stops after the current measurement and still removes the rig; so does a
	// closed output pipe (sluice bench | head), which would otherwise kill the process before
	// it cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	results, err := bench.Run(ctx, bench.Options{Quick: *quick, Smoke: *smoke, Duration: *dur, Rounds: *rounds, Generator: *generator, ThroughputOnly: *throughputOnly, Filter: *filter, Progress: stderr})
	if err != nil {
		fmt.Fprintln(stderr, "sluice bench:", err)
		return 1
	}
	if *asJSON {
		err = bench.WriteJSON(stdout, results)
	} else {
		err = bench.WriteTable(stdout, results)
	}
	if err == nil && *svg != "" {
		err = writeSVG(*svg, results)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice bench:", err)
		return 1
	}
	return 0
}

func writeSVG(path string, results []bench.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create chart: %w", err)
	}
	if err := bench.WriteSVG(f, results); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
