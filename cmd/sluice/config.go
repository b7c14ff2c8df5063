package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/sluice-lb/sluice/config"
)

// Exit codes of `sluice check`, `sluice run -t` and `sluice config`, following keepalived's
// (keepalived/include/main.h, enum keepalived_exit); see docs/config.md.
const (
	exitOK         = 0 // KEEPALIVED_EXIT_OK: the configuration is valid (warnings allowed)
	exitUsage      = 2 // KEEPALIVED_EXIT_PROGRAM_ERROR: bad command line
	exitConfigTest = 5 // KEEPALIVED_EXIT_CONFIG_TEST: the configuration has errors
	exitNoConfig   = 7 // KEEPALIVED_EXIT_NO_CONFIG: the file cannot be read
)

// loadForCheck parses path, telling a file that cannot be read apart from one with errors.
func loadForCheck(path string, opts config.Options, stderr io.Writer) (*config.Config, int) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "%s: configuration file does not exist\n", path)
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
		}
		return nil, exitNoConfig
	}
	cfg, err := config.ParseFileWith(path, opts)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) && len(list) == 1 && list[0].Pos.Line == 0 {
			fmt.Fprintln(stderr, list[0].Error()) // a whole-file problem: not readable
			return nil, exitNoConfig
		}
		printConfigError(stderr, err)
		return nil, exitConfigTest
	}
	return cfg, exitOK
}

// checkMain is `sluice check -f FILE [-i CONFIG_ID]`, keepalived's --config-test: every error
// and warning with file:line:col on stderr, a summary on stdout, and keepalived's exit codes.
func checkMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", defaultConfig, "keepalived.conf to check")
	id := fs.String("i", "", "config id selecting @ID lines (keepalived -i); default: the host name up to its first dot")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice check: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, code := loadForCheck(*file, config.Options{ConfigID: *id}, stderr)
	if cfg == nil {
		return code
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	fmt.Fprintf(stdout, "%s: configuration is valid (%d virtual servers, %d vrrp instances)\n",
		*file, len(cfg.VirtualServers)+len(cfg.OtherVirtualServers), len(cfg.VRRPInstances))
	return exitOK
}

// configMain is `sluice config -f FILE --json [-i CONFIG_ID]`: the fully resolved configuration
// as JSON on stdout (schema in docs/config.md); errors as `sluice check` reports them.
func configMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", defaultConfig, "keepalived.conf to read")
	id := fs.String("i", "", "config id selecting @ID lines (keepalived -i)")
	asJSON := fs.Bool("json", false, "print the resolved configuration as JSON (the only format so far)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice config: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if !*asJSON {
		fmt.Fprintln(stderr, "sluice config: --json is required (the only output format so far)")
		return exitUsage
	}
	cfg, code := loadForCheck(*file, config.Options{ConfigID: *id}, stderr)
	if cfg == nil {
		return code
	}
	out, err := cfg.JSON()
	if err != nil {
		fmt.Fprintf(stderr, "sluice config: encoding JSON: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return exitOK
}
