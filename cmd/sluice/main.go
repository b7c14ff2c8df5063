// Command sluice is a load balancer that runs keepalived.conf on an XDP data path.
//
// Usage:
//
//	sluice run -f /etc/keepalived/keepalived.conf [-n] [-l] [-D]
//
// The keepalived flags -n (foreground) and -l (log to console) are accepted so existing unit
// files and habits keep working. main only parses flags, sets up logging and signals, and hands
// over to the director.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/director"
)

const defaultConfig = "/etc/keepalived/keepalived.conf"

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: sluice COMMAND [flags]

commands:
  run      run the load balancer (keepalived-compatible flags: -f FILE -n -l -D)
  check    check a configuration file and exit (like keepalived -t; exit 5 when invalid)
  config   print the resolved configuration (-f FILE --json; schema in docs/config.md)
  convert  print keepalived.conf for an ldirectord.cf or ipvsadm -Sn file (--from ldirectord|ipvsadm FILE)
  status   show the running daemon's services and real servers' health
  list     list services like ipvsadm -L (-n numeric, --stats counters, --rate rates)
  reload   make the running daemon re-read its configuration (like SIGHUP)
  plan     show what reloading a configuration file would change (-f FILE)
  explain  say where a packet of a flow goes and why (tcp|udp SRC:PORT DST:PORT)
  genhash  print the MD5 digest of a page for an HTTP_GET url block (keepalived's genhash)
  bench    measure the data path in network namespaces (--quick, --json, --svg FILE, --generator, --run)
  version  print the version

A leading flag means "run", so "sluice -f FILE -n -l" works as "keepalived -f FILE -n -l" does.
`)
}

var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd := args[0]
	if name, ok := strings.CutPrefix(cmd, "--signum="); ok {
		return signum(name, stdout, stderr)
	}
	if len(cmd) > 0 && cmd[0] == '-' && cmd != "-h" && cmd != "--help" && cmd != "-help" {
		cmd, args = "run", append([]string{"run"}, args...)
	}
	switch cmd {
	case "run":
		return run(args[1:], stderr)
	case "check":
		return checkMain(args[1:], stdout, stderr)
	case "config":
		return configMain(args[1:], stdout, stderr)
	case "convert":
		return convertMain(args[1:], stdout, stderr)
	case "status":
		return statusMain(args[1:], stdout, stderr)
	case "list":
		return listMain(args[1:], stdout, stderr)
	case "reload":
		return reloadMain(args[1:], stdout, stderr)
	case "plan":
		return planMain(args[1:], stdout, stderr)
	case "explain":
		return explainMain(args[1:], stdout, stderr)
	case "genhash":
		return genhashMain(args[1:], stdout, stderr)
	case "bench":
		return benchMain(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

// loadConfig parses the file and logs its warnings.
func loadConfig(path string, opts config.Options, log *slog.Logger) (*config.Config, error) {
	cfg, err := config.ParseFileWith(path, opts)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w.String())
	}
	return cfg, nil
}

func printConfigError(w io.Writer, err error) {
	var list config.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", defaultConfig, "keepalived.conf to run (keepalived: -f, --use-file)")
	fs.Bool("n", false, "stay in the foreground (accepted for keepalived compatibility; sluice never forks)")
	console := fs.Bool("l", false, "log to the console (stderr) instead of syslog")
	debug := fs.Bool("D", false, "detailed log")
	test := fs.Bool("t", false, "check the configuration and exit (keepalived -t)")
	configID := fs.String("i", "", "config id: keep only the @ID lines for this id (keepalived -i; default: the host name)")
	dataplane := fs.String("dataplane", "auto", "data plane: auto (XDP, else kernel IPVS), xdp, xdp-generic (XDP in generic mode) or ipvs")
	lifecycle := addLifecycleFlags(fs)
	roles := addRoleFlags(fs)
	socket := fs.String("socket", control.SocketPath(control.Instance()), "control socket (root only)")
	pidFile := fs.String("p", "", "write the daemon's pid to this file (keepalived: -p, --pid)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	metricsAddr := fs.String("metrics-listen", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9723 (off by default)")
	keepCaps := fs.Bool("keep-caps", false, "keep every capability after start-up (debugging; by default only those docs/operating.md lists stay)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice run: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *test {
		return checkMain([]string{"-f", *file, "-i", *configID}, io.Discard, stderr)
	}
	if !validDataplane(*dataplane) {
		fmt.Fprintf(stderr, "sluice run: --dataplane %q: want auto, xdp, xdp-generic or ipvs\n", *dataplane)
		return 2
	}
	if err := roles.validate(); err != nil {
		fmt.Fprintln(stderr, "sluice run:", err)
		return 2
	}
	if err := lifecycle.resolve(fs, socket); err != nil {
		fmt.Fprintln(stderr, "sluice run:", err)
		return 2
	}

	log, err := newLogger(*console, *debug, *logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sluice run:", err)
		return 2
	}
	parseOpts := config.Options{ConfigID: *configID}
	cfg, err := loadConfig(*file, parseOpts, log)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	cfg = roles.apply(cfg)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *pidFile != "" {
		remove, err := writePidFile(*pidFile)
		if err != nil {
			log.Error("start", "err", err)
			return 1
		}
		defer remove()
	}

	var dp forwarder = noDataplane{}
	inUse := "none (-P: VRRP only)"
	if !roles.vrrpOnly {
		dp, inUse, err = openDataplane(*dataplane, log,
			xdpOpener(log, *dataplane, lifecycle),
			func() (forwarder, error) { return openIPVS(log) })
	}
	if err != nil {
		log.Error("open data plane", "dataplane", *dataplane, "err", err)
		return 1
	}
	defer func() {
		if err := dp.Close(); err != nil {
			log.Error("close data plane", "err", err)
		}
	}()

	ntf := startNotifier(cfg, log)
	defer stopNotifier(ntf, log)
	reload := make(chan *config.Config)
	var state *control.State
	reloadFile := func(ctx context.Context) error {
		cfg, err := reloadConfig(ctx, *file, parseOpts, *roles, log, reload)
		if err == nil {
			state.SetConfig(cfg)
			ntf.Update(cfg)
		}
		return err
	}
	watchReload(ctx, reloadFile)

	state = control.NewState(control.Status{Version: version, Config: *file, Started: time.Now(), Dataplane: inUse},
		dp, reloadFile)
	state.SetConfig(cfg)
	state.SetParseOptions(parseOpts)
	state.SetInterfaces(dataplaneInterfaces(dp))
	srv, err := control.Listen(*socket, log)
	if err != nil {
		log.Error("start control API", "err", err)
		return 1
	}
	// Closing removes the socket; the process may exit before Serve notices ctx is done.
	defer srv.Close()
	go func() {
		if err := srv.Serve(ctx, state); err != nil {
			log.Error("control API stopped", "err", err)
		}
	}()
	watchDumps(ctx, log, lifecycle.instance, state.Status)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			log.Error("start metrics", "err", err)
			return 1
		}
		go func() {
			if err := control.ServeMetrics(ctx, ln, state.Status, log); err != nil {
				log.Error("metrics stopped", "err", err)
			}
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	if !*keepCaps {
		if err := dropCaps(log); err != nil {
			log.Error("drop capabilities (--keep-caps skips this)", "err", err)
			return 1
		}
	}
	log.Info("sluice starting", "version", version, "config", *file, "control", srv.Path())
	err = director.Run(ctx, director.Options{Config: cfg, Notify: ntf, Dataplane: dp, Logger: log, Reload: reload, Applied: state.Applied, OnVRRP: state.VRRP,
		OnHealth: state.Health, OnProbe: state.Probe, OnVRRPInstance: state.VRRPInstance})
	if err != nil {
		log.Error("sluice stopped", "err", err)
		return 1
	}
	log.Info("sluice stopped")
	return 0
}

// watchReload reloads on SIGHUP. It registers for the signal before it returns (its default
// action would kill the daemon) and serves it until ctx is done.
func watchReload(ctx context.Context, reload func(context.Context) error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(ctx)
			}
		}
	}()
}

// reloadConfig re-reads the configuration and hands it to the director. A file that does not
// parse is reported (to the log and to the caller) and the running configuration stays.
func reloadConfig(ctx context.Context, path string, opts config.Options, r role, log *slog.Logger, out chan<- *config.Config) (*config.Config, error) {
	cfg, err := loadConfig(path, opts, log)
	if err != nil {
		log.Error("reload refused: the running configuration stays", "file", path, "err", err)
		return nil, fmt.Errorf("reload refused, the running configuration stays: %w", err)
	}
	cfg = r.apply(cfg)
	select {
	case out <- cfg:
		return cfg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
