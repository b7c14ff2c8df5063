package notify

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
)

// received is one message the test SMTP server accepted.
type received struct {
	Helo, From string
	To         []string
	Data       string
}

// smtpServer is a minimal SMTP server on loopback for the tests: it serves at most max
// sessions, each with a deadline and bounded lines, and sends what it receives on the channel.
func smtpServer(t *testing.T, max int) (addr string, got <-chan received) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan received, max)
	go func() {
		for range max {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serveSMTP(c, ch)
		}
	}()
	return ln.Addr().String(), ch
}

func serveSMTP(c net.Conn, out chan<- received) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	var m received
	say("220-test.example ESMTP")
	say("220 ready")
	for range 1000 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(cmd, "HELO "):
			m.Helo = line[5:]
			say("250 hello")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m.From = line[10:]
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.To = append(m.To, line[8:])
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			var b strings.Builder
			for range 1000 {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			m.Data = b.String()
			out <- m
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("500 what")
		}
	}
}

func TestSMTPOf(t *testing.T) {
	tests := []struct {
		name    string
		g       config.GlobalDefs
		want    SMTP
		ok      bool
		wantErr bool
	}{
		{"no recipients", config.GlobalDefs{SMTPServer: "127.0.0.1"}, SMTP{}, false, false},
		{"no server", config.GlobalDefs{NotificationEmail: []string{"a@example.com"}}, SMTP{}, false, false},
		{"defaults", config.GlobalDefs{SMTPServer: "192.0.2.25", NotificationEmail: []string{"a@example.com"}},
			SMTP{Addr: "192.0.2.25:25", Helo: "lb1", From: "keepalived@lb1", To: []string{"a@example.com"}, Timeout: DefaultSMTPTimeout}, true, false},
		{"everything set, ipv6", config.GlobalDefs{SMTPServer: "2001:db8::25 2525", NotificationEmail: []string{"a@example.com", "b@example.com"},
			NotificationEmailFrom: "lb@example.com", SMTPHeloName: "lb.example.com", SMTPConnectTimeout: 3 * time.Second},
			SMTP{Addr: "[2001:db8::25]:2525", Helo: "lb.example.com", From: "lb@example.com", To: []string{"a@example.com", "b@example.com"}, Timeout: 3 * time.Second}, true, false},
		{"bad port", config.GlobalDefs{SMTPServer: "mail 99999", NotificationEmail: []string{"a@example.com"}}, SMTP{}, false, true},
		{"address with a line break", config.GlobalDefs{SMTPServer: "mail", NotificationEmail: []string{"a@example.com>\r\nRCPT TO:<x"}}, SMTP{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := SMTPOf(tt.g, "lb1")
			if (err != nil) != tt.wantErr || ok != tt.ok {
				t.Fatalf("SMTPOf = %+v, %v, %v; want ok %v, error %v", got, ok, err, tt.ok, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SMTPOf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSend(t *testing.T) {
	addr, got := smtpServer(t, 1)
	s := SMTP{Addr: addr, Helo: "lb1", From: "lb@example.com", To: []string{"ops@example.com", "noc@example.com"}, Timeout: 5 * time.Second}
	now := time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)
	m := Mail{Subject: "[lb1] VRRP Instance VI_1 - Entering MASTER state\r\nBcc: evil@example.com", Body: "=> line one <=\n.leading dot"}
	if err := s.Send(t.Context(), m, now); err != nil {
		t.Fatal(err)
	}
	r := <-got
	want := received{Helo: "lb1", From: "<lb@example.com>", To: []string{"<ops@example.com>", "<noc@example.com>"},
		Data: "Date: Mon, 23 Nov 2026 13:00:00 +0000\r\n" +
			"From: lb@example.com\r\n" +
			"Subject: [lb1] VRRP Instance VI_1 - Entering MASTER state  Bcc: evil@example.com\r\n" +
			"X-Mailer: Sluice\r\n" +
			"To: ops@example.com, noc@example.com\r\n\r\n" +
			"=> line one <=\r\n" +
			"..leading dot\r\n"}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
}

// TestSendHostile checks a server that stalls, floods or lies delays an alert by a bounded
// time and yields an error.
func TestSendHostile(t *testing.T) {
	tests := []struct {
		name  string
		serve func(c net.Conn)
		want  string
	}{
		{"silent", func(c net.Conn) { time.Sleep(3 * time.Second) }, "i/o timeout"},
		{"endless line", func(c net.Conn) {
			c.Write([]byte("220 " + strings.Repeat("x", 64<<10)))
		}, "longer than"},
		{"endless continuation", func(c net.Conn) {
			for range 200 {
				c.Write([]byte("220-more\r\n"))
			}
		}, "more than"},
		{"garbage", func(c net.Conn) { c.Write([]byte("hello there\r\n")) }, "malformed reply"},
		{"refuses the recipient", func(c net.Conn) {
			r := bufio.NewReader(c)
			c.Write([]byte("220 hi\r\n"))
			for _, reply := range []string{"250 hi", "250 ok", "550 no such user"} {
				r.ReadString('\n')
				c.Write([]byte(reply + "\r\n"))
			}
		}, "RCPT TO ops@example.com: server replied 550"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				tt.serve(c)
			}()
			s := SMTP{Addr: ln.Addr().String(), Helo: "lb1", From: "lb@example.com", To: []string{"ops@example.com"}, Timeout: 300 * time.Millisecond}
			start := time.Now()
			err = s.Send(t.Context(), Mail{Subject: "s", Body: "b"}, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Send = %v, want an error containing %q", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Send took %v with a 300ms timeout", d)
			}
		})
	}
}

func TestSendCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	s := SMTP{Addr: ln.Addr().String(), Helo: "h", From: "f@x", To: []string{"t@x"}, Timeout: time.Minute}
	start := time.Now()
	if err := s.Send(ctx, Mail{}, time.Now()); err == nil {
		t.Fatal("Send succeeded against a silent server")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled Send took %v", d)
	}
}

func TestAlertRules(t *testing.T) {
	on, off := new(bool), new(bool)
	*on = true
	tests := []struct {
		name                string
		g                   config.GlobalDefs
		instance            bool
		rs, vs              *bool
		wantVRRP, wantRS, w bool
	}{
		{"nothing set: real servers only (keepalived's old default)", config.GlobalDefs{}, false, nil, nil, false, true, false},
		{"instance smtp_alert", config.GlobalDefs{}, true, nil, nil, true, true, false},
		{"global smtp_alert on", config.GlobalDefs{SMTPAlert: on}, false, nil, nil, true, true, true},
		{"global smtp_alert off", config.GlobalDefs{SMTPAlert: off}, false, nil, nil, false, false, false},
		{"smtp_alert_vrrp beats smtp_alert", config.GlobalDefs{SMTPAlert: on, SMTPAlertVRRP: off}, false, nil, nil, false, true, true},
		{"smtp_alert_checker beats smtp_alert", config.GlobalDefs{SMTPAlert: off, SMTPAlertChecker: on}, false, nil, nil, false, true, true},
		{"own settings win", config.GlobalDefs{SMTPAlert: on}, false, off, off, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vrrpAlert(tt.g, tt.instance); got != tt.wantVRRP {
				t.Errorf("vrrp alert = %v, want %v", got, tt.wantVRRP)
			}
			if got := checkerAlert(tt.g, tt.rs); got != tt.wantRS {
				t.Errorf("real server alert = %v, want %v", got, tt.wantRS)
			}
			if got := virtualServerAlert(tt.g, tt.vs); got != tt.w {
				t.Errorf("virtual server alert = %v, want %v", got, tt.w)
			}
		})
	}
}

func TestMails(t *testing.T) {
	vs := config.VirtualServer{Addr: mustAddr("192.0.2.1"), Port: 80, Protocol: config.TCP}
	rs := config.RealServer{Addr: mustAddr("10.0.0.1"), Port: 8080, Checkers: []config.Checker{{Kind: config.KindTCP}}}
	tests := []struct {
		name string
		got  Mail
		want Mail
	}{
		{"master", VRRPMail("lb1", "INSTANCE", "VI_1", StateMaster),
			Mail{"[lb1] VRRP Instance VI_1 - Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="}},
		{"backup", VRRPMail("lb1", "INSTANCE", "VI_1", StateBackup),
			Mail{"[lb1] VRRP Instance VI_1 - Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="}},
		{"stop", VRRPMail("lb1", "INSTANCE", "VI_1", StateStop),
			Mail{"[lb1] VRRP Instance VI_1 - Stopping", "=> VRRP Instance stopping <="}},
		{"group fault", VRRPMail("lb1", "GROUP", "G", StateFault),
			Mail{"[lb1] VRRP Group G - Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="}},
		{"real server down", RealServerMail("lb1", vs, rs, false),
			Mail{"[lb1] Realserver [10.0.0.1]:tcp:8080 of virtual server [192.0.2.1]:tcp:80 - DOWN", "=> TCP CHECK failed on service <="}},
		{"real server up", RealServerMail("lb1", vs, rs, true),
			Mail{"[lb1] Realserver [10.0.0.1]:tcp:8080 of virtual server [192.0.2.1]:tcp:80 - UP", "=> TCP CHECK succeed on service <="}},
		{"quorum", VirtualServerMail("lb1", vs, false), Mail{"[lb1] Virtualserver [192.0.2.1]:tcp:80 - DOWN", "=> Lost quorum <="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("mail (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250 b\r\n", "x\r\n", "2\r\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, _, err := readReply(bufio.NewReaderSize(strings.NewReader(s), maxReplyLine))
		if err == nil && (code < 200 || code > 599) {
			t.Errorf("code %d accepted", code)
		}
		if err != nil && !errors.Is(err, errReply) && code != 0 {
			t.Errorf("code %d with error %v", code, err)
		}
	})
}
