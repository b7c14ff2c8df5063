package main

import (
	"fmt"
	"log/slog"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
)

// forwarder is what run needs of a data plane: forwarding and traffic counters.
type forwarder interface {
	director.Dataplane
	director.StatsReader
}

// validDataplane reports whether name is a value of run's --dataplane flag.
func validDataplane(name string) bool { return name == "auto" || name == "xdp" || name == "ipvs" }

// openIPVS opens kernel IPVS.
func openIPVS(log *slog.Logger) (forwarder, error) {
	return ipvsfallback.New(ipvsfallback.Options{Logger: log})
}

// openDataplane opens the data plane --dataplane names and says which one it opened and why:
// xdp, ipvs, or auto, which takes XDP and falls back to kernel IPVS when the XDP program cannot
// be loaded (no BPF in the kernel, no privilege for it), logging the reason in one line. Failures
// to attach XDP to an interface surface later, when the first snapshot is applied, and do not
// fall back yet.
func openDataplane(name string, log *slog.Logger, openXDP, openIPVS func() (forwarder, error)) (forwarder, string, error) {
	switch name {
	case "xdp":
		dp, err := openXDP()
		return dp, "xdp", err
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
			return dp, "xdp", nil
		}
		dp, ierr := openIPVS()
		if ierr != nil {
			return nil, "", fmt.Errorf("no data plane can run: xdp: %v; ipvs: %w", xerr, ierr)
		}
		log.Warn("XDP is unavailable, forwarding with kernel IPVS instead", "reason", xerr)
		return dp, fmt.Sprintf("ipvs (auto: XDP unavailable: %v)", xerr), nil
	}
	return nil, "", fmt.Errorf("unknown data plane %q (want auto, xdp or ipvs)", name)
}
