package director

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

// VRRPInstance runs one vrrp_instance and reports its transitions; *vrrp.Instance implements it.
type VRRPInstance interface {
	Run(ctx context.Context) error
	Events() <-chan vrrp.Event
}

// vrrpStopTimeout bounds how long shutdown waits for instances to send priority 0 and remove
// their VIPs.
const vrrpStopTimeout = 5 * time.Second

// VRRPConfig maps a parsed vrrp_instance to the vrrp package's configuration, with keepalived's
// semantics: `state MASTER` does not make an instance master at start (keepalived 2.x waits for
// Master_Down_Interval unless the priority is 255), and mcast_src_ip stands in for
// unicast_src_ip as the advert source.
func VRRPConfig(in config.VRRPInstance, log *slog.Logger) vrrp.Config {
	c := vrrp.Config{
		Name:              in.Name,
		Interface:         in.Interface,
		VRID:              uint8(in.VirtualRouterID),
		Priority:          uint8(in.Priority),
		AdvertInterval:    in.AdvertInt,
		Version:           in.Version,
		NoPreempt:         in.NoPreempt,
		PreemptDelay:      in.PreemptDelay,
		VIPs:              in.VirtualAddresses,
		UnicastSrc:        in.UnicastSrcIP,
		GARPMasterDelay:   in.GARPMasterDelay,
		GARPMasterRepeat:  in.GARPMasterRepeat,
		GARPMasterRefresh: in.GARPMasterRefresh,
		Logger:            log,
	}
	if !c.UnicastSrc.IsValid() {
		c.UnicastSrc = in.McastSrcIP
	}
	if in.Auth != nil {
		c.AuthType, c.AuthPass = in.Auth.Type, in.Auth.Pass
	}
	for _, p := range in.UnicastPeers {
		c.UnicastPeers = append(c.UnicastPeers, p.Addr)
	}
	return c
}

// vrrpGroup runs the configured instances and merges their events into one channel.
type vrrpGroup struct {
	events chan vrrp.Event
	wg     sync.WaitGroup
	cfgs   []config.VRRPInstance
}

// startVRRP creates and starts one instance per vrrp_instance. An instance that cannot be
// created (no such interface, AH authentication) stops the start-up with its reason.
func startVRRP(ctx context.Context, cfg *config.Config, newVRRP func(config.VRRPInstance) (VRRPInstance, error), log *slog.Logger) (*vrrpGroup, error) {
	g := &vrrpGroup{events: make(chan vrrp.Event, 64), cfgs: cfg.VRRPInstances}
	var insts []VRRPInstance
	for _, c := range cfg.VRRPInstances {
		in, err := newVRRP(c)
		if err != nil {
			return nil, fmt.Errorf("start vrrp_instance %s: %w", c.Name, err)
		}
		insts = append(insts, in)
	}
	for _, in := range insts {
		g.wg.Add(2)
		go func() {
			defer g.wg.Done()
			if err := in.Run(ctx); err != nil {
				log.Error("vrrp instance stopped", "err", err)
			}
		}()
		// Drain the instance's events whatever happens: an instance blocks on a full channel,
		// and a blocked instance stops advertising.
		go func() {
			defer g.wg.Done()
			for ev := range in.Events() {
				select {
				case g.events <- ev:
				case <-ctx.Done():
				}
			}
		}()
	}
	return g, nil
}

// wait waits, for at most vrrpStopTimeout, for the instances to finish after their context
// ended: they send priority 0 and remove their VIPs on the way out.
func (g *vrrpGroup) wait(log *slog.Logger) {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(vrrpStopTimeout):
		log.Error("vrrp instances did not stop in time", "timeout", vrrpStopTimeout)
	}
}

// changed reports whether a reload changes the vrrp_instance blocks.
func (g *vrrpGroup) changed(next *config.Config) bool {
	return !reflect.DeepEqual(stripPos(g.cfgs), stripPos(next.VRRPInstances))
}

func stripPos(ins []config.VRRPInstance) []config.VRRPInstance {
	out := make([]config.VRRPInstance, len(ins))
	for i, in := range ins {
		in.Pos = config.Pos{}
		in.VIPs = append([]config.VirtualIP(nil), in.VIPs...)
		for j := range in.VIPs {
			in.VIPs[j].Pos = config.Pos{}
		}
		out[i] = in
	}
	return out
}

// owners maps each VIP a vrrp_instance covers to that instance's name.
func owners(cfg *config.Config) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, in := range cfg.VRRPInstances {
		for _, p := range in.VirtualAddresses {
			m[p.Addr()] = in.Name
		}
	}
	return m
}
