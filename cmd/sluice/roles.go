package main

import (
	"context"
	"errors"
	"flag"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/director"
)

// role is the part of a configuration a daemon runs, chosen like keepalived's -P (--vrrp:
// VRRP only) and -C (--check: health checks and the data plane only).
type role struct{ vrrpOnly, checkOnly bool }

func addRoleFlags(fs *flag.FlagSet) *role {
	r := &role{}
	fs.BoolVar(&r.vrrpOnly, "P", false, "run VRRP only: no health checks, no data plane (keepalived -P, --vrrp)")
	fs.BoolVar(&r.checkOnly, "C", false, "run health checks and the data plane only: no VRRP (keepalived -C, --check)")
	return r
}

func (r role) validate() error {
	if r.vrrpOnly && r.checkOnly {
		return errors.New("-P (VRRP only) and -C (checks only) exclude each other; give neither to run both")
	}
	return nil
}

// apply returns the part of cfg this role runs. With -C the virtual servers are forwarded
// whatever VRRP says elsewhere: no vrrp_instance here gates them.
func (r role) apply(cfg *config.Config) *config.Config {
	if !r.vrrpOnly && !r.checkOnly {
		return cfg
	}
	c := *cfg
	if r.vrrpOnly {
		c.VirtualServers, c.OtherVirtualServers = nil, nil
	}
	if r.checkOnly {
		c.VRRPInstances, c.VRRPSyncGroups, c.VRRPScripts = nil, nil, nil
	}
	return &c
}

// noDataplane is the data plane of a VRRP-only daemon: there is nothing to forward.
type noDataplane struct{}

func (noDataplane) Apply(context.Context, director.Snapshot) error { return nil }
func (noDataplane) Close() error                                   { return nil }
func (noDataplane) TrafficStats() (director.TrafficStats, error) {
	return director.TrafficStats{}, nil
}
