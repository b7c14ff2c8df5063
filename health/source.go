package health

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Source holds the generic connection options of keepalived's checkers that say where a probe
// comes from, besides bindto.
type Source struct {
	// BindPort is bind_port: the probe's source port; 0 means any.
	BindPort uint16
	// BindIf is bind_if: the interface the probe's socket is bound to (SO_BINDTODEVICE), which
	// an IPv6 link-local bindto needs.
	BindIf string
	// FWMark is fwmark: the mark set on the probe's packets (SO_MARK); 0 means none.
	FWMark uint32
}

// dialer returns a net.Dialer whose sockets come from bindTo and s.
func (s Source) dialer(network string, bindTo netip.Addr) net.Dialer {
	var d net.Dialer
	switch {
	case bindTo.IsValid():
		if bindTo.Is6() && bindTo.Zone() == "" && s.BindIf != "" {
			bindTo = bindTo.WithZone(s.BindIf)
		}
		local := netip.AddrPortFrom(bindTo, s.BindPort)
		if network == "udp" {
			d.LocalAddr = net.UDPAddrFromAddrPort(local)
		} else {
			d.LocalAddr = net.TCPAddrFromAddrPort(local)
		}
	case s.BindPort != 0:
		// No address: the wildcard of the destination's family.
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{Port: int(s.BindPort)}
		} else {
			d.LocalAddr = &net.TCPAddr{Port: int(s.BindPort)}
		}
	}
	if s.BindIf == "" && s.FWMark == 0 {
		return d
	}
	d.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if s.BindIf != "" {
				if serr = unix.BindToDevice(int(fd), s.BindIf); serr != nil {
					serr = fmt.Errorf("bind to interface %s: %w", s.BindIf, serr)
					return
				}
			}
			if s.FWMark != 0 {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(s.FWMark)); serr != nil {
					serr = fmt.Errorf("set fwmark %#x: %w", s.FWMark, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	return d
}

// bindString is bindto as check descriptions print it: "any" when unset.
func bindString(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}
