package vrrp

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/health"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// trackResult is one script run's or file read's outcome, sent to Run's loop.
type trackResult struct {
	i     int // index in Instance.tracks
	ok    bool
	value int64
}

// initTracks builds the tracked objects' initial states: interfaces up until Run reads them,
// scripts succeeding unless init_fail, files 0 until read.
func (in *Instance) initTracks() {
	for _, t := range in.cfg.TrackInterfaces {
		in.tracks = append(in.tracks, Track{Kind: TrackInterfaceKind, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse, Up: true})
	}
	for _, t := range in.cfg.TrackScripts {
		st := NewScriptStatus(t.Rise, t.Fall, t.InitFail)
		in.scripts = append(in.scripts, st)
		in.tracks = append(in.tracks, Track{Kind: TrackScriptKind, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse, Up: st.OK()})
	}
	for _, t := range in.cfg.TrackFiles {
		in.tracks = append(in.tracks, Track{Kind: TrackFileKind, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse})
	}
	for _, t := range in.cfg.TrackBFDs {
		in.tracks = append(in.tracks, Track{Kind: TrackBFDKind, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse})
	}
	in.trackLinks = map[int]int{}
}

// startTracking reads the tracked interfaces and files once, so the first state is right,
// and starts the scripts and the file poller, which report on ch until ctx ends.
func (in *Instance) startTracking(ctx context.Context, ch chan<- trackResult, wg *sync.WaitGroup) {
	for i, t := range in.cfg.TrackInterfaces {
		l, err := in.nl.LinkByName(t.Name)
		if err != nil {
			in.log.Warn("vrrp: tracked interface not found: down until it appears", "instance", in.cfg.Name, "interface", t.Name)
			in.tracks[i].Up = false
			continue
		}
		in.trackLinks[l.Attrs().Index] = i
		// With an injected Netlink seam there are no link updates: keep the interface up.
		in.tracks[i].Up = in.linkUpdates == nil || linkUp(l)
	}
	first := len(in.cfg.TrackInterfaces)
	run := in.cfg.RunScript
	if run == nil {
		run = runScript
	}
	for j, sc := range in.cfg.TrackScripts {
		i := first + j
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.scriptLoop(ctx, i, sc, run, ch)
		}()
	}
	files := first + len(in.cfg.TrackScripts)
	bfds := files + len(in.cfg.TrackFiles)
	seen := make([]bool, len(in.cfg.TrackBFDs))
	for j, b := range in.cfg.TrackBFDs {
		seen[j], _ = in.cfg.BFDState(b.Name)
		in.tracks[bfds+j].Up = seen[j]
	}
	if len(in.cfg.TrackBFDs) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.bfdLoop(ctx, bfds, seen, ch)
		}()
	}
	if len(in.cfg.TrackFiles) == 0 {
		return
	}
	for j, f := range in.cfg.TrackFiles {
		in.tracks[files+j].Value = in.readTrackFile(f)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.fileLoop(ctx, files, ch)
	}()
}

// bfdLoop reads the tracked BFD sessions' states every TrackBFDPoll and reports those that
// changed since last, startTracking's reading, or its own last one.
func (in *Instance) bfdLoop(ctx context.Context, first int, last []bool, ch chan<- trackResult) {
	poll := in.cfg.TrackBFDPoll
	if poll <= 0 {
		poll = DefaultTrackBFDPoll
	}
	for in.sleep(ctx, poll) {
		for j, b := range in.cfg.TrackBFDs {
			up, _ := in.cfg.BFDState(b.Name)
			if up == last[j] {
				continue
			}
			last[j] = up
			select {
			case ch <- trackResult{i: first + j, ok: up}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// runScript runs a vrrp_script as a MISC_CHECK runs: no shell, its user, a timeout.
func runScript(ctx context.Context, s TrackScript) error {
	return health.MiscCheck{Path: s.Path, Timeout: s.Timeout, User: s.User, Group: s.Group}.Check(ctx)
}

// scriptLoop runs a script every interval (the first time at once) and reports each result.
func (in *Instance) scriptLoop(ctx context.Context, i int, sc TrackScript, run func(context.Context, TrackScript) error, ch chan<- trackResult) {
	interval := sc.Interval
	if interval <= 0 {
		interval = time.Second
	}
	if sc.Timeout <= 0 {
		sc.Timeout = interval
	}
	for {
		err := run(ctx, sc)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			in.log.Debug("vrrp_script failed", "instance", in.cfg.Name, "script", sc.Name, "err", err)
		}
		select {
		case ch <- trackResult{i: i, ok: err == nil}:
		case <-ctx.Done():
			return
		}
		if !in.sleep(ctx, interval) {
			return
		}
	}
}

// fileLoop reads the track files every TrackFilePoll and reports their values.
func (in *Instance) fileLoop(ctx context.Context, first int, ch chan<- trackResult) {
	poll := in.cfg.TrackFilePoll
	if poll <= 0 {
		poll = DefaultTrackFilePoll
	}
	for in.sleep(ctx, poll) {
		for j, f := range in.cfg.TrackFiles {
			select {
			case ch <- trackResult{i: first + j, value: in.readTrackFile(f)}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// sleep waits d on the instance's clock; false when ctx ended first.
func (in *Instance) sleep(ctx context.Context, d time.Duration) bool {
	t := in.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// readTrackFile returns a track file's number; a file that cannot be read counts as 0, as
// keepalived counts it. It never blocks on a FIFO and reads at most maxTrackFile bytes.
func (in *Instance) readTrackFile(f TrackFile) int64 {
	fd, err := os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		in.log.Debug("vrrp: track_file unreadable: counts as 0", "instance", in.cfg.Name, "track_file", f.Name, "err", err)
		return 0
	}
	defer fd.Close()
	b := make([]byte, maxTrackFile)
	n, err := io.ReadFull(fd, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0
	}
	return ParseTrackFile(b[:n])
}

// trackUpdate records a script's or file's result and reports whether its track changed.
func (in *Instance) trackUpdate(r trackResult) bool {
	t := &in.tracks[r.i]
	switch t.Kind {
	case TrackScriptKind:
		st := &in.scripts[r.i-len(in.cfg.TrackInterfaces)]
		if !st.Record(r.ok) {
			return false
		}
		t.Up = st.OK()
		in.log.Info("vrrp_script status changed", "instance", in.cfg.Name, "script", t.Name, "ok", t.Up)
		return true
	case TrackBFDKind:
		if t.Up == r.ok {
			return false
		}
		t.Up = r.ok
		in.log.Info("vrrp track_bfd session changed", "instance", in.cfg.Name, "bfd_instance", t.Name, "up", t.Up)
		return true
	case TrackFileKind:
		if t.Value == r.value {
			return false
		}
		in.log.Info("vrrp track_file value changed", "instance", in.cfg.Name, "track_file", t.Name, "from", t.Value, "to", r.value)
		t.Value = r.value
		return true
	}
	return false
}

// linkUpdate follows the instance's own interface and the tracked ones, and reports whether
// anything changed.
func (in *Instance) linkUpdate(u netlink.LinkUpdate) bool {
	idx := u.Attrs().Index
	up := u.Header.Type != unix.RTM_DELLINK && linkUp(u.Link)
	changed := false
	if idx == in.link.Attrs().Index && in.linkDown == up {
		in.linkDown = !up
		changed = true
	}
	i, ok := in.trackLinks[idx]
	if !ok {
		// An interface tracked by name that did not exist, or was re-created.
		for j, t := range in.cfg.TrackInterfaces {
			if t.Name == u.Attrs().Name && u.Header.Type != unix.RTM_DELLINK {
				i, ok = j, true
				in.trackLinks[idx] = j
			}
		}
	}
	if ok && in.tracks[i].Up != up {
		in.tracks[i].Up = up
		in.log.Info("vrrp tracked interface changed", "instance", in.cfg.Name, "interface", in.tracks[i].Name, "up", up)
		changed = true
	}
	if u.Header.Type == unix.RTM_DELLINK {
		delete(in.trackLinks, idx)
	}
	return changed
}

// retrack recomputes the effective priority and whether the instance must be in FAULT, and
// moves the FSM accordingly. Starting, it leaves Initialize.
func (in *Instance) retrack(ctx context.Context, now time.Time, starting bool) {
	prio, fault, why := EffectivePriority(in.cfg.Priority, in.tracks)
	if in.linkDown && !in.cfg.DontTrackPrimary {
		fault, why = true, "interface "+in.cfg.Interface+" down"
	}
	if in.cfg.UnicastFaultNoPeer && len(in.cfg.UnicastPeers) == 0 {
		fault, why = true, "unicast_fault_no_peer and no unicast_peer"
	}
	in.ownFault = fault
	syncFault := in.cfg.Sync != nil && in.cfg.Sync.faulted(in)
	if syncFault && !fault {
		why = "a member of vrrp_sync_group " + in.cfg.Sync.Name() + " is in FAULT"
	}
	if old := in.fsm.Priority(); prio != old {
		in.log.Info("vrrp effective priority changed", "instance", in.cfg.Name, "from", old, "to", prio)
		in.fsm.SetPriority(prio)
		in.mu.Lock()
		in.prio = prio
		st := in.state
		in.mu.Unlock()
		if !starting {
			in.emit(ctx, Event{Instance: in.cfg.Name, State: st, Prev: st, At: now, VIPs: in.cfg.VIPs, Priority: prio})
		}
	}
	switch faulty := fault || syncFault; {
	case starting && faulty:
		in.log.Warn("vrrp instance starts in FAULT", "instance", in.cfg.Name, "why", why)
		in.apply(ctx, now, in.fsm.Fault(now))
	case starting:
		in.apply(ctx, now, in.fsm.Start(now))
	case faulty && in.fsm.State() != Fault:
		in.log.Warn("vrrp instance enters FAULT", "instance", in.cfg.Name, "why", why)
		in.apply(ctx, now, in.fsm.Fault(now))
	case !faulty && in.fsm.State() == Fault:
		in.apply(ctx, now, in.fsm.Unfault(now))
	default:
		in.apply(ctx, now, Actions{}) // no transition; tells the sync group of a fault change
	}
}

// syncWake acts on the sync group: another member's fault, or the group's order to move.
func (in *Instance) syncWake(ctx context.Context, now time.Time) {
	g := in.cfg.Sync
	in.retrack(ctx, now, false)
	gen, target := g.order()
	if gen == in.syncSeen {
		return
	}
	in.syncSeen = gen
	var a Actions
	switch target {
	case Master:
		a = in.fsm.ForceMaster(now)
	case Backup:
		a = in.fsm.ForceBackup(now)
	}
	in.syncForcing = true
	in.apply(ctx, now, a)
	in.syncForcing = false
}
