package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/director"
)

// callDaemon sends one request to the running daemon and reports failures on stderr.
func callDaemon(socket string, req control.Request, stderr io.Writer) (control.Response, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, socket, req)
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", req.Command, err)
		return resp, false
	}
	return resp, true
}

func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", control.SocketPath(control.Instance()), "control socket of the daemon")
}

func statusMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	resp, ok := callDaemon(*socket, control.Request{Command: control.CmdStatus}, stderr)
	if !ok {
		return 1
	}
	st := resp.Status
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	control.WriteStatus(stdout, *st, time.Now())
	return 0
}

func listMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	numeric := fs.Bool("n", false, "numeric output: no host or service names (ipvsadm -n)")
	stats := fs.Bool("stats", false, "traffic counters (ipvsadm --stats)")
	rate := fs.Bool("rate", false, "traffic rates per second (ipvsadm --rate); may take a second")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *rate && *stats {
		fmt.Fprintln(stderr, "sluice list: --stats and --rate are exclusive")
		return 2
	}
	req := control.Request{Command: control.CmdStatus}
	if *rate {
		req.Command = control.CmdRates
	}
	resp, ok := callDaemon(*socket, req, stderr)
	if !ok {
		return 1
	}
	opts := control.ListOptions{Stats: *stats, Rate: *rate}
	if !*numeric {
		opts.Names = control.Names(context.Background())
	}
	control.WriteList(stdout, *resp.Status, opts)
	return 0
}

func planMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	file := fs.String("f", "", "the configuration to compare with the running one")
	asJSON := fs.Bool("json", false, "print the changes as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "sluice plan: -f FILE is required")
		return 2
	}
	abs, err := filepath.Abs(*file)
	if err != nil {
		fmt.Fprintln(stderr, "sluice plan:", err)
		return 2
	}
	resp, ok := callDaemon(*socket, control.Request{Command: control.CmdPlan, File: abs}, stderr)
	if !ok {
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Changes []director.Change   `json:"changes"`
			Flows   *director.FlowShare `json:"flows,omitempty"`
		}{resp.Plan, resp.Flows})
		return 0
	}
	if len(resp.Plan) == 0 {
		fmt.Fprintf(stdout, "reloading %s would change nothing\n", abs)
	} else {
		fmt.Fprintf(stdout, "reloading %s would make %d changes:\n", abs, len(resp.Plan))
		for _, c := range resp.Plan {
			fmt.Fprintln(stdout, " ", c)
		}
	}
	if f := resp.Flows; f != nil {
		share := 0.0
		if f.Total > 0 {
			share = 100 * float64(f.Moving) / float64(f.Total)
		}
		fmt.Fprintf(stdout, "flows: %d of %d current flows (%.1f%%) would leave their real server\n", f.Moving, f.Total, share)
	}
	return 0
}

func reloadMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, ok := callDaemon(*socket, control.Request{Command: control.CmdReload}, stderr); !ok {
		return 1
	}
	fmt.Fprintln(stdout, "configuration reloaded")
	return 0
}
