package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/sluice-lb/sluice/control"
)

// explainMain asks the daemon what happens to a packet of one flow: `sluice explain tcp
// 10.0.0.5:40000 10.0.0.100:80`.
func explainMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice explain [--json] [--socket PATH] tcp|udp SRC:PORT DST:PORT")
		fs.PrintDefaults()
	}
	socket := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the explanation as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 3 {
		fs.Usage()
		return 2
	}
	if _, err := control.ParseProto(fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, "sluice explain:", err)
		return 2
	}
	var ends [2]netip.AddrPort
	for i, what := range []string{"source", "destination"} {
		ap, err := netip.ParseAddrPort(fs.Arg(1 + i))
		if err != nil {
			fmt.Fprintf(stderr, "sluice explain: %s %q: want ADDRESS:PORT ([ADDRESS]:PORT for IPv6)\n", what, fs.Arg(1+i))
			return 2
		}
		ends[i] = ap
	}
	resp, ok := callDaemon(*socket, control.Request{Command: control.CmdExplain, Proto: fs.Arg(0), Src: ends[0], Dst: ends[1]}, stderr)
	if !ok {
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(resp.Explain)
		return 0
	}
	control.WriteExplanation(stdout, *resp.Explain)
	return 0
}
