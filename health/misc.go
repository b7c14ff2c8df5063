package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxMiscOutput bounds the output of a MISC_CHECK script kept for the log.
const maxMiscOutput = 4 << 10

// ErrMiscExit is reported for a script that exits with a failing status or is killed.
var ErrMiscExit = errors.New("misc check script failed")

// DefaultScriptUsers are the users a script (MISC_CHECK, notify) runs as when no user is given
// and sluice runs as root, the first that exists: keepalived's script_user default, then nobody
// rather than keepalived's root.
var DefaultScriptUsers = []string{"keepalived_script", "nobody"}

// MiscCheck is keepalived's MISC_CHECK: it runs a program, without a shell, and passes when
// it exits 0. With Dynamic, exit status 1 fails, and 2 to 255 pass and set the real server's
// weight to status-2, which this checker reports as the delta from Weight (WeightChecker).
// On timeout the script's whole process group is killed.
type MiscCheck struct {
	// Path is misc_path split into the program and its arguments; see SplitMiscPath.
	Path []string
	// Timeout is misc_timeout; zero or less means DefaultTimeout.
	Timeout time.Duration
	// Dynamic is misc_dynamic.
	Dynamic bool
	// Weight is the real server's configured weight, the base of Dynamic's delta.
	Weight int
	// User and Group are user USERNAME [GROUPNAME]. Empty User means the first of
	// DefaultScriptUsers when sluice runs as root, else the user sluice runs as; empty Group
	// means the user's group. Only root can run scripts as another user.
	User, Group string
}

var (
	_ TimeoutChecker = MiscCheck{}
	_ WeightChecker  = MiscCheck{}
)

// SplitMiscPath splits misc_path as keepalived does: on blanks, with '...' and "..." quoting
// and a backslash escaping the next character.
func SplitMiscPath(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote byte
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && quote != '\'':
			if i+1 == len(s) {
				return nil, fmt.Errorf("split misc_path %q: trailing backslash", s)
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(ch)
		case ch == '"' || ch == '\'':
			quote, inArg = ch, true
		case ch == ' ' || ch == '\t':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("split misc_path %q: unterminated quote", s)
	}
	if inArg {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("split misc_path %q: no program", s)
	}
	return args, nil
}

// Check runs the script once.
func (c MiscCheck) Check(ctx context.Context) error {
	_, err := c.CheckWeight(ctx)
	return err
}

// CheckWeight runs the script once and returns its weight delta (zero unless Dynamic).
func (c MiscCheck) CheckWeight(ctx context.Context) (int, error) {
	if len(c.Path) == 0 {
		return 0, errors.New("misc check: no misc_path")
	}
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	cmd := exec.Command(c.Path[0], c.Path[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	out := &OutputBuffer{Max: maxMiscOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A descendant that left the group may hold the output pipe open: stop waiting for it.
	cmd.WaitDelay = time.Second
	cred, err := c.credential()
	if err != nil {
		return 0, err
	}
	cmd.SysProcAttr.Credential = cred
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("misc check: start %s: %w", c.Path[0], err)
	}
	// Kill the whole group, so that children the script started die with it.
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	stop()
	if ctx.Err() != nil && !cmd.ProcessState.Exited() {
		return 0, fmt.Errorf("misc check %s: killed: %w (output %q)", c.Path[0], context.DeadlineExceeded, out.String())
	}
	status := cmd.ProcessState.ExitCode()
	switch {
	case err != nil && status < 0:
		return 0, fmt.Errorf("%w: %s: %v (output %q)", ErrMiscExit, c.Path[0], err, out.String())
	case status == 0:
		return 0, nil
	case c.Dynamic && status >= 2:
		return status - 2 - c.Weight, nil
	}
	return 0, fmt.Errorf("%w: %s exited %d (output %q)", ErrMiscExit, c.Path[0], status, out.String())
}

// credential returns who the script runs as: nil for sluice's own user.
func (c MiscCheck) credential() (*syscall.Credential, error) {
	cred, err := ScriptCredential(c.User, c.Group)
	if err != nil {
		return nil, fmt.Errorf("misc check: %w", err)
	}
	return cred, nil
}

// ScriptCredential returns who a script configured with `user [group]` runs as (MISC_CHECK,
// notify scripts): nil for sluice's own user. When sluice runs as root, an empty user means
// the first of DefaultScriptUsers that exists and an empty group the user's group; without
// root, scripts run as sluice's user and naming another user is an error.
func ScriptCredential(name, group string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		if name != "" {
			if u, err := user.Current(); err != nil || u.Username != name {
				return nil, fmt.Errorf("cannot run as user %q without root", name)
			}
		}
		return nil, nil
	}
	var u *user.User
	var err error
	if name != "" {
		u, err = user.Lookup(name)
	} else {
		for _, n := range DefaultScriptUsers {
			if u, err = user.Lookup(n); err == nil {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up script user: %w", err)
	}
	gid := u.Gid
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("look up group: %w", err)
		}
		gid = g.Gid
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s has a non-numeric id", u.Username)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(g), Groups: []uint32{}}, nil
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c MiscCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. `MISC_CHECK ["/usr/local/bin/check" "-v"]`.
func (c MiscCheck) String() string {
	return fmt.Sprintf("MISC_CHECK %q [%v %v %d %q %q]", c.Path, c.CheckTimeout(), c.Dynamic, c.Weight, c.User, c.Group)
}

// OutputBuffer keeps the first Max bytes of a script's output and discards the rest, so a
// chatty or hostile script cannot grow the daemon's memory. Safe for concurrent writes.
type OutputBuffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *OutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.Max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// String returns what was kept.
func (b *OutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
