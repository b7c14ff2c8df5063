package control

import (
	"fmt"
	"io"
)

// SetInterfaces makes Status list the data plane's interfaces as f reports them; call it before
// serving.
func (s *State) SetInterfaces(f func() []Interface) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ifaces = f
}

// interfaces lists the data plane's interfaces, nil when it reports none.
func (s *State) interfaces() []Interface {
	s.mu.Lock()
	f := s.ifaces
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f()
}

// writeInterfaces prints one line per interface the data plane runs on, with its mode.
func writeInterfaces(w io.Writer, ifaces []Interface) {
	for _, i := range ifaces {
		if i.Reason != "" {
			fmt.Fprintf(w, "interface %s: %s (%s)\n", i.Name, i.Mode, i.Reason)
		} else {
			fmt.Fprintf(w, "interface %s: %s\n", i.Name, i.Mode)
		}
	}
}
