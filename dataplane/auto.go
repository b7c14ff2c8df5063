// Package dataplane combines the XDP data plane with kernel IPVS per interface for
// `--dataplane auto`: services on an interface the XDP program cannot attach to are served by
// IPVS while the other interfaces keep XDP.
package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
)

// Forwarder is a data plane that forwards and counts its traffic.
type Forwarder interface {
	director.Dataplane
	director.StatsReader
}

// Options configures New.
type Options struct {
	// Logger receives one line per interface handed to IPVS; nil means slog.Default().
	Logger *slog.Logger
	// XDP is the XDP data plane; its Apply reports interfaces it cannot attach to as
	// *loader.AttachError.
	XDP Forwarder
	// OpenFallback opens kernel IPVS. Auto calls it once, when an interface first fails.
	OpenFallback func() (Forwarder, error)
}

// Failure is an interface the XDP program could not attach to, and who serves its services.
type Failure struct {
	Ifindex int
	Name    string
	// Reason is the attach error.
	Reason string
	// Services are the services moved off XDP because of this interface, sorted.
	Services []director.ServiceKey
	// FallbackErr is why IPVS cannot serve them either; empty when IPVS serves them.
	FallbackErr string
}

// Auto forwards with XDP and moves the services of each interface XDP cannot attach to onto
// kernel IPVS, opened only when the first such interface appears. A moved service stays on
// IPVS until it leaves the configuration or the daemon restarts.
type Auto struct {
	log    *slog.Logger
	xdp    Forwarder
	openFB func() (Forwarder, error)

	mu     sync.Mutex
	closed bool
	fb     Forwarder // nil until needed, or when it cannot open
	fbErr  error     // why fb cannot open, once tried
	failed map[int]*Failure
	moved  map[director.ServiceKey]int  // moved service -> the failed ifindex that moved it
	kinds  map[director.ServiceKey]bool // fwmark and SCTP services already logged as on IPVS
}

var (
	_ Forwarder          = (*Auto)(nil)
	_ director.Explainer = (*Auto)(nil)
)

// New returns an Auto over opts.XDP.
func New(opts Options) *Auto {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Auto{log: log, xdp: opts.XDP, openFB: opts.OpenFallback,
		failed: map[int]*Failure{}, moved: map[director.ServiceKey]int{}, kinds: map[director.ServiceKey]bool{}}
}

// XDP returns the XDP data plane Auto wraps.
func (a *Auto) XDP() Forwarder { return a.xdp }

// Apply hands s to XDP, moves the services of interfaces it cannot attach to onto IPVS with one
// log line per interface, and hands IPVS its share. Attach failures it handled are not in the
// returned error; everything else either data plane reports is.
func (a *Auto) Apply(ctx context.Context, s director.Snapshot) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("apply snapshot: data plane is closed")
	}
	present := make(map[director.ServiceKey]bool, len(s.Services))
	for _, svc := range s.Services {
		present[svc.Key] = true
	}
	for k, ifindex := range a.moved {
		if !present[k] {
			delete(a.moved, k)
			a.forget(ifindex, k)
		}
	}

	xs, fs := a.split(s)
	failures, rest := takeAttachErrors(a.xdp.Apply(ctx, xs))
	if len(failures) > 0 {
		for _, ae := range failures {
			a.fail(ae)
		}
		xs, fs = a.split(s)
		// XDP now holds only what it serves; a second failure here is an interface that failed
		// anew, reported as an error and retried next time.
		rest = a.xdp.Apply(ctx, xs)
	}
	errs := []error{rest}
	if len(fs.Services) > 0 || a.fb != nil {
		errs = append(errs, a.applyFallback(ctx, fs))
	}
	return errors.Join(errs...)
}

// split divides s into what XDP serves and what IPVS serves.
func (a *Auto) split(s director.Snapshot) (xdp, fb director.Snapshot) {
	xdp.Timeouts, fb.Timeouts = s.Timeouts, s.Timeouts
	for _, svc := range s.Services {
		_, moved := a.moved[svc.Key]
		if !moved && ipvsOnly(svc.Key) && a.ensureFallback() == nil {
			moved = true
			if !a.kinds[svc.Key] {
				a.kinds[svc.Key] = true
				a.log.Info("serving with kernel IPVS: XDP cannot serve this kind of service", "service", svc.Key)
			}
		}
		if moved {
			fb.Services = append(fb.Services, svc)
		} else {
			xdp.Services = append(xdp.Services, svc)
		}
	}
	return xdp, fb
}

// ipvsOnly reports whether XDP cannot serve k at all: it runs before netfilter marks packets
// (fwmark services) and has no SCTP. Auto hands such services to IPVS when IPVS opens; when
// it does not, XDP refuses them with ErrUnsupported and serves the rest.
func ipvsOnly(k director.ServiceKey) bool { return k.FWMark != 0 || k.Proto == director.SCTP }

// fail records an interface XDP cannot attach to and moves its services.
func (a *Auto) fail(ae *loader.AttachError) {
	f := a.failed[ae.Ifindex]
	if f == nil {
		f = &Failure{Ifindex: ae.Ifindex}
		a.failed[ae.Ifindex] = f
	}
	f.Name, f.Reason = ae.Name, ae.Err.Error()
	for _, k := range ae.Services {
		if _, ok := a.moved[k]; ok {
			continue
		}
		a.moved[k] = ae.Ifindex
		f.Services = append(f.Services, k)
	}
	slices.SortFunc(f.Services, compareKeys)
	fbErr := a.ensureFallback()
	names := make([]string, len(ae.Services))
	for i, k := range ae.Services {
		names[i] = k.String()
	}
	if fbErr != nil {
		f.FallbackErr = fbErr.Error()
		a.log.Error("XDP cannot attach to interface and kernel IPVS is unavailable: its services are not served",
			"interface", ae.Name, "reason", ae.Err, "ipvs_err", fbErr, "services", strings.Join(names, ", "))
		return
	}
	a.log.Warn("XDP cannot attach to interface, serving its services with kernel IPVS",
		"interface", ae.Name, "reason", ae.Err, "services", strings.Join(names, ", "))
}

// forget drops a service that left the configuration from the failure that moved it, and the
// failure once it moves nothing.
func (a *Auto) forget(ifindex int, k director.ServiceKey) {
	f := a.failed[ifindex]
	if f == nil {
		return
	}
	f.Services = slices.DeleteFunc(f.Services, func(x director.ServiceKey) bool { return x == k })
	if len(f.Services) == 0 {
		delete(a.failed, ifindex)
	}
}

// ensureFallback opens IPVS the first time it is needed; a failure to open is remembered.
func (a *Auto) ensureFallback() error {
	if a.fb != nil || a.fbErr != nil {
		return a.fbErr
	}
	if a.openFB == nil {
		a.fbErr = errors.New("no fallback data plane")
		return a.fbErr
	}
	fb, err := a.openFB()
	if err != nil {
		a.fbErr = err
		return err
	}
	a.fb = fb
	return nil
}

// applyFallback hands IPVS its share, or says why those services are not served.
func (a *Auto) applyFallback(ctx context.Context, fs director.Snapshot) error {
	if err := a.ensureFallback(); err != nil {
		return fmt.Errorf("%d service(s) on interfaces without XDP are not served: ipvs: %w", len(fs.Services), err)
	}
	if err := a.fb.Apply(ctx, fs); err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	return nil
}

// takeAttachErrors separates the *loader.AttachError in err (a tree of joined errors) from
// the rest.
func takeAttachErrors(err error) (attach []*loader.AttachError, rest error) {
	if err == nil {
		return nil, nil
	}
	if ae, ok := err.(*loader.AttachError); ok {
		return []*loader.AttachError{ae}, nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil, err
	}
	var others []error
	for _, e := range j.Unwrap() {
		as, r := takeAttachErrors(e)
		if r != nil {
			others = append(others, r)
		}
		attach = append(attach, as...)
	}
	return attach, errors.Join(others...)
}

// Failures lists the interfaces XDP could not attach to, by ifindex, for sluice status.
func (a *Auto) Failures() []Failure {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Failure, 0, len(a.failed))
	for _, ifindex := range slices.Sorted(maps.Keys(a.failed)) {
		f := *a.failed[ifindex]
		f.Services = slices.Clone(f.Services)
		out = append(out, f)
	}
	return out
}

// TrafficStats is XDP's counters with IPVS's for the services IPVS serves.
func (a *Auto) TrafficStats() (director.TrafficStats, error) {
	a.mu.Lock()
	fb, moved := a.fb, maps.Clone(a.moved)
	a.mu.Unlock()
	ts, err := a.xdp.TrafficStats()
	if err != nil {
		return director.TrafficStats{}, err
	}
	if fb == nil || len(moved) == 0 {
		return ts, nil
	}
	fs, err := fb.TrafficStats()
	if err != nil {
		return director.TrafficStats{}, fmt.Errorf("ipvs: %w", err)
	}
	if ts.Services == nil {
		ts.Services = map[director.ServiceKey]director.Counters{}
	}
	if ts.Backends == nil {
		ts.Backends = map[director.ServiceKey]map[netip.AddrPort]director.Counters{}
	}
	for k := range moved {
		if c, ok := fs.Services[k]; ok {
			ts.Services[k] = c
		}
		if b, ok := fs.Backends[k]; ok {
			ts.Backends[k] = b
		}
	}
	return ts, nil
}

// Explain asks the data plane serving dst.
func (a *Auto) Explain(proto director.Proto, src, dst netip.AddrPort) (director.Explanation, error) {
	a.mu.Lock()
	var dp any = a.xdp
	if a.fb != nil {
		for k := range a.moved {
			if k.FWMark == 0 && k.Proto == proto && k.VIP == dst.Addr() && (k.Port == dst.Port() || k.Port == 0) {
				dp = a.fb
				break
			}
		}
	}
	a.mu.Unlock()
	xp, ok := dp.(director.Explainer)
	if !ok {
		return director.Explanation{}, fmt.Errorf("explain %s %s: %w", proto, dst, director.ErrUnsupported)
	}
	return xp.Explain(proto, src, dst)
}

// Close closes both data planes.
func (a *Auto) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	errs := []error{a.xdp.Close()}
	if a.fb != nil {
		errs = append(errs, a.fb.Close())
	}
	return errors.Join(errs...)
}

func compareKeys(a, b director.ServiceKey) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.FWMark, b.FWMark))
}
