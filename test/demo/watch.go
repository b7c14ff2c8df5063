package main

import (
	"context"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
)

// world is what the demo observes of the directors, a few times per second.
type world struct {
	observed  bool // false until the first observation
	directors [2]directorState
	// clientVia is the director the client's ARP entry for the VIP points at, -1 for none.
	clientVia int
}

// directorState is one director as its daemon (over the control socket) and its interface show it.
type directorState struct {
	running bool
	vrrp    string // MASTER, BACKUP, ...; "" when the control socket does not answer
	vip     bool   // the VIP is on its interface
	healthy map[string]bool
	weights map[string]int
}

// master returns the director whose daemon says it is MASTER, -1 if none or both.
func (w world) master() int {
	m := -1
	for i, d := range w.directors {
		if d.vrrp == "MASTER" {
			if m >= 0 {
				return -1
			}
			m = i
		}
	}
	return m
}

// reporter returns the director whose view of the real servers the demo shows: the MASTER's,
// else the first that answers.
func (w world) reporter() int {
	if m := w.master(); m >= 0 {
		return m
	}
	for i, d := range w.directors {
		if d.vrrp != "" {
			return i
		}
	}
	return -1
}

// health is "up" or "down" as the reporting director's checker sees the real server, "?" when
// no director answers.
func (w world) health(name string) string {
	r := w.reporter()
	if r < 0 {
		return "?"
	}
	healthy, ok := w.directors[r].healthy[name]
	switch {
	case !ok:
		return "?"
	case healthy:
		return "up"
	default:
		return "down"
	}
}

// weight is the real server's weight in the reporting director's running config, 0 if unknown.
func (w world) weight(name string) int {
	r := w.reporter()
	if r < 0 {
		return 0
	}
	return w.directors[r].weights[name]
}

// watch refreshes d.world every 200 ms until ctx ends, and adds an event for every change of
// VRRP state, VIP holder, client ARP entry and real-server health it sees.
func (d *demo) watch(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		w := d.observe(ctx)
		d.mu.Lock()
		old := d.world
		d.world = w
		d.mu.Unlock()
		d.changes(old, w)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// observe asks both daemons for their status and reads who holds the VIP and where the client's
// ARP entry for it points.
func (d *demo) observe(ctx context.Context) world {
	w := world{observed: true, clientVia: -1}
	names := map[string]string{} // real server address -> name
	for _, rs := range d.lab.RealServers {
		names[rs.Addr.String()] = rs.Name
	}
	for i, dir := range d.dirs {
		s := &w.directors[i]
		s.running = dir.running()
		if !s.running {
			continue
		}
		st, err := dir.status(ctx)
		if err != nil {
			continue
		}
		s.vrrp = vrrpState(st)
		s.healthy, s.weights = map[string]bool{}, map[string]int{}
		for _, svc := range st.Services {
			for _, r := range svc.RealServers {
				name := names[r.Address.String()]
				s.healthy[name] = r.Healthy
				s.weights[name] = r.Weight
			}
		}
	}
	if holders, err := d.lab.VIPHolders(); err == nil {
		for _, i := range holders {
			w.directors[i].vip = true
		}
	}
	if mac, err := d.lab.ClientVIPMAC(); err == nil && mac != "" {
		for i, ns := range d.lab.Directors {
			if hw, err := ns.HardwareAddr(lab.Iface); err == nil && hw == mac {
				w.clientVia = i
			}
		}
	}
	return w
}

func vrrpState(st *control.Status) string {
	if len(st.VRRP) == 0 {
		return "none"
	}
	return st.VRRP[0].State
}

// changes adds an event for each difference between two observations. The start printed the
// first state already.
func (d *demo) changes(old, w world) {
	if !old.observed {
		return
	}
	for i := range w.directors {
		o, n := old.directors[i], w.directors[i]
		name := d.dirs[i].name
		if o.vrrp != n.vrrp && n.vrrp != "" {
			d.event("%s: VRRP %s", name, n.vrrp)
		}
		if o.vip != n.vip {
			if n.vip {
				d.event("%s: VIP %s added to its interface", name, lab.VIP)
			} else {
				d.event("%s: VIP removed from its interface", name)
			}
		}
		for _, rs := range d.lab.RealServers {
			was, okOld := o.healthy[rs.Name]
			is, okNew := n.healthy[rs.Name]
			switch {
			case okOld && okNew && was && !is:
				d.event("%s: %s failed its check: out of rotation", name, rs.Name)
			case okOld && okNew && !was && is:
				d.event("%s: %s passed its check: back in rotation", name, rs.Name)
			}
			if wo, wn := o.weights[rs.Name], n.weights[rs.Name]; wo != 0 && wn != 0 && wo != wn {
				d.event("%s: %s weight %d -> %d", name, rs.Name, wo, wn)
			}
		}
	}
	if old.clientVia != w.clientVia && w.clientVia >= 0 {
		d.event("client: ARP entry for the VIP now points at %s", d.dirs[w.clientVia].name)
	}
}
