package vrrp

import (
	"net/netip"
	"time"
)

// State is the state of a virtual router.
type State int

// The states of RFC 5798 section 6.4, and keepalived's FAULT: the interface is down.
const (
	Initialize State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return "UNKNOWN"
}

// PriorityOwner is the priority of the router that owns the virtual addresses; it is master
// as soon as it starts.
const PriorityOwner = 255

// PriorityRelease is sent by a master that stops, so a backup takes over after Skew_Time
// instead of Master_Down_Interval.
const PriorityRelease = 0

// SkewTime is RFC 5798's Skew_Time: ((256 - priority) * Master_Adver_Interval) / 256 for
// VRRPv3; (256 - priority) / 256 seconds for VRRPv2 (RFC 3768). It is kept to the
// nanosecond, as keepalived keeps it to the microsecond, rather than rounded to centiseconds.
func SkewTime(version int, priority uint8, masterAdverInterval time.Duration) time.Duration {
	if version == 2 {
		masterAdverInterval = time.Second
	}
	return time.Duration(256-int64(priority)) * masterAdverInterval / 256
}

// MasterDownInterval is 3 * Master_Adver_Interval + Skew_Time: how long a backup waits
// without adverts before it becomes master.
func MasterDownInterval(version int, priority uint8, masterAdverInterval time.Duration) time.Duration {
	return 3*masterAdverInterval + SkewTime(version, priority, masterAdverInterval)
}

// FSMConfig is what the state machine needs to know of an instance.
type FSMConfig struct {
	// Version is 2 or 3.
	Version int
	// Priority is 1-255; 255 marks the address owner.
	Priority uint8
	// Interval is this router's advertisement interval.
	Interval time.Duration
	// StartMaster takes over at start instead of waiting Master_Down_Interval (a better
	// master's advert then demotes it), as keepalived 1.x did for `state MASTER`. keepalived
	// 2.x ignores `state MASTER` unless the priority is 255, so the config mapping leaves it
	// false; the owner is master at start either way.
	StartMaster bool
	// NoPreempt keeps a higher-priority backup from taking over from a live master.
	NoPreempt bool
	// PreemptDelay is keepalived's preempt_delay: after startup or a higher-priority advert,
	// a lower-priority master is still accepted for this long.
	PreemptDelay time.Duration
	// Primary is this router's address in adverts, which breaks ties of equal priority.
	Primary netip.Addr
	// GARPDelay is garp_master_delay: a second burst of announcements this long after
	// becoming master (0: none).
	GARPDelay time.Duration
	// GARPRefresh is garp_master_refresh: announce every so often while master (0: never).
	GARPRefresh time.Duration
	// HigherPrioSendAdvert is keepalived's higher_prio_send_advert: a master that yields to
	// a higher priority first sends one advert of its own, so a winner that did not know of
	// the split brain hears a lower-priority master and re-announces its addresses.
	HigherPrioSendAdvert bool
	// Synced marks a member of a vrrp_sync_group: a backup whose Master_Down_Timer expires
	// does not become master on its own but reports WantMaster and waits another
	// Master_Down_Interval, until the group (keepalived: when every member wants to) moves
	// it with ForceMaster.
	Synced bool
}

// Advert is what the state machine uses of a received, validated advertisement.
type Advert struct {
	Src      netip.Addr
	Priority uint8
	Interval time.Duration
}

// Actions tells the caller what to do after an input to the FSM; several may be set.
type Actions struct {
	// SendAdvert: send an advertisement with the configured priority.
	SendAdvert bool
	// SendRelease: send an advertisement with priority 0.
	SendRelease bool
	// AddVIPs and DelVIPs: configure or remove the virtual addresses.
	AddVIPs bool
	DelVIPs bool
	// Announce: send gratuitous ARPs / unsolicited NAs for the virtual addresses.
	Announce bool
	// WantMaster: a Synced backup's Master_Down_Timer expired; ask the sync group.
	WantMaster bool
}

// FSM is the VRRP state machine of RFC 5798 section 6.4 with RFC 9568's clarifications and
// keepalived's nopreempt and preempt_delay. It never reads a clock: every input carries the
// time, and Deadline says when Tick must next be called.
type FSM struct {
	cfg   FSMConfig
	state State

	masterAdverInterval time.Duration
	adverAt             time.Time // master: next advert
	downAt              time.Time // backup: Master_Down_Timer expiry
	garpAt              time.Time // master: delayed announcement burst
	refreshAt           time.Time // master: periodic announcement
	preemptAt           time.Time // backup with preempt_delay: lower-priority masters accepted until then
	wantMaster          bool      // Synced backup: the timer expired and no master was heard since
}

// NewFSM returns a state machine in Initialize.
func NewFSM(cfg FSMConfig) *FSM {
	return &FSM{cfg: cfg, masterAdverInterval: cfg.Interval}
}

// State returns the current state.
func (f *FSM) State() State { return f.state }

// Priority returns the priority the router runs with: the configured one, or the effective
// one tracking last set.
func (f *FSM) Priority() uint8 { return f.cfg.Priority }

// SetPriority changes the priority (tracking's effective priority). Adverts carry it from the
// next one on, and the takeover rules use it at once: a backup now above the master ignores
// its adverts and takes over when Master_Down_Timer runs out (unless nopreempt), a master
// now below a backup is taken over by it. Timers already running keep their expiry.
func (f *FSM) SetPriority(p uint8) {
	if p != 0 {
		f.cfg.Priority = p
	}
}

// WantsMaster reports whether a Synced backup's timer expired with no master heard since.
func (f *FSM) WantsMaster() bool { return f.state == Backup && f.wantMaster }

// MasterAdverInterval is the interval learned from the master (VRRPv3) or configured.
func (f *FSM) MasterAdverInterval() time.Duration { return f.masterAdverInterval }

// Deadline returns when Tick must next be called; zero when no timer runs.
func (f *FSM) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{f.adverAt, f.downAt, f.garpAt, f.refreshAt} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

func (f *FSM) masterDown() time.Duration {
	return MasterDownInterval(f.cfg.Version, f.cfg.Priority, f.masterAdverInterval)
}

func (f *FSM) skew() time.Duration {
	return SkewTime(f.cfg.Version, f.cfg.Priority, f.masterAdverInterval)
}

// Start leaves Initialize: the owner (and keepalived's `state MASTER`) becomes master, any
// other router backup.
func (f *FSM) Start(now time.Time) Actions {
	if f.state != Initialize {
		return Actions{}
	}
	if f.cfg.Priority == PriorityOwner || f.cfg.StartMaster {
		return f.becomeMaster(now)
	}
	f.becomeBackup(now)
	// A previous run killed while MASTER may have left the VIPs on the interface; keepalived
	// removes them when it starts as BACKUP, so the node does not answer for addresses it
	// does not own.
	return Actions{DelVIPs: true}
}

func (f *FSM) becomeMaster(now time.Time) Actions {
	f.state = Master
	f.wantMaster = false
	f.downAt = time.Time{}
	f.adverAt = now.Add(f.cfg.Interval)
	f.garpAt, f.refreshAt = time.Time{}, time.Time{}
	if f.cfg.GARPDelay > 0 {
		f.garpAt = now.Add(f.cfg.GARPDelay)
	}
	if f.cfg.GARPRefresh > 0 {
		f.refreshAt = now.Add(f.cfg.GARPRefresh)
	}
	return Actions{SendAdvert: true, AddVIPs: true, Announce: true}
}

func (f *FSM) becomeBackup(now time.Time) {
	f.state = Backup
	f.adverAt, f.garpAt, f.refreshAt = time.Time{}, time.Time{}, time.Time{}
	f.downAt = now.Add(f.masterDown())
}

// Receive feeds an advertisement that passed every receive check.
func (f *FSM) Receive(now time.Time, a Advert) Actions {
	switch f.state {
	case Backup:
		if a.Priority == PriorityRelease {
			f.downAt = now.Add(f.skew())
			return Actions{}
		}
		delaying := f.cfg.PreemptDelay > 0 && (f.preemptAt.IsZero() || f.preemptAt.After(now))
		if f.cfg.NoPreempt || a.Priority >= f.cfg.Priority || delaying {
			if f.cfg.PreemptDelay > 0 {
				// As keepalived: a better master restarts the delay, the first worse one starts it.
				if a.Priority > f.cfg.Priority || f.preemptAt.IsZero() {
					f.preemptAt = now.Add(f.cfg.PreemptDelay)
				}
			}
			if f.cfg.Version == 3 {
				f.masterAdverInterval = a.Interval
			}
			f.downAt = now.Add(f.masterDown())
			f.wantMaster = false
		}
		// Else a lower-priority master while we may preempt: ignore it and let the timer run out.
		return Actions{}
	case Master:
		if a.Priority == PriorityRelease {
			f.adverAt = now.Add(f.cfg.Interval)
			return Actions{SendAdvert: true}
		}
		if a.Priority > f.cfg.Priority || a.Priority == f.cfg.Priority && a.Src.Compare(f.cfg.Primary) > 0 {
			if f.cfg.Version == 3 {
				f.masterAdverInterval = a.Interval
			}
			f.becomeBackup(now)
			return Actions{DelVIPs: true, SendAdvert: f.cfg.HigherPrioSendAdvert}
		}
		// A lower-priority master: it missed us (split brain); assert ourselves and fix the
		// ARP caches it may have taken over. The VIPs are re-added too: a link that went
		// down took the IPv6 ones with it.
		f.adverAt = now.Add(f.cfg.Interval)
		return Actions{SendAdvert: true, AddVIPs: true, Announce: true}
	}
	return Actions{}
}

// Tick fires the timers that expired by now.
func (f *FSM) Tick(now time.Time) Actions {
	var a Actions
	switch f.state {
	case Backup:
		if !f.downAt.IsZero() && !now.Before(f.downAt) {
			f.masterAdverInterval = f.cfg.Interval
			if f.cfg.Synced {
				// keepalived's vrrp_sync_can_goto_master: prefer backup to thrashing.
				f.wantMaster = true
				f.downAt = now.Add(f.masterDown())
				return Actions{WantMaster: true}
			}
			a = f.becomeMaster(now)
		}
	case Master:
		if !now.Before(f.adverAt) {
			a.SendAdvert = true
			f.adverAt = now.Add(f.cfg.Interval)
		}
		if !f.garpAt.IsZero() && !now.Before(f.garpAt) {
			a.Announce = true
			f.garpAt = time.Time{}
		}
		if !f.refreshAt.IsZero() && !now.Before(f.refreshAt) {
			a.Announce = true
			f.refreshAt = now.Add(f.cfg.GARPRefresh)
		}
	}
	return a
}

// LinkDown enters FAULT because the interface went down; see Fault.
func (f *FSM) LinkDown(now time.Time) Actions { return f.Fault(now) }

// LinkUp leaves FAULT because the interface came back; see Unfault.
func (f *FSM) LinkUp(now time.Time) Actions { return f.Unfault(now) }

// ForceMaster makes a backup master at once: its sync group moves together.
func (f *FSM) ForceMaster(now time.Time) Actions {
	if f.state != Backup {
		return Actions{}
	}
	f.masterAdverInterval = f.cfg.Interval
	return f.becomeMaster(now)
}

// ForceBackup makes a master backup at once, giving up its addresses: another member of
// its sync group yielded to a higher-priority master.
func (f *FSM) ForceBackup(now time.Time) Actions {
	if f.state != Master {
		return Actions{}
	}
	f.becomeBackup(now)
	return Actions{DelVIPs: true}
}

// Fault enters FAULT (the interface is down, a tracked object failed, or a member of the
// sync group is in FAULT): the router cannot or must not serve, so a master gives up its
// addresses (a backup on the link takes over after Master_Down_Interval) and no timer runs.
func (f *FSM) Fault(now time.Time) Actions {
	was := f.state
	f.wantMaster = false
	f.state = Fault
	f.adverAt, f.downAt, f.garpAt, f.refreshAt, f.preemptAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if was == Master {
		return Actions{DelVIPs: true}
	}
	return Actions{}
}

// Unfault leaves FAULT for BACKUP. As in keepalived, the owner waits one advert interval
// plus Skew_Time instead of Master_Down_Interval before taking over.
func (f *FSM) Unfault(now time.Time) Actions {
	if f.state != Fault {
		return Actions{}
	}
	f.masterAdverInterval = f.cfg.Interval
	f.becomeBackup(now)
	if f.cfg.Priority == PriorityOwner {
		f.downAt = now.Add(f.cfg.Interval + f.skew())
	}
	return Actions{}
}

// Stop shuts the router down: a master sends priority 0 and gives up its addresses.
func (f *FSM) Stop(now time.Time) Actions {
	was := f.state
	f.state = Initialize
	f.wantMaster = false
	f.adverAt, f.downAt, f.garpAt, f.refreshAt, f.preemptAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if was == Master {
		return Actions{SendRelease: true, DelVIPs: true}
	}
	return Actions{}
}
