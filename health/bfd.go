package health

import (
	"context"
	"errors"
	"fmt"
)

// BFDStates reports the sessions of bfd_instances; bfd.Manager's state, adapted, is one.
type BFDStates interface {
	// BFDUp reports whether the named instance's session is Up; known is false for a name
	// with no session.
	BFDUp(name string) (up, known bool)
}

// ErrBFDDown is the failure of a BFDCheck whose session is not Up.
var ErrBFDDown = errors.New("bfd session is not up")

// BFDCheck is keepalived's BFD_CHECK: it passes while the session of bfd_instance Name is Up.
// It sends nothing itself; each probe reads the session's state, so the real server follows
// the session at the next delay_loop.
type BFDCheck struct {
	Name     string
	Sessions BFDStates
}

// Check passes when the session is Up.
func (c BFDCheck) Check(context.Context) error {
	if c.Sessions == nil {
		return fmt.Errorf("bfd_instance %s: no bfd sessions run", c.Name)
	}
	up, known := c.Sessions.BFDUp(c.Name)
	switch {
	case !known:
		return fmt.Errorf("bfd_instance %s: no such session", c.Name)
	case !up:
		return fmt.Errorf("bfd_instance %s: %w", c.Name, ErrBFDDown)
	}
	return nil
}

// String describes the check, e.g. "BFD_CHECK edge".
func (c BFDCheck) String() string { return "BFD_CHECK " + c.Name }

// probeKey merges BFD_CHECKs of one instance from several virtual servers.
func (c BFDCheck) probeKey() string { return c.Name }
