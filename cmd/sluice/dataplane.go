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
func validDataplane(name string) bool { return name == "xdp" || name == "ipvs" }

// openDataplane opens the data plane --dataplane names: openXDP for xdp, kernel IPVS for ipvs.
// Choosing automatically (XDP, else IPVS) is issue 8's next step.
func openDataplane(name string, log *slog.Logger, openXDP func() (forwarder, error)) (forwarder, error) {
	switch name {
	case "xdp":
		return openXDP()
	case "ipvs":
		dp, err := ipvsfallback.New(ipvsfallback.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		log.Info("data plane: kernel IPVS")
		return dp, nil
	}
	return nil, fmt.Errorf("unknown data plane %q (want xdp or ipvs)", name)
}
