// Package notify does what keepalived does on transitions: it runs the notify scripts
// (notify_master, notify_backup, notify_fault, notify_stop and notify of vrrp_instance and
// vrrp_sync_group; notify_up and notify_down of real_server; quorum_up and quorum_down of
// virtual_server), writes keepalived's lines to notify_fifo, vrrp_notify_fifo and
// lvs_notify_fifo, and sends smtp_alert e-mails.
//
// Scripts run without a shell (the command line split as keepalived splits it), as
// script_user (default keepalived_script, else nobody: never root unless configured), in their
// own process group, with a timeout and their output, bounded, in the log; keepalived's
// enable_script_security rules decide whether a script that would run with root's privileges
// from a path others can write may run (see CheckScript). Nothing here blocks the caller:
// scripts and e-mails wait in bounded queues and are dropped, with a log line and a count,
// when the queues are full; FIFO writes never block.
package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// DefaultScriptTimeout bounds a notify script's run; its process group is killed after it.
const DefaultScriptTimeout = 30 * time.Second

const (
	scriptWorkers   = 4       // notify scripts running at once
	scriptQueue     = 256     // notify scripts waiting to run
	mailQueue       = 64      // alerts waiting to be sent
	maxScriptOutput = 4 << 10 // bytes of a script's output kept for the log
)

// State names as keepalived passes them to scripts and FIFOs.
const (
	StateMaster = "MASTER"
	StateBackup = "BACKUP"
	StateFault  = "FAULT"
	StateStop   = "STOP"
)

// Options configures a Notifier; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// ScriptTimeout bounds each script; zero means DefaultScriptTimeout.
	ScriptTimeout time.Duration
	// Hostname is the default router_id, HELO name and sender domain; empty: os.Hostname.
	Hostname string
	// Now is the clock of the alerts' Date header; nil means time.Now.
	Now func() time.Time
}

// Stats counts what was dropped because a queue or FIFO was full.
type Stats struct {
	DroppedScripts uint64
	DroppedMails   uint64
	DroppedLines   uint64
}

// Notifier runs notify scripts, writes notify FIFOs and sends alerts; it implements the
// director's Notifier. Its methods are safe for concurrent use.
type Notifier struct {
	log     *slog.Logger
	opts    Options
	host    string
	scripts chan job
	mails   chan Mail
	ctx     context.Context // cancelled by Close when its deadline passes: kills scripts
	cancel  context.CancelFunc
	workers sync.WaitGroup

	mu     sync.Mutex
	closed bool
	cfg    *config.Config
	smtp   SMTP
	mailOK bool
	fifos  []*fifo
	// fifoScripts are the running *_fifo_script processes, by FIFO path.
	fifoScripts map[string]*exec.Cmd
	// state is each vrrp_instance's and vrrp_sync_group's last notified state; mailed the
	// last state an alert was sent for, by "instance NAME" / "group NAME".
	state  map[string]string
	mailed map[string]string
	// prio is each vrrp_instance's last effective priority, as its events reported it.
	prio map[string]int

	droppedScripts, droppedMails, droppedLines atomic.Uint64
}

// job is one script run.
type job struct {
	what    string // for the log: "notify_master of vrrp_instance VI_1"
	argv    []string
	user    config.ScriptUser
	timeout time.Duration
	// security is enable_script_security when the job was queued.
	security bool
}

// New starts a Notifier for cfg: it opens the notify FIFOs (starting their scripts) and the
// workers that run scripts and send alerts. Problems with one FIFO or the mail settings are
// logged and the rest works. Close stops it.
func New(cfg *config.Config, opts Options) *Notifier {
	n := &Notifier{
		log:         cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		opts:        opts,
		host:        opts.Hostname,
		scripts:     make(chan job, scriptQueue),
		mails:       make(chan Mail, mailQueue),
		fifoScripts: map[string]*exec.Cmd{},
		state:       map[string]string{},
		mailed:      map[string]string{},
		prio:        map[string]int{},
	}
	if n.opts.ScriptTimeout <= 0 {
		n.opts.ScriptTimeout = DefaultScriptTimeout
	}
	if n.opts.Now == nil {
		n.opts.Now = time.Now
	}
	if n.host == "" {
		n.host, _ = os.Hostname()
		n.host = cmp.Or(n.host, "localhost")
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.Lock()
	n.apply(cfg)
	n.mu.Unlock()
	for range scriptWorkers {
		n.workers.Add(1)
		go func() {
			defer n.workers.Done()
			for j := range n.scripts {
				n.run(j)
			}
		}()
	}
	n.workers.Add(1)
	go func() {
		defer n.workers.Done()
		for m := range n.mails {
			n.mu.Lock()
			s, ok := n.smtp, n.mailOK
			n.mu.Unlock()
			if !ok {
				continue
			}
			if n.ctx.Err() != nil {
				n.log.Error("smtp alert not sent: shutting down", "subject", m.Subject)
				continue
			}
			if err := s.Send(n.ctx, m, n.opts.Now()); err != nil {
				n.log.Error("smtp alert not sent", "subject", m.Subject, "err", err)
				continue
			}
			n.log.Info("smtp alert sent", "subject", m.Subject, "to", s.To)
		}
	}()
	return n
}

// Update takes a reloaded configuration: scripts, FIFOs and mail settings change for the
// transitions that follow.
func (n *Notifier) Update(cfg *config.Config) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.apply(cfg)
	}
}

// Stats returns what was dropped so far.
func (n *Notifier) Stats() Stats {
	return Stats{DroppedScripts: n.droppedScripts.Load(), DroppedMails: n.droppedMails.Load(), DroppedLines: n.droppedLines.Load()}
}

// apply installs cfg; n.mu is held.
func (n *Notifier) apply(cfg *config.Config) {
	n.cfg = cfg
	s, ok, err := SMTPOf(cfg.Global, n.host)
	if err != nil {
		n.log.Error("smtp alerts disabled", "err", err)
	}
	n.smtp, n.mailOK = s, ok
	n.openFIFOs()
}

// openFIFOs opens the configured FIFOs, keeping those that did not change; n.mu is held.
func (n *Notifier) openFIFOs() {
	g := n.cfg.Global
	var want []config.NotifyFIFO
	for _, c := range []config.NotifyFIFO{g.NotifyFIFO, g.VRRPNotifyFIFO, g.LVSNotifyFIFO} {
		if c.Path != "" && !slices.ContainsFunc(want, func(w config.NotifyFIFO) bool { return w.Path == c.Path }) {
			want = append(want, c)
		}
	}
	var keep []*fifo
	for _, f := range n.fifos {
		if slices.ContainsFunc(want, func(w config.NotifyFIFO) bool { return reflect.DeepEqual(w, f.cfg) }) {
			keep = append(keep, f)
			continue
		}
		n.closeFIFO(f)
	}
	n.fifos = keep
	for _, c := range want {
		if slices.ContainsFunc(n.fifos, func(f *fifo) bool { return f.cfg.Path == c.Path }) {
			continue
		}
		uid, gid := -1, -1
		if cred, err := health.ScriptCredential(c.User, c.Group); err != nil {
			n.log.Error("notify fifo not opened", "fifo", c.Path, "err", err)
			continue
		} else if cred != nil {
			uid, gid = int(cred.Uid), int(cred.Gid)
		}
		f, err := openFIFO(c, uid, gid)
		if err != nil {
			n.log.Error("notify fifo not opened", "err", err)
			continue
		}
		n.fifos = append(n.fifos, f)
		if c.Script != "" {
			n.startFIFOScript(c)
		}
	}
}

// closeFIFO stops a FIFO's script, then closes (and, if created here, removes) the FIFO.
func (n *Notifier) closeFIFO(f *fifo) {
	if cmd := n.fifoScripts[f.cfg.Path]; cmd != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		delete(n.fifoScripts, f.cfg.Path)
	}
	f.close()
}

// startFIFOScript starts a *_fifo_script with the FIFO's path as its last argument; it runs
// until the FIFO is closed.
func (n *Notifier) startFIFOScript(c config.NotifyFIFO) {
	argv, err := health.SplitMiscPath(c.Script)
	if err != nil {
		n.log.Error("notify fifo script not started", "fifo", c.Path, "err", err)
		return
	}
	argv = append(argv, c.Path)
	cmd, out, err := n.command(job{what: "notify_fifo_script for " + c.Path, argv: argv, user: n.user(c.ScriptUser),
		security: n.cfg.Global.EnableScriptSecurity})
	if err != nil {
		n.log.Error("notify fifo script not started", "fifo", c.Path, "err", err)
		return
	}
	if err := cmd.Start(); err != nil {
		n.log.Error("notify fifo script not started", "fifo", c.Path, "err", err)
		return
	}
	n.fifoScripts[c.Path] = cmd
	go func() {
		err := cmd.Wait()
		n.log.Info("notify fifo script exited", "fifo", c.Path, "status", exitStatus(cmd, err), "output", out.String())
	}()
}

// writeFIFOs writes line to the FIFOs of kind ("vrrp" or "lvs") and to notify_fifo; n.mu is
// held. Writes never block: a full FIFO drops the line.
func (n *Notifier) writeFIFOs(kind, line string) {
	g := n.cfg.Global
	specific := g.VRRPNotifyFIFO.Path
	if kind == "lvs" {
		specific = g.LVSNotifyFIFO.Path
	}
	for _, f := range n.fifos {
		if f.cfg.Path != g.NotifyFIFO.Path && f.cfg.Path != specific {
			continue
		}
		err := f.write(line)
		switch {
		case err != nil:
			n.droppedLines.Add(1)
			if !f.dropping {
				n.log.Warn("notify fifo lines dropped until it is read again", "fifo", f.cfg.Path, "line", line[:len(line)-1], "err", err)
			}
			f.dropping = true
		case f.dropping:
			f.dropping = false
			n.log.Info("notify fifo read again", "fifo", f.cfg.Path)
		}
	}
}

// VRRP reports an instance's transition: notify_<state> then notify with INSTANCE NAME STATE
// PRIORITY (the effective priority the event reports, else the configured one), the FIFO
// line, the alert, and the same for a vrrp_sync_group whose members are
// now all in one state. An instance going back to INIT is reported as STOP.
func (n *Notifier) VRRP(ev vrrp.Event) {
	st := stateName(ev.State)
	if ev.State == vrrp.Initialize {
		if ev.Prev == vrrp.Initialize {
			return
		}
		st = StateStop
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if ev.Priority != 0 {
		n.prio[ev.Instance] = int(ev.Priority)
	}
	n.instanceChanged(ev.Instance, st)
}

// instanceChanged notifies one instance's (and its sync groups') new state; n.mu is held.
func (n *Notifier) instanceChanged(name, st string) {
	i := slices.IndexFunc(n.cfg.VRRPInstances, func(in config.VRRPInstance) bool { return in.Name == name })
	if i < 0 || n.state["instance "+name] == st {
		return
	}
	in := n.cfg.VRRPInstances[i]
	n.state["instance "+name] = st
	prio, ok := n.prio[name]
	if !ok {
		prio = in.Priority
	}
	n.vrrpNotifies("INSTANCE", name, st, prio, in.Notify, vrrpAlert(n.cfg.Global, in.SMTPAlert))
	for _, g := range n.cfg.VRRPSyncGroups {
		if !slices.Contains(g.Group, name) {
			continue
		}
		all := st
		for _, m := range g.Group {
			if n.state["instance "+m] != st {
				all = ""
			}
		}
		if all != "" && n.state["group "+g.Name] != all {
			n.state["group "+g.Name] = all
			n.vrrpNotifies("GROUP", g.Name, all, 0, g.Notify, vrrpAlert(n.cfg.Global, g.SMTPAlert))
		}
	}
}

// vrrpNotifies runs the notifications of an instance or group entering st; n.mu is held.
func (n *Notifier) vrrpNotifies(kind, name, st string, prio int, nt config.Notify, alert bool) {
	what := "vrrp_instance " + name
	if kind == "GROUP" {
		what = "vrrp_sync_group " + name
	}
	script, user := "", config.ScriptUser{}
	switch st {
	case StateMaster:
		script, user = nt.Master, nt.MasterUser
	case StateBackup:
		script, user = nt.Backup, nt.BackupUser
	case StateFault:
		script, user = nt.Fault, nt.FaultUser
	case StateStop:
		script, user = nt.Stop, nt.StopUser
	}
	n.enqueue("notify_"+lower(st)+" of "+what, script, user)
	if nt.Any != "" {
		n.enqueue("notify of "+what, nt.Any, nt.AnyUser, kind, name, st, fmt.Sprint(prio))
	}
	n.writeFIFOs("vrrp", InstanceLine(kind, name, st, prio))
	key := lower(kind) + " " + name
	if !alert || n.mailed[key] == st || st == StateFault && n.cfg.Global.NoEmailFaults {
		return
	}
	n.mailed[key] = st
	n.mail(VRRPMail(n.routerID(), kind, name, st))
}

// RealServer reports a real server going up or down: notify_up / notify_down, the FIFO line
// and the alert.
func (n *Notifier) RealServer(vs config.VirtualServer, rs config.RealServer, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	what := fmt.Sprintf("real_server %s of virtual_server %s", netip.AddrPortFrom(rs.Addr, rs.Port), netip.AddrPortFrom(vs.Addr, vs.Port))
	if up {
		n.enqueue("notify_up of "+what, rs.NotifyUp, rs.NotifyUpUser)
	} else {
		n.enqueue("notify_down of "+what, rs.NotifyDown, rs.NotifyDownUser)
	}
	n.writeFIFOs("lvs", RealServerLine(vs, rs, up))
	if checkerAlert(n.cfg.Global, rs.SMTPAlert) {
		n.mail(RealServerMail(n.routerID(), vs, rs, up))
	}
}

// Quorum reports a virtual server gaining or losing quorum: quorum_up / quorum_down, the
// FIFO line and the alert.
func (n *Notifier) Quorum(vs config.VirtualServer, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	what := "virtual_server " + netip.AddrPortFrom(vs.Addr, vs.Port).String()
	if up {
		n.enqueue("quorum_up of "+what, vs.QuorumUp, vs.QuorumUpUser)
	} else {
		n.enqueue("quorum_down of "+what, vs.QuorumDown, vs.QuorumDownUser)
	}
	n.writeFIFOs("lvs", VirtualServerLine(vs, up))
	if virtualServerAlert(n.cfg.Global, vs.SMTPAlert) {
		n.mail(VirtualServerMail(n.routerID(), vs, up))
	}
}

// Close reports STOP for every vrrp_instance and vrrp_sync_group not stopped yet (keepalived
// runs notify_stop on shutdown), waits until ctx is done for the queued scripts and alerts,
// then kills what still runs and closes the FIFOs.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	for _, in := range n.cfg.VRRPInstances {
		n.instanceChanged(in.Name, StateStop)
	}
	n.closed = true
	close(n.scripts)
	close(n.mails)
	n.mu.Unlock()

	done := make(chan struct{})
	go func() { n.workers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close notifier: scripts or alerts still pending: %w", ctx.Err())
		n.cancel()
		<-done
	}
	n.cancel()
	n.mu.Lock()
	for _, f := range n.fifos {
		n.closeFIFO(f)
	}
	n.fifos = nil
	n.mu.Unlock()
	return err
}

// enqueue queues script (a command line) with extra arguments; n.mu is held.
func (n *Notifier) enqueue(what, script string, user config.ScriptUser, extra ...string) {
	if script == "" {
		return
	}
	argv, err := health.SplitMiscPath(script)
	if err != nil {
		n.log.Error("notify script not run", "script", what, "err", err)
		return
	}
	j := job{what: what, argv: append(argv, extra...), user: n.user(user), timeout: n.opts.ScriptTimeout,
		security: n.cfg.Global.EnableScriptSecurity}
	select {
	case n.scripts <- j:
	default:
		n.droppedScripts.Add(1)
		n.log.Error("notify script dropped: too many scripts waiting", "script", what, "queue", scriptQueue)
	}
}

// mail queues an alert; n.mu is held.
func (n *Notifier) mail(m Mail) {
	if !n.mailOK {
		return
	}
	select {
	case n.mails <- m:
	default:
		n.droppedMails.Add(1)
		n.log.Error("smtp alert dropped: too many alerts waiting", "subject", m.Subject, "queue", mailQueue)
	}
}

// user is who a script runs as: its own user, else global_defs script_user; n.mu is held.
func (n *Notifier) user(u config.ScriptUser) config.ScriptUser {
	if u.User != "" {
		return u
	}
	return config.ScriptUser{User: n.cfg.Global.ScriptUser, Group: n.cfg.Global.ScriptGroup}
}

// routerID is router_id, else the host name, as in keepalived; n.mu is held.
func (n *Notifier) routerID() string {
	return cmp.Or(n.cfg.Global.RouterID, n.host)
}

// run runs one script to its end or its timeout.
func (n *Notifier) run(j job) {
	if n.ctx.Err() != nil {
		n.log.Error("notify script not run: shutting down", "script", j.what)
		return
	}
	cmd, out, err := n.command(j)
	if err != nil {
		n.log.Error("notify script not run", "script", j.what, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, j.timeout)
	defer cancel()
	if err := cmd.Start(); err != nil {
		n.log.Error("notify script not run", "script", j.what, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	stop()
	switch {
	case ctx.Err() != nil && !cmd.ProcessState.Exited():
		n.log.Error("notify script killed", "script", j.what, "timeout", j.timeout, "output", out.String())
	case err != nil:
		n.log.Warn("notify script failed", "script", j.what, "argv", j.argv, "status", exitStatus(cmd, err), "output", out.String())
	default:
		n.log.Info("notify script ran", "script", j.what, "argv", j.argv, "output", out.String())
	}
}

// command prepares a script's process: no shell, a fixed environment, in /, in its own
// process group, as its user, after the security checks.
func (n *Notifier) command(j job) (*exec.Cmd, *health.OutputBuffer, error) {
	cred, err := health.ScriptCredential(j.user.User, j.user.Group)
	if err != nil {
		return nil, nil, err
	}
	uid, gid := ourIDs()
	if cred != nil {
		uid, gid = cred.Uid, cred.Gid
	}
	path, err := CheckScript(j.argv[0], uid, gid)
	if errors.Is(err, ErrInsecure) && !j.security {
		n.log.Warn("SECURITY VIOLATION - script runs with root's privileges from a path others can write; "+
			"enable_script_security would refuse it", "script", j.what, "err", err)
		err = nil
	}
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(path, j.argv[1:]...)
	cmd.Args[0] = j.argv[0]
	cmd.Env = []string{"PATH=" + scriptPath}
	cmd.Dir = "/"
	out := &health.OutputBuffer{Max: maxScriptOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	// A descendant that left the group may hold the output pipe open: stop waiting for it.
	cmd.WaitDelay = time.Second
	return cmd, out, nil
}

func exitStatus(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return err.Error()
}

func stateName(s vrrp.State) string {
	switch s {
	case vrrp.Master:
		return StateMaster
	case vrrp.Backup:
		return StateBackup
	case vrrp.Fault:
		return StateFault
	}
	return StateStop
}

func lower(s string) string { return strings.ToLower(s) }
