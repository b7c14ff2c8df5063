package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluice-lb/sluice/config"
)

// convertMain is `sluice convert --from ldirectord|ipvsadm FILE`: prints the equivalent
// keepalived.conf on stdout. FILE "-" reads standard input (e.g. `ipvsadm -Sn | sluice convert
// --from ipvsadm -`). Errors exit 5, as `sluice check` does for a broken configuration.
func convertMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "input format: ldirectord (ldirectord.cf) or ipvsadm (ipvsadm -Sn output)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: sluice convert --from ldirectord|ipvsadm FILE")
		return exitUsage
	}
	var conv func(string, io.Reader) ([]byte, error)
	switch *from {
	case "ldirectord":
		conv = config.ConvertLdirectord
	case "ipvsadm":
		conv = config.ConvertIPVSADM
	default:
		fmt.Fprintf(stderr, "sluice convert: --from %q: want ldirectord or ipvsadm\n", *from)
		return exitUsage
	}
	name := fs.Arg(0)
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "sluice convert: %v\n", err)
			return exitNoConfig
		}
		defer f.Close()
		in = f
	} else {
		name = "stdin"
	}
	out, err := conv(name, in)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfigTest
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sluice convert: write output: %v\n", err)
		return 1
	}
	return exitOK
}
