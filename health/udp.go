package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ErrUDPReply is reported for a UDP reply that is missing, of the wrong length or content.
var ErrUDPReply = errors.New("bad udp reply")

// DefaultMaxReplyLength is max_reply_length's default.
const DefaultMaxReplyLength = 255

// UDPCheck is keepalived's UDP_CHECK. It sends Payload (8 random bytes when empty) from a
// connected UDP socket. An ICMP error (port or host unreachable) fails the check. Without
// RequireReply, the check passes when no error arrives within nine tenths of the timeout (the
// rest is left so that it returns before the Scheduler's deadline), or at the first reply.
// With RequireReply a reply must arrive, its length within [MinReplyLength, MaxReplyLength],
// and it must match ReplyPattern over the shorter of the two.
type UDPCheck struct {
	// Addr is connect_ip and connect_port.
	Addr netip.AddrPort
	// BindTo is bindto: the local address of the probe, when valid.
	BindTo netip.Addr
	// Source is bind_port, bind_if and fwmark.
	Source Source
	// Timeout is connect_timeout; zero or less means DefaultTimeout.
	Timeout time.Duration
	// Payload is payload, decoded with ParseHex.
	Payload []byte
	// RequireReply is require_reply; ReplyPattern is its optional HEX_STR, decoded with
	// ParseHexPattern.
	RequireReply bool
	ReplyPattern HexPattern
	// MinReplyLength and MaxReplyLength are min_reply_length and max_reply_length; zero
	// MaxReplyLength means DefaultMaxReplyLength.
	MinReplyLength, MaxReplyLength int
}

var _ TimeoutChecker = UDPCheck{}

// HexPattern is a byte string with wildcard nibbles: Mask has 0 bits where the reply's bits
// are not compared.
type HexPattern struct {
	Data, Mask []byte
}

// ParseHex decodes keepalived's free-format hex: groups separated by spaces are read two
// digits at a time, an odd last digit standing for one byte ("Ab12f 3" is AB 12 0F 03).
func ParseHex(s string) ([]byte, error) {
	p, err := ParseHexPattern(s)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p.Mask, bytes.Repeat([]byte{0xff}, len(p.Mask))) {
		return nil, fmt.Errorf("parse hex %q: wildcard X only allowed in require_reply", s)
	}
	return p.Data, nil
}

// ParseHexPattern decodes require_reply's HEX_STR: ParseHex's format where X or x is a
// wildcard nibble.
func ParseHexPattern(s string) (HexPattern, error) {
	var p HexPattern
	for _, group := range strings.Fields(s) {
		for i := 0; i < len(group); i += 2 {
			pair := group[i:min(i+2, len(group))]
			if len(pair) == 1 {
				pair = "0" + pair
			}
			var b, m byte
			for _, ch := range []byte(pair) {
				v, mv, ok := hexNibble(ch)
				if !ok {
					return HexPattern{}, fmt.Errorf("parse hex %q: bad digit %q", s, ch)
				}
				b, m = b<<4|v, m<<4|mv
			}
			p.Data, p.Mask = append(p.Data, b), append(p.Mask, m)
		}
	}
	return p, nil
}

func hexNibble(ch byte) (v, mask byte, ok bool) {
	switch {
	case ch >= '0' && ch <= '9':
		return ch - '0', 0xf, true
	case ch >= 'a' && ch <= 'f':
		return ch - 'a' + 10, 0xf, true
	case ch >= 'A' && ch <= 'F':
		return ch - 'A' + 10, 0xf, true
	case ch == 'x' || ch == 'X':
		return 0, 0, true
	}
	return 0, 0, false
}

// Match reports whether reply matches p over the shorter of the two.
func (p HexPattern) Match(reply []byte) bool {
	for i := range min(len(reply), len(p.Data)) {
		if reply[i]&p.Mask[i] != p.Data[i]&p.Mask[i] {
			return false
		}
	}
	return true
}

// Check sends the payload and waits for an error or a reply.
func (c UDPCheck) Check(ctx context.Context) error {
	if !c.Addr.IsValid() {
		return fmt.Errorf("udp check: invalid address %v", c.Addr)
	}
	wait := c.CheckTimeout() * 9 / 10
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	payload := c.Payload
	if len(payload) == 0 {
		payload = make([]byte, 8)
		_, _ = rand.Read(payload)
	}
	d := c.Source.dialer("udp", c.BindTo)
	conn, err := d.DialContext(ctx, "udp", c.Addr.String())
	if err != nil {
		return fmt.Errorf("udp check: dial %s: %w", c.Addr, err)
	}
	conn = boundConn(ctx, conn)
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		return fmt.Errorf("udp send to %s: %w", c.Addr, err)
	}
	max := c.MaxReplyLength
	if max <= 0 {
		max = DefaultMaxReplyLength
	}
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && !c.RequireReply && ctx.Err() != context.Canceled:
		return nil // no ICMP error: the port is taken to be open
	case err != nil:
		return fmt.Errorf("udp reply from %s: %w", c.Addr, deadlineErr(err))
	case !c.RequireReply:
		return nil
	case n < c.MinReplyLength || n > max:
		return fmt.Errorf("%w: %d bytes from %s, want %d to %d", ErrUDPReply, n, c.Addr, c.MinReplyLength, max)
	case !c.ReplyPattern.Match(buf[:n]):
		return fmt.Errorf("%w: reply from %s does not match the pattern", ErrUDPReply, c.Addr)
	}
	return nil
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c UDPCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. "UDP_CHECK 10.0.0.2:53".
func (c UDPCheck) String() string {
	return fmt.Sprintf("UDP_CHECK %s [%v %v %x %v %x/%x %d %d]", c.Addr, bindString(c.BindTo), c.CheckTimeout(), c.Payload,
		c.RequireReply, c.ReplyPattern.Data, c.ReplyPattern.Mask, c.MinReplyLength, c.MaxReplyLength)
}
