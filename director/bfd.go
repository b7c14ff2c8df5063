package director

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/bfd"
	"github.com/sluice-lb/sluice/config"
)

// bfdSessions runs the bfd_instances of the configuration for BFD_CHECK. There is one per
// process, as keepalived has one BFD process: the sockets (UDP 3784 and 4784) are the host's.
var bfdSessions = &bfdRunner{}

// bfdRunner runs one bfd.Manager for the latest set of instances.
type bfdRunner struct {
	mu        sync.Mutex
	instances []bfd.Instance
	m         *bfd.Manager
	cancel    context.CancelFunc
	done      chan struct{}
}

// BFDUp reports the state of the named session (health.BFDStates).
func (r *bfdRunner) BFDUp(name string) (up, known bool) {
	r.mu.Lock()
	m := r.m
	r.mu.Unlock()
	if m == nil {
		return false, false
	}
	return m.BFDUp(name)
}

// bfdInstances converts the configuration's bfd_instances.
func bfdInstances(cfg *config.Config) []bfd.Instance {
	var out []bfd.Instance
	for _, b := range cfg.BFDInstances {
		ttl := b.TTL
		if b.Neighbor.Is6() {
			ttl = b.HopLimit
		}
		out = append(out, bfd.Instance{Name: b.Name, Neighbor: b.Neighbor, Source: b.Source,
			MinRx: b.MinRx, MinTx: b.MinTx, IdleTx: b.IdleTx, Multiplier: uint8(b.Multiplier),
			Passive: b.Passive, TTL: uint8(ttl), MaxHops: uint8(b.MaxHops)})
	}
	return out
}

// update runs the sessions of cfg, restarting them only when the instances changed.
func (r *bfdRunner) update(cfg *config.Config, log *slog.Logger) {
	want := bfdInstances(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m != nil && slices.Equal(want, r.instances) {
		return
	}
	r.stopLocked()
	r.instances = want
	if len(want) == 0 {
		return
	}
	m, err := bfd.NewManager(want, bfd.WithManagerLogger(log))
	if err != nil {
		log.Error("bfd_instance sessions not started; their BFD_CHECKs fail", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.m, r.cancel, r.done = m, cancel, done
	go func() {
		defer close(done)
		// A busy port (another BFD daemon) is retried; the sessions stay Down meanwhile.
		for {
			err := m.Open()
			if err == nil {
				m.Run(ctx)
				return
			}
			log.Error("cannot open bfd sockets; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
}

// stop ends the sessions, telling the peers AdminDown.
func (r *bfdRunner) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
	r.instances = nil
}

func (r *bfdRunner) stopLocked() {
	if r.m == nil {
		return
	}
	r.cancel()
	<-r.done
	r.m, r.cancel, r.done = nil, nil, nil
}
