package director

import (
	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

// Notifier is told about the transitions operators attach scripts, FIFOs and e-mail alerts to
// (keepalived's notify_*, notify_up/down, quorum_up/down, notify_fifo, smtp_alert). The director
// calls it from its own goroutine; implementations must not block it (run scripts and send
// mail in the background).
type Notifier interface {
	// VRRP reports an instance's transition (notify_master/backup/fault/stop, notify).
	VRRP(ev vrrp.Event)
	// RealServer reports a real server coming up or going down (notify_up/notify_down).
	RealServer(vs config.VirtualServer, rs config.RealServer, up bool)
	// Quorum reports a virtual server gaining or losing quorum (quorum_up/quorum_down).
	Quorum(vs config.VirtualServer, up bool)
}

// nopNotifier is the Notifier of a director whose Options have none.
type nopNotifier struct{}

func (nopNotifier) VRRP(vrrp.Event)                                          {}
func (nopNotifier) RealServer(config.VirtualServer, config.RealServer, bool) {}
func (nopNotifier) Quorum(config.VirtualServer, bool)                        {}
