package netns

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Command returns a command that runs name inside the namespace through `ip netns exec`, which
// execs it in place: the command's process is name itself, so signals reach it directly.
// Close kills it if it is still running.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.CommandContext(n.env.ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Proc is a long-running process started with Env.Start.
type Proc struct {
	Cmd *exec.Cmd

	done chan struct{}
	err  error // Wait's result, set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// StopGrace is how long Close lets a process exit on SIGTERM before it sends SIGKILL.
const StopGrace = 10 * time.Second

// Start starts cmd (typically from Command, with its output set up by the caller), waits for
// it in the background and stops it at Close if it is still running then.
func (e *Env) Start(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.Defer(func() error {
		if err := p.Stop(StopGrace); err != nil && !isSignalled(err) {
			return err
		}
		return nil
	})
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns how the process exited (nil for status 0) once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then kills it. It returns how
// the process exited; later calls return the same.
func (p *Proc) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			p.stopErr = p.err
			return
		default:
		}
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.Cmd.Process.Kill()
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			p.stopErr = p.err
		case <-t.C:
			p.Cmd.Process.Kill()
			<-p.done
			p.stopErr = fmt.Errorf("%s did not exit within %v of SIGTERM; killed: %w", p.Cmd, grace, p.err)
		}
	})
	return p.stopErr
}

func isSignalled(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
