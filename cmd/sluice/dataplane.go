package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
	"github.com/sluice-lb/sluice/loader"
)

// forwarder is what run needs of a data plane: forwarding and traffic counters.
type forwarder interface {
	director.Dataplane
	director.StatsReader
}

// validDataplane reports whether name is a value of run's --dataplane flag.
func validDataplane(name string) bool {
	return name == "auto" || name == "xdp" || name == "xdp-generic" || name == "ipvs"
}

// xdpOpener returns what opens the XDP data plane for run's flags: pinned in the instance's
// directory, generic XDP everywhere with --dataplane xdp-generic, left in place on SIGTERM with
// --dont-release-dataplane.
func xdpOpener(log *slog.Logger, dataplane string, lc *lifecycleFlags) func() (forwarder, error) {
	return func() (forwarder, error) {
		return loader.New(loader.Options{Logger: log, PinDir: loader.PinPath(lc.instance),
			KeepOnClose: lc.dontRelease, Generic: dataplane == "xdp-generic",
			FlowTableSize: uint32(lc.flowTable), UnconfirmedTableSize: uint32(lc.unconfirmedTable),
			MaxServices: uint32(lc.maxServices), MaxBackends: uint32(lc.maxReals)})
	}
}

// dataplaneInterfaces returns what lists the interfaces the XDP data plane runs on and in which
// mode, for sluice status, and under --dataplane auto the interfaces XDP could not attach to,
// served by IPVS; nil for other data planes.
func dataplaneInterfaces(dp forwarder) func() []control.Interface {
	auto, _ := dp.(*dataplane.Auto)
	if auto != nil {
		dp, _ = auto.XDP().(forwarder)
	}
	ld, ok := dp.(*loader.Loader)
	if !ok {
		return nil
	}
	return func() []control.Interface {
		var out []control.Interface
		for _, a := range ld.Attachments() {
			name := a.Name
			if name == "" {
				name = fmt.Sprintf("ifindex %d", a.Ifindex)
			}
			out = append(out, control.Interface{Name: name, Mode: "xdp " + a.Mode, Reason: a.Reason})
		}
		if auto != nil {
			out = append(out, failedInterfaces(auto.Failures())...)
		}
		return out
	}
}

// failedInterfaces says who serves each interface XDP could not attach to: IPVS, or nothing when
// IPVS cannot open either.
func failedInterfaces(fs []dataplane.Failure) []control.Interface {
	var out []control.Interface
	for _, f := range fs {
		name := f.Name
		if name == "" {
			name = fmt.Sprintf("ifindex %d", f.Ifindex)
		}
		i := control.Interface{Name: name, Mode: "ipvs", Reason: "auto: XDP cannot attach: " + f.Reason}
		if f.FallbackErr != "" {
			i.Mode = "none"
			i.Reason += "; IPVS unavailable: " + f.FallbackErr
		}
		out = append(out, i)
	}
	return out
}

// openIPVS opens kernel IPVS.
func openIPVS(log *slog.Logger) (forwarder, error) {
	return ipvsfallback.New(ipvsfallback.Options{Logger: log})
}

// openDataplane opens the data plane --dataplane names and says which one it opened and why:
// xdp, xdp-generic (XDP in generic mode on every interface), ipvs, or auto, which takes XDP and
// falls back to kernel IPVS when the XDP program cannot be loaded (no BPF in the kernel, no
// privilege for it), logging the reason in one line. An interface where native XDP cannot
// attach gets generic XDP; one where neither can has its services served by IPVS, opened then
// (dataplane.Auto), both logged when a snapshot is applied.
func openDataplane(name string, log *slog.Logger, openXDP, openIPVS func() (forwarder, error)) (forwarder, string, error) {
	switch name {
	case "xdp", "xdp-generic":
		dp, err := openXDP()
		return dp, name, err
	case "ipvs":
		dp, err := openIPVS()
		if err != nil {
			return nil, "", err
		}
		log.Info("data plane: kernel IPVS")
		return dp, "ipvs", nil
	case "auto":
		dp, xerr := openXDP()
		if xerr == nil {
			auto := dataplane.New(dataplane.Options{Logger: log, XDP: dp,
				OpenFallback: func() (dataplane.Forwarder, error) { return openIPVS() }})
			// "xdp": interfaces XDP cannot attach to are listed with their own line in status.
			return auto, "xdp", nil
		}
		if errors.Is(xerr, loader.ErrInUse) {
			// Another daemon forwards for this instance: IPVS alongside it would fight it.
			return nil, "", xerr
		}
		dp, ierr := openIPVS()
		if ierr != nil {
			return nil, "", fmt.Errorf("no data plane can run: xdp: %v; ipvs: %w", xerr, ierr)
		}
		log.Warn("XDP is unavailable, forwarding with kernel IPVS instead", "reason", xerr)
		return dp, fmt.Sprintf("ipvs (auto: XDP unavailable: %v)", xerr), nil
	}
	return nil, "", fmt.Errorf("unknown data plane %q (want auto, xdp, xdp-generic or ipvs)", name)
}
