package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// DefaultHeloName is keepalived's helo_name default.
const DefaultHeloName = "smtpchecker.keepalived.org"

// maxSMTPReply bounds one SMTP reply, all its lines; RFC 5321 lines are at most 512 bytes.
const maxSMTPReply = 4 << 10

// ErrSMTPReply is reported for an SMTP reply that is malformed or has an unexpected code.
var ErrSMTPReply = errors.New("unexpected smtp reply")

// SMTPCheck is keepalived's SMTP_CHECK: it passes when the server greets with 220 and answers
// HELO with 250; it then sends QUIT and closes without waiting for the reply.
type SMTPCheck struct {
	// Addr is connect_ip and connect_port.
	Addr netip.AddrPort
	// BindTo is bindto: the local address of the probe, when valid.
	BindTo netip.Addr
	// Source is bind_port, bind_if and fwmark.
	Source Source
	// Timeout is connect_timeout, for the whole probe; zero or less means DefaultTimeout.
	Timeout time.Duration
	// HeloName is helo_name; empty means DefaultHeloName.
	HeloName string
}

var _ TimeoutChecker = SMTPCheck{}

// Check greets the server.
func (c SMTPCheck) Check(ctx context.Context) error {
	helo := c.HeloName
	if helo == "" {
		helo = DefaultHeloName
	}
	if !c.Addr.IsValid() || strings.ContainsAny(helo, "\r\n") {
		return fmt.Errorf("smtp check: invalid address %v or helo name %q", c.Addr, helo)
	}
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	conn, err := dialTCP(ctx, c.Addr, c.BindTo, c.Source)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 1024)
	if err := smtpExpect(br, 220); err != nil {
		return fmt.Errorf("smtp greeting from %s: %w", c.Addr, deadlineErr(err))
	}
	if _, err := fmt.Fprintf(conn, "HELO %s\r\n", helo); err != nil {
		return fmt.Errorf("send helo to %s: %w", c.Addr, deadlineErr(err))
	}
	if err := smtpExpect(br, 250); err != nil {
		return fmt.Errorf("smtp helo reply from %s: %w", c.Addr, deadlineErr(err))
	}
	_, _ = conn.Write([]byte("QUIT\r\n")) // the check passed; the server's goodbye does not matter
	return nil
}

// smtpExpect reads one reply, possibly multi-line ("250-..." lines then "250 ..."), and checks
// its code.
func smtpExpect(br *bufio.Reader, want int) error {
	read := 0
	for {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if errors.Is(err, bufio.ErrBufferFull) || read > maxSMTPReply {
			return fmt.Errorf("%w: reply over %d bytes", ErrSMTPReply, maxSMTPReply)
		}
		if err != nil {
			return err
		}
		if len(line) < 4 || line[3] != ' ' && line[3] != '-' && line[3] != '\r' {
			return fmt.Errorf("%w: %q", ErrSMTPReply, truncate(line))
		}
		code := 0
		for _, ch := range line[:3] {
			if ch < '0' || ch > '9' {
				return fmt.Errorf("%w: %q", ErrSMTPReply, truncate(line))
			}
			code = code*10 + int(ch-'0')
		}
		if code != want {
			return fmt.Errorf("%w: got %d, want %d", ErrSMTPReply, code, want)
		}
		if line[3] != '-' {
			return nil
		}
	}
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c SMTPCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. "SMTP_CHECK 10.0.0.2:25".
func (c SMTPCheck) String() string {
	return fmt.Sprintf("SMTP_CHECK %s [%v %v %q %+v]", c.Addr, bindString(c.BindTo), c.CheckTimeout(), c.HeloName, c.Source)
}

// dialTCP connects to addr from bindTo (when valid) and src, and bounds the connection's reads and
// writes by ctx: its deadline, and its cancellation.
func dialTCP(ctx context.Context, addr netip.AddrPort, bindTo netip.Addr, src Source) (net.Conn, error) {
	d := src.dialer("tcp", bindTo)
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return boundConn(ctx, conn), nil
}

// boundConn sets conn's deadline to ctx's and expires it when ctx is cancelled.
func boundConn(ctx context.Context, conn net.Conn) net.Conn {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return &stopConn{Conn: conn, stop: stop}
}

type stopConn struct {
	net.Conn
	stop func() bool
}

func (c *stopConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// deadlineErr marks an I/O timeout as the check's deadline.
func deadlineErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}
