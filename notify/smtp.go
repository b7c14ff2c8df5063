package notify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/config"
)

// DefaultSMTPTimeout is keepalived's smtp_connect_timeout default: it bounds the connection
// and each exchange with the server.
const DefaultSMTPTimeout = 30 * time.Second

const (
	maxReplyLine  = 1024 // an SMTP reply line, per RFC 5321 at most 512 bytes
	maxReplyLines = 64   // lines of one multi-line reply
)

// Mail is one e-mail alert.
type Mail struct {
	Subject string
	Body    string
}

// SMTP is where and how alerts are sent: global_defs smtp_server, smtp_helo_name,
// smtp_connect_timeout, notification_email_from and notification_email.
type SMTP struct {
	Addr    string // host:port
	Helo    string
	From    string
	To      []string
	Timeout time.Duration
}

// SMTPOf derives the mail settings from global_defs, with keepalived's defaults (port 25,
// HELO and sender domain the host name). ok is false when alerts cannot be sent: no
// notification_email or no smtp_server.
func SMTPOf(g config.GlobalDefs, hostname string) (s SMTP, ok bool, err error) {
	if len(g.NotificationEmail) == 0 || g.SMTPServer == "" {
		return SMTP{}, false, nil
	}
	f := strings.Fields(g.SMTPServer)
	port := "25"
	if len(f) > 1 {
		if p, err := strconv.ParseUint(f[1], 10, 16); err != nil || p == 0 {
			return SMTP{}, false, fmt.Errorf("smtp_server %q: invalid port %q", g.SMTPServer, f[1])
		}
		port = f[1]
	}
	s = SMTP{
		Addr:    net.JoinHostPort(f[0], port),
		Helo:    g.SMTPHeloName,
		From:    g.NotificationEmailFrom,
		To:      g.NotificationEmail,
		Timeout: g.SMTPConnectTimeout,
	}
	if s.Helo == "" {
		s.Helo = hostname
	}
	if s.From == "" {
		s.From = "keepalived@" + hostname
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultSMTPTimeout
	}
	for _, a := range append([]string{s.From, s.Helo}, s.To...) {
		if strings.ContainsAny(a, "\r\n<> \t") {
			return SMTP{}, false, fmt.Errorf("e-mail setting %q: invalid characters", a)
		}
	}
	return s, true, nil
}

// Send delivers m with one SMTP session: HELO, MAIL FROM, RCPT TO per recipient, DATA, QUIT,
// as keepalived does (no TLS, no authentication). Each step has the timeout as its deadline
// and every reply is read with bounded line length and count, so a hostile or stuck server
// can delay an alert by a bounded time and never more.
func (s SMTP) Send(ctx context.Context, m Mail, now time.Time) error {
	d := net.Dialer{Timeout: s.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("send alert: connect to %s: %w", s.Addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(conn, maxReplyLine)
	step := func(cmd string, want int) error {
		if err := conn.SetDeadline(time.Now().Add(s.Timeout)); err != nil {
			return err
		}
		if cmd != "" {
			if _, err := conn.Write([]byte(cmd)); err != nil {
				return err
			}
		}
		code, text, err := readReply(r)
		if err != nil {
			return err
		}
		if code != want {
			return fmt.Errorf("server replied %d %s", code, text)
		}
		return nil
	}
	steps := []smtpStep{{"greeting", "", 220}, {"HELO", "HELO " + s.Helo + "\r\n", 250},
		{"MAIL FROM", "MAIL FROM:<" + s.From + ">\r\n", 250}}
	for _, to := range s.To {
		steps = append(steps, smtpStep{"RCPT TO " + to, "RCPT TO:<" + to + ">\r\n", 250})
	}
	steps = append(steps, smtpStep{"DATA", "DATA\r\n", 354}, smtpStep{"message", message(s, m, now), 250})
	for _, st := range steps {
		if err := step(st.cmd, st.want); err != nil {
			return fmt.Errorf("send alert via %s: %s: %w", s.Addr, st.name, err)
		}
	}
	// The message is accepted; a QUIT the server does not answer changes nothing.
	_ = step("QUIT\r\n", 221)
	return nil
}

// smtpStep is one command of a session and the reply code it needs.
type smtpStep struct {
	name string
	cmd  string
	want int
}

// message is the DATA of an alert, with keepalived's headers, dot-stuffed and ended by ".".
func message(s SMTP, m Mail, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: %s\r\n", s.From)
	fmt.Fprintf(&b, "Subject: %s\r\n", oneLine(m.Subject))
	b.WriteString("X-Mailer: Sluice\r\n")
	fmt.Fprintf(&b, "To: %s\r\n\r\n", strings.Join(s.To, ", "))
	for _, line := range strings.Split(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.String()
}

// oneLine keeps a header value on one line, so no name in the configuration can add headers.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

var errReply = errors.New("malformed reply")

// readReply reads one (possibly multi-line) SMTP reply and returns its code and last text.
func readReply(r *bufio.Reader) (int, string, error) {
	for range maxReplyLines {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, "", fmt.Errorf("%w: line longer than %d bytes", errReply, maxReplyLine)
		}
		if err != nil {
			return 0, "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return 0, "", fmt.Errorf("%w: %q", errReply, line)
		}
		code, err := strconv.Atoi(string(line[:3]))
		if err != nil || code < 200 || code > 599 {
			return 0, "", fmt.Errorf("%w: %q", errReply, line)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		return code, string(line[min(len(line), 4):]), nil
	}
	return 0, "", fmt.Errorf("%w: more than %d lines", errReply, maxReplyLines)
}
