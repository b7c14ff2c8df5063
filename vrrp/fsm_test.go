package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTimers(t *testing.T) {
	tests := []struct {
		name       string
		version    int
		prio       uint8
		interval   time.Duration
		skew, down time.Duration
	}{
		// RFC 3768: Skew_Time = (256 - Priority) / 256 seconds, whatever the interval.
		{"v2 priority 100", 2, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{"v2 priority 100 interval 3s", 2, 100, 3 * time.Second, 609375 * time.Microsecond, 9609375 * time.Microsecond},
		{"v2 priority 254", 2, 254, time.Second, 7812500 * time.Nanosecond, 3007812500 * time.Nanosecond},
		// RFC 5798: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
		{"v3 priority 100 interval 1s", 3, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{"v3 priority 100 interval 0.1s", 3, 100, 100 * time.Millisecond, 60937500 * time.Nanosecond, 360937500 * time.Nanosecond},
		{"v3 priority 1 interval 40.95s", 3, 1, 4095 * 10 * time.Millisecond, 40790039062 * time.Nanosecond, 163640039062 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SkewTime(tt.version, tt.prio, tt.interval); got != tt.skew {
				t.Errorf("SkewTime = %v, want %v", got, tt.skew)
			}
			if got := MasterDownInterval(tt.version, tt.prio, tt.interval); got != tt.down {
				t.Errorf("MasterDownInterval = %v, want %v", got, tt.down)
			}
		})
	}
}

// step is one input to the FSM at a time offset from t0, with what it must answer.
type step struct {
	at        time.Duration
	op        string // start, recv, tick, stop, down, up, fault, unfault, prio (adv.Priority), forcemaster, forcebackup
	adv       Advert
	want      Actions
	state     State
	nextTimer time.Duration // Deadline after the step, as an offset; -1: none
}

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	me    = netip.MustParseAddr("10.0.0.2")
	lower = netip.MustParseAddr("10.0.0.1")
	upper = netip.MustParseAddr("10.0.0.3")
)

const s = time.Second

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestFSM(t *testing.T) {
	// priority 100, interval 1s: Master_Down_Interval 3.609375s, Skew_Time 0.609375s.
	base := FSMConfig{Version: 3, Priority: 100, Interval: s, Primary: me}
	down := 3609375 * time.Microsecond
	skew := 609375 * time.Microsecond
	with := func(f func(*FSMConfig)) FSMConfig { c := base; f(&c); return c }
	master := Actions{SendAdvert: true, AddVIPs: true, Announce: true}
	// A backup at start removes VIPs a killed predecessor may have left behind.
	clearVIPs := Actions{DelVIPs: true}
	tests := []struct {
		name  string
		cfg   FSMConfig
		steps []step
	}{
		{"backup waits Master_Down_Interval then becomes master", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{down - 1, "tick", Advert{}, Actions{}, Backup, down},
			{down, "tick", Advert{}, master, Master, down + s},
			{down + s, "tick", Advert{}, Actions{SendAdvert: true}, Master, down + 2*s},
		}},
		{"owner is master at once", with(func(c *FSMConfig) { c.Priority = 255 }), []step{
			{0, "start", Advert{}, master, Master, s},
		}},
		{"StartMaster takes over at start", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(300), "recv", Advert{Src: lower, Priority: 150, Interval: s}, Actions{DelVIPs: true}, Backup, ms(300) + down},
		}},
		{"adverts from a higher master keep backup", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: lower, Priority: 150, Interval: s}, Actions{}, Backup, s + down},
			{s + down - 1, "tick", Advert{}, Actions{}, Backup, s + down},
		}},
		{"v3 backup learns the master's interval", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			// 3 * 0.1s + (156 * 0.1s) / 256 = 0.3609375s
			{s, "recv", Advert{Src: lower, Priority: 150, Interval: ms(100)}, Actions{}, Backup, s + 360937500*time.Nanosecond},
		}},
		{"v2 backup keeps its own interval", with(func(c *FSMConfig) { c.Version = 2 }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: lower, Priority: 150, Interval: s}, Actions{}, Backup, s + down},
		}},
		{"priority 0 makes backup take over after Skew_Time", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: lower, Priority: 0, Interval: s}, Actions{}, Backup, s + skew},
			{s + skew, "tick", Advert{}, master, Master, s + skew + s},
		}},
		{"backup preempts a lower-priority master", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, down},
			{down, "tick", Advert{}, master, Master, down + s},
		}},
		{"nopreempt accepts a lower-priority master", with(func(c *FSMConfig) { c.NoPreempt = true }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, s + down},
			{2 * s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, 2*s + down},
		}},
		{"preempt_delay accepts a lower master until the delay runs out", with(func(c *FSMConfig) { c.PreemptDelay = 5 * s }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, s + down}, // delay until 6s
			{5 * s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, 5*s + down},
			{6 * s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, 5*s + down}, // ignored
			{5*s + down, "tick", Advert{}, master, Master, 6*s + down},
		}},
		{"preempt_delay restarts on a higher-priority advert", with(func(c *FSMConfig) { c.PreemptDelay = 5 * s }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, s + down},        // until 6s
			{3 * s, "recv", Advert{Src: upper, Priority: 200, Interval: s}, Actions{}, Backup, 3*s + down}, // until 8s
			{7 * s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, 7*s + down},
			{8 * s, "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Backup, 7*s + down}, // ignored
		}},
		{"master yields to higher priority", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(500), "recv", Advert{Src: lower, Priority: 101, Interval: s}, Actions{DelVIPs: true}, Backup, ms(500) + down},
		}},
		{"master yields to equal priority with higher address", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(500), "recv", Advert{Src: upper, Priority: 100, Interval: s}, Actions{DelVIPs: true}, Backup, ms(500) + down},
		}},
		{"higher_prio_send_advert: one last advert when yielding", with(func(c *FSMConfig) { c.StartMaster, c.HigherPrioSendAdvert = true, true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(500), "recv", Advert{Src: lower, Priority: 101, Interval: s}, Actions{SendAdvert: true, DelVIPs: true}, Backup, ms(500) + down},
		}},
		{"master keeps over equal priority with lower address, and re-announces", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(500), "recv", Advert{Src: lower, Priority: 100, Interval: s}, Actions{SendAdvert: true, AddVIPs: true, Announce: true}, Master, ms(1500)},
		}},
		{"master re-announces over a lower-priority master", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(200), "recv", Advert{Src: upper, Priority: 99, Interval: s}, Actions{SendAdvert: true, AddVIPs: true, Announce: true}, Master, ms(1200)},
		}},
		{"master answers priority 0 with an advert at once", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(200), "recv", Advert{Src: upper, Priority: 0, Interval: s}, Actions{SendAdvert: true}, Master, ms(1200)},
		}},
		{"garp_master_delay and garp_master_refresh", with(func(c *FSMConfig) {
			c.StartMaster, c.GARPDelay, c.GARPRefresh, c.Interval = true, 5*s, 7*s, 10*s
		}), []step{
			{0, "start", Advert{}, master, Master, 5 * s},
			{5 * s, "tick", Advert{}, Actions{Announce: true}, Master, 7 * s},
			{7 * s, "tick", Advert{}, Actions{Announce: true}, Master, 10 * s},
			{10 * s, "tick", Advert{}, Actions{SendAdvert: true}, Master, 14 * s},
			{14 * s, "tick", Advert{}, Actions{Announce: true}, Master, 20 * s},
		}},
		{"stopping master releases", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(10), "stop", Advert{}, Actions{SendRelease: true, DelVIPs: true}, Initialize, -1},
		}},
		{"link down: master gives up its addresses, link up: backup again", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(10), "down", Advert{}, Actions{DelVIPs: true}, Fault, -1},
			{ms(20), "recv", Advert{Src: upper, Priority: 50, Interval: s}, Actions{}, Fault, -1},
			{5 * s, "tick", Advert{}, Actions{}, Fault, -1},
			{6 * s, "up", Advert{}, Actions{}, Backup, 6*s + down},
			{6*s + down, "tick", Advert{}, master, Master, 7*s + down},
		}},
		{"link down and up as backup", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "down", Advert{}, Actions{}, Fault, -1},
			{2 * s, "up", Advert{}, Actions{}, Backup, 2*s + down},
		}},
		{"owner is master again as soon as its link is up", with(func(c *FSMConfig) { c.Priority = 255 }), []step{
			{0, "start", Advert{}, master, Master, s},
			{s, "down", Advert{}, Actions{DelVIPs: true}, Fault, -1},
			{2 * s, "up", Advert{}, Actions{}, Backup, 3*s + 3906250*time.Nanosecond}, // interval + (1 * 1s) / 256
			{3*s + 3906250*time.Nanosecond, "tick", Advert{}, master, Master, 4*s + 3906250*time.Nanosecond},
		}},
		{"stopping in fault sends nothing", base, []step{
			{0, "down", Advert{}, Actions{}, Fault, -1},
			{s, "stop", Advert{}, Actions{}, Initialize, -1},
		}},
		{"stopping backup sends nothing", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{ms(10), "stop", Advert{}, Actions{}, Initialize, -1},
		}},
		{"tracking lowers a master below a backup: it yields to the backup's adverts", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(100), "prio", Advert{Priority: 40}, Actions{}, Master, s},
			// The backup (priority 100 > 40) ignores our adverts, takes over and advertises.
			{5 * s, "recv", Advert{Src: lower, Priority: 100, Interval: s}, Actions{DelVIPs: true}, Backup, 5*s + 3*s + 843750*time.Microsecond},
		}},
		{"tracking raises a backup above the master: it preempts", base, []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "recv", Advert{Src: upper, Priority: 110, Interval: s}, Actions{}, Backup, s + down},
			{ms(1500), "prio", Advert{Priority: 120}, Actions{}, Backup, s + down},
			// The master's 110 is now lower: ignored, and the timer runs out.
			{2 * s, "recv", Advert{Src: upper, Priority: 110, Interval: s}, Actions{}, Backup, s + down},
			{s + down, "tick", Advert{}, master, Master, 2*s + down},
		}},
		{"tracking raises a nopreempt backup: no takeover", with(func(c *FSMConfig) { c.NoPreempt = true }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{ms(500), "prio", Advert{Priority: 120}, Actions{}, Backup, down},
			// Master_Down_Interval now uses priority 120: 3s + 136/256 s.
			{s, "recv", Advert{Src: upper, Priority: 110, Interval: s}, Actions{}, Backup, s + 3*s + 531250*time.Microsecond},
		}},
		{"priority 0 from tracking is ignored", base, []step{
			{0, "prio", Advert{Priority: 0}, Actions{}, Initialize, -1},
			{0, "start", Advert{}, clearVIPs, Backup, down},
		}},
		{"fault and unfault from tracking", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{s, "fault", Advert{}, Actions{DelVIPs: true}, Fault, -1},
			{2 * s, "fault", Advert{}, Actions{}, Fault, -1},
			{3 * s, "unfault", Advert{}, Actions{}, Backup, 3*s + down},
			{4 * s, "unfault", Advert{}, Actions{}, Backup, 3*s + down},
		}},
		{"sync group: a synced backup asks before becoming master", with(func(c *FSMConfig) { c.Synced = true }), []step{
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{down, "tick", Advert{}, Actions{WantMaster: true}, Backup, 2 * down},
			{2 * down, "tick", Advert{}, Actions{WantMaster: true}, Backup, 3 * down},
			{2*down + s, "forcemaster", Advert{}, master, Master, 2*down + 2*s},
		}},
		{"sync group: forced master and backup", base, []step{
			{0, "forcebackup", Advert{}, Actions{}, Initialize, -1},
			{0, "start", Advert{}, clearVIPs, Backup, down},
			{s, "forcebackup", Advert{}, Actions{}, Backup, down},
			{s, "forcemaster", Advert{}, master, Master, 2 * s},
			{ms(1500), "forcemaster", Advert{}, Actions{}, Master, 2 * s},
			{ms(1500), "forcebackup", Advert{}, Actions{DelVIPs: true}, Backup, ms(1500) + down},
		}},
		{"sync group: forced master from fault is refused", base, []step{
			{0, "fault", Advert{}, Actions{}, Fault, -1},
			{s, "forcemaster", Advert{}, Actions{}, Fault, -1},
		}},
		{"master after losing election yields and re-takes when the winner stops", with(func(c *FSMConfig) { c.StartMaster = true }), []step{
			{0, "start", Advert{}, master, Master, s},
			{ms(100), "recv", Advert{Src: upper, Priority: 200, Interval: s}, Actions{DelVIPs: true}, Backup, ms(100) + down},
			{ms(900), "recv", Advert{Src: upper, Priority: 0, Interval: s}, Actions{}, Backup, ms(900) + skew},
			{ms(900) + skew, "tick", Advert{}, master, Master, ms(1900) + skew},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFSM(tt.cfg)
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				var got Actions
				switch st.op {
				case "start":
					got = f.Start(now)
				case "recv":
					got = f.Receive(now, st.adv)
				case "tick":
					got = f.Tick(now)
				case "stop":
					got = f.Stop(now)
				case "down":
					got = f.LinkDown(now)
				case "up":
					got = f.LinkUp(now)
				case "fault":
					got = f.Fault(now)
				case "unfault":
					got = f.Unfault(now)
				case "prio":
					f.SetPriority(st.adv.Priority)
					if want := max(st.adv.Priority, tt.cfg.Priority*btoi(st.adv.Priority == 0)); f.Priority() != want {
						t.Errorf("step %d: Priority() = %d, want %d", i, f.Priority(), want)
					}
				case "forcemaster":
					got = f.ForceMaster(now)
				case "forcebackup":
					got = f.ForceBackup(now)
				}
				if diff := cmp.Diff(st.want, got); diff != "" {
					t.Errorf("step %d (%s at %v) actions (-want +got):\n%s", i, st.op, st.at, diff)
				}
				if f.State() != st.state {
					t.Errorf("step %d (%s at %v): state %v, want %v", i, st.op, st.at, f.State(), st.state)
				}
				var next time.Duration = -1
				if d := f.Deadline(); !d.IsZero() {
					next = d.Sub(t0)
				}
				if next != st.nextTimer {
					t.Errorf("step %d (%s at %v): next timer at %v, want %v", i, st.op, st.at, next, st.nextTimer)
				}
			}
		})
	}
}

func btoi(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
