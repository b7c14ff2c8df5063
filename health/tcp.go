package health

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// TCPCheck is keepalived's TCP_CHECK: it passes when a TCP connection to Addr is established
// within Timeout. The connection is then closed normally (FIN, not RST), as keepalived does, so
// the server sees an orderly close rather than an error.
type TCPCheck struct {
	// Addr is connect_ip and connect_port.
	Addr netip.AddrPort
	// BindTo is bind_to: the local address of the probe, when valid.
	BindTo netip.Addr
	// Source is bind_port, bind_if and fwmark.
	Source Source
	// Timeout is connect_timeout; zero or less means DefaultTimeout.
	Timeout time.Duration
}

var _ TimeoutChecker = TCPCheck{}

// Check connects to Addr and closes the connection.
func (c TCPCheck) Check(ctx context.Context) error {
	if !c.Addr.IsValid() {
		return fmt.Errorf("tcp check: invalid address %v", c.Addr)
	}
	d := c.Source.dialer("tcp", c.BindTo)
	d.Timeout = c.CheckTimeout()
	conn, err := d.DialContext(ctx, "tcp", c.Addr.String())
	if err != nil {
		return fmt.Errorf("tcp connect to %s: %w", c.Addr, err)
	}
	// The probe passed once the handshake completed; an error closing is not the server's.
	_ = conn.Close()
	return nil
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c TCPCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. "TCP_CHECK 10.0.0.2:80".
func (c TCPCheck) String() string { return "TCP_CHECK " + c.Addr.String() }
