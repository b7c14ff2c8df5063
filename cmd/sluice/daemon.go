package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/notify"
)

// newLogger logs to stderr with -l (console), else to syslog like keepalived, with each record's
// level mapped to a syslog priority; stderr when syslog is absent. format is "text" or "json".
func newLogger(console, debug bool, format string, stderr io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	var mk func(io.Writer) slog.Handler
	switch format {
	case "text":
		mk = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case "json":
		mk = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	if !console {
		if sw, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "sluice"); err == nil {
			return slog.New(&syslogHandler{w: sw, mk: mk, opts: opts}), nil
		}
	}
	return slog.New(mk(stderr)), nil
}

// syslogHandler formats a record with the text or JSON handler and sends it to syslog at the
// priority of its level, so syslog filters (err, warning, ...) work as with keepalived.
type syslogHandler struct {
	w     *syslog.Writer
	mk    func(io.Writer) slog.Handler
	opts  *slog.HandlerOptions
	attrs []slog.Attr
	group string
}

func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.opts.Level.Level()
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	var b bytes.Buffer
	inner := h.mk(&b).WithAttrs(h.attrs)
	if h.group != "" {
		inner = inner.WithGroup(h.group)
	}
	if err := inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := string(bytes.TrimRight(b.Bytes(), "\n"))
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.w.Info(msg)
	}
	return h.w.Debug(msg)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// writePidFile writes the pid to path through a temporary file renamed into place (a symlink
// at path is replaced, not followed), and returns a function removing it.
func writePidFile(path string) (func(), error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".sluice-pid-*")
	if err != nil {
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o644)); err != nil {
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { os.Remove(path) }) }, nil
}

// watchDumps writes keepalived-style dumps under control.DefaultDir when asked by signal. It
// registers for the signals before it returns (their default action would kill the daemon) and
// serves them until ctx is done.
func watchDumps(ctx context.Context, log *slog.Logger, instance string, status func() control.Status) {
	sigs := make(chan os.Signal, 4)
	kinds := map[os.Signal]string{}
	for kind, sig := range control.DumpSignals {
		kinds[sig] = kind
		signal.Notify(sigs, sig)
	}
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				path, err := control.Dump(control.DefaultDir, instance, kinds[sig], status(), time.Now())
				if err != nil {
					log.Error("dump failed", "signal", sig, "err", err)
					continue
				}
				log.Info("dump written", "signal", sig, "file", path)
			}
		}
	}()
}

// signum prints the signal number that asks the daemon for name, as `keepalived --signum` does,
// so scripts like `kill -s $(sluice --signum=DATA) PID` keep working.
func signum(name string, stdout, stderr io.Writer) int {
	sigs := map[string]os.Signal{"STOP": syscall.SIGTERM, "RELOAD": syscall.SIGHUP}
	for kind, sig := range control.DumpSignals {
		sigs[strings.ToUpper(kind)] = sig
	}
	sig, ok := sigs[strings.ToUpper(name)]
	if !ok {
		fmt.Fprintf(stderr, "sluice: unknown signal function %q (STOP, RELOAD, DATA, STATS, JSON)\n", name)
		return 1
	}
	fmt.Fprintln(stdout, int(sig.(syscall.Signal)))
	return 0
}

// lifecycleFlags are run's flags about the data plane's life beyond the process.
type lifecycleFlags struct {
	// instance names the pin directory (/sys/fs/bpf/sluice/INSTANCE) and, unless --socket is
	// given, the control socket and dumps.
	instance string
	// dontRelease leaves the data plane forwarding on SIGTERM (keepalived -I).
	dontRelease bool
	// flowTable and unconfirmedTable size the XDP connection tables; 0 means the defaults.
	flowTable, unconfirmedTable uint
	// maxServices and maxReals size the XDP per-service and per-real-server maps.
	maxServices, maxReals uint
}

// addLifecycleFlags registers --instance and --dont-release-dataplane with keepalived's
// spellings of the latter, -I and --dont-release-ipvs.
func addLifecycleFlags(fs *flag.FlagSet) *lifecycleFlags {
	lc := &lifecycleFlags{}
	fs.StringVar(&lc.instance, "instance", control.Instance(),
		"instance name: the pinned data plane lives in /sys/fs/bpf/sluice/NAME, the control socket is /run/sluice/NAME.sock unless --socket is given")
	const help = "on SIGTERM, leave the XDP data plane forwarding (pinned) for the next start to take over"
	fs.BoolVar(&lc.dontRelease, "dont-release-dataplane", false, help)
	fs.BoolVar(&lc.dontRelease, "dont-release-ipvs", false, help+" (keepalived's name)")
	fs.BoolVar(&lc.dontRelease, "I", false, help+" (keepalived: -I)")
	fs.UintVar(&lc.flowTable, "flow-table-size", loader.DefaultFlowTableSize,
		"XDP: entries of the table of confirmed connections (about 56 bytes each, plus as many for NAT replies)")
	fs.UintVar(&lc.unconfirmedTable, "unconfirmed-table-size", loader.DefaultUnconfirmedTableSize,
		"XDP: entries of the table of connections seen once (a SYN flood churns this one only)")
	fs.UintVar(&lc.maxServices, "max-services", loader.DefaultMaxServices,
		"XDP: most virtual services the data plane holds (sizes its per-service maps)")
	fs.UintVar(&lc.maxReals, "max-real-servers", loader.DefaultMaxBackends,
		"XDP: most real servers over all virtual services (sizes its per-real-server maps)")
	return lc
}

// resolve checks the instance name and, unless --socket was given, points socket at the
// instance's control socket.
func (lc *lifecycleFlags) resolve(fs *flag.FlagSet, socket *string) error {
	if lc.instance == "" || lc.instance == "." || lc.instance == ".." || strings.ContainsAny(lc.instance, "/\x00") {
		return fmt.Errorf("--instance %q: want a name without slashes", lc.instance)
	}
	for _, f := range []struct {
		name string
		v    uint
	}{{"flow-table-size", lc.flowTable}, {"unconfirmed-table-size", lc.unconfirmedTable}} {
		if f.v < 1024 || f.v > 1<<26 {
			return fmt.Errorf("--%s %d: want 1024 to %d entries", f.name, f.v, 1<<26)
		}
	}
	for _, f := range []struct {
		name   string
		v, max uint
	}{{"max-services", lc.maxServices, loader.MaxServicesLimit}, {"max-real-servers", lc.maxReals, loader.MaxBackendsLimit}} {
		if f.v < 1 || f.v > f.max {
			return fmt.Errorf("--%s %d: want 1 to %d", f.name, f.v, f.max)
		}
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "socket" })
	if !set {
		*socket = control.SocketPath(lc.instance)
	}
	return nil
}

// notifyStopTimeout bounds how long shutdown waits for notify_stop scripts and queued alerts.
const notifyStopTimeout = 5 * time.Second

// startNotifier runs the notify scripts, notify FIFOs and SMTP alerts of the configuration.
func startNotifier(cfg *config.Config, log *slog.Logger) *notify.Notifier {
	return notify.New(cfg, notify.Options{Logger: log})
}

// stopNotifier reports STOP to the vrrp_instance notifies (the instances send no event once
// the daemon stops) and waits, for a bounded time, for what is queued.
func stopNotifier(n *notify.Notifier, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), notifyStopTimeout)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		log.Error("notify", "err", err)
	}
}
