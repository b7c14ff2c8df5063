package vrrp

import "sync"

// SyncGroup is a vrrp_sync_group: instances that change state together, as keepalived 2.2
// moves them. A member in FAULT (its interface or a tracked object) puts every member in
// FAULT until it recovers; a master that yields to a higher priority takes the other masters
// to BACKUP with it; a backup whose Master_Down_Timer expires becomes master only when every
// other member wants to as well (or already is), and then takes them all to MASTER.
//
// Members report to the group and the group wakes the others, who act in their own
// goroutines: no member ever waits for another.
type SyncGroup struct {
	name string

	mu      sync.Mutex
	members map[*Instance]*syncMember
	// gen counts the group's orders; target is the last one (Master or Backup).
	gen    uint64
	target State
}

type syncMember struct {
	state State
	want  bool // a backup whose timer expired
	fault bool // in FAULT of its own (not because of the group)
	wake  chan struct{}
}

// NewSyncGroup returns an empty group; give it to each member's Config.Sync.
func NewSyncGroup(name string) *SyncGroup {
	return &SyncGroup{name: name, members: map[*Instance]*syncMember{}}
}

// Name returns the vrrp_sync_group's name.
func (g *SyncGroup) Name() string { return g.name }

// join adds a running member; its wake channel must have room for one value.
func (g *SyncGroup) join(in *Instance, wake chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members[in] = &syncMember{wake: wake}
}

// leave removes a stopped member; the others re-check their faults.
func (g *SyncGroup) leave(in *Instance) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[in]
	delete(g.members, in)
	if ok && m.fault {
		g.wakeOthers(in)
	}
}

// update records a member's state. moved is true when the member changed state by itself
// (not on the group's order): becoming MASTER takes the group to MASTER, leaving MASTER for
// BACKUP takes it to BACKUP. When it so gives an order it returns its number, which the
// member must not act on itself; else 0.
func (g *SyncGroup) update(in *Instance, st, prev State, want, fault, moved bool) (order uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[in]
	if !ok {
		return 0
	}
	wake := m.fault != fault
	m.state, m.want, m.fault = st, want, fault
	if moved && st != prev {
		switch {
		case st == Master:
			g.gen, g.target, wake, order = g.gen+1, Master, true, g.gen+1
		case st == Backup && prev == Master:
			g.gen, g.target, wake, order = g.gen+1, Backup, true, g.gen+1
		}
	}
	if wake {
		g.wakeOthers(in)
	}
	return order
}

// mayBeMaster records that in wants to become master and reports whether every other
// member wants to too or already is master (keepalived's vrrp_sync_can_goto_master).
func (g *SyncGroup) mayBeMaster(in *Instance) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[in]; ok {
		m.want = true
	}
	for o, m := range g.members {
		if o != in && m.state != Master && !m.want {
			return false
		}
	}
	return true
}

// faulted reports whether another member is in FAULT of its own.
func (g *SyncGroup) faulted(in *Instance) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for o, m := range g.members {
		if o != in && m.fault {
			return true
		}
	}
	return false
}

// order returns the group's last order.
func (g *SyncGroup) order() (uint64, State) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen, g.target
}

func (g *SyncGroup) wakeOthers(in *Instance) {
	for o, m := range g.members {
		if o == in {
			continue
		}
		select {
		case m.wake <- struct{}{}:
		default: // already woken: it reads the group's latest state
		}
	}
}
