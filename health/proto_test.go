package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"
)

// smtpServer runs a scripted SMTP server: greeting is sent first, then heloReply to HELO.
// The HELO lines it receives are sent on the returned channel.
func smtpServer(t *testing.T, greeting, heloReply string) (netip.AddrPort, <-chan string) {
	t.Helper()
	helos := make(chan string, 8)
	addr := rawListener(t, func(c net.Conn) {
		io.WriteString(c, greeting)
		br := bufio.NewReader(io.LimitReader(c, 4096))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		helos <- line
		io.WriteString(c, heloReply)
		br.ReadString('\n') // QUIT
		io.WriteString(c, "221 bye\r\n")
	})
	return addr, helos
}

// rawListener serves each TCP connection on loopback with handle.
func rawListener(t *testing.T, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestSMTPCheck(t *testing.T) {
	const timeout = 500 * time.Millisecond
	tests := []struct {
		name      string
		greeting  string
		helo      string
		heloName  string
		wantHelo  string
		wantErr   error
		wantError bool
	}{
		{name: "greets", greeting: "220 mx.example ESMTP\r\n", helo: "250 mx.example\r\n", wantHelo: "HELO smtpchecker.keepalived.org\r\n"},
		{name: "helo_name", greeting: "220 mx\r\n", helo: "250 ok\r\n", heloName: "lb1.example", wantHelo: "HELO lb1.example\r\n"},
		{name: "multi-line greeting", greeting: "220-mx.example\r\n220-more\r\n220 ready\r\n", helo: "250-mx\r\n250 ok\r\n", wantHelo: "HELO smtpchecker.keepalived.org\r\n"},
		{name: "busy server", greeting: "421 too busy\r\n", wantErr: ErrSMTPReply},
		{name: "helo refused", greeting: "220 mx\r\n", helo: "550 go away\r\n", wantErr: ErrSMTPReply},
		{name: "garbage", greeting: "HTTP/1.1 200 OK\r\n", wantErr: ErrSMTPReply},
		{name: "endless greeting", greeting: strings.Repeat("220-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 200), wantErr: ErrSMTPReply},
		{name: "silent server", greeting: "", wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, helos := smtpServer(t, tt.greeting, tt.helo)
			c := SMTPCheck{Addr: addr, Timeout: timeout, HeloName: tt.heloName}
			start := time.Now()
			err := c.Check(context.Background())
			if time.Since(start) > timeout+time.Second {
				t.Errorf("Check took %v", time.Since(start))
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
			if tt.wantHelo != "" {
				if got := <-helos; got != tt.wantHelo {
					t.Errorf("HELO line = %q, want %q", got, tt.wantHelo)
				}
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		err := SMTPCheck{Addr: closedPort(t), Timeout: timeout}.Check(context.Background())
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Check = %v, want %v", err, syscall.ECONNREFUSED)
		}
	})
}

// dnsServer answers queries on loopback UDP with reply(query) (nil: no answer).
func dnsServer(t *testing.T, reply func(q dnsmessage.Message) [][]byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, r := range reply(q) {
				pc.WriteTo(r, from)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func dnsReply(t *testing.T, q dnsmessage.Message, rcode dnsmessage.RCode, answers int, id uint16) []byte {
	r := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, Response: true, RCode: rcode},
		Questions: q.Questions,
	}
	for range answers {
		r.Answers = append(r.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}},
		})
	}
	b, err := r.Pack()
	if err != nil {
		t.Errorf("pack reply: %v", err)
	}
	return b
}

func TestDNSCheck(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var asked = make(chan dnsmessage.Question, 16)
	tests := []struct {
		name     string
		typ, qn  string
		reply    func(q dnsmessage.Message) [][]byte
		wantQ    string
		wantErr  error
		wantFail bool
	}{
		{name: "answer", typ: "A", qn: "www.example.org", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeSuccess, 1, q.ID)}
		}, wantQ: "www.example.org. TypeA"},
		{name: "default soa of the root", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeSuccess, 1, q.ID)}
		}, wantQ: ". TypeSOA"},
		{name: "spoofed id first is ignored", typ: "MX", qn: "example.org.", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeNameError, 0, q.ID+1), []byte("garbage"), dnsReply(t, q, dnsmessage.RCodeSuccess, 1, q.ID)}
		}, wantQ: "example.org. TypeMX"},
		{name: "nxdomain", typ: "AAAA", qn: "nope.example", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeNameError, 0, q.ID)}
		}, wantErr: ErrDNSReply},
		{name: "no answer", typ: "TXT", qn: "example.org", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeSuccess, 0, q.ID)}
		}, wantErr: ErrDNSReply},
		{name: "only a wrong id", typ: "NS", qn: "example.org", reply: func(q dnsmessage.Message) [][]byte {
			return [][]byte{dnsReply(t, q, dnsmessage.RCodeSuccess, 1, q.ID^0xffff)}
		}, wantErr: context.DeadlineExceeded},
		{name: "silent", typ: "CNAME", qn: "example.org", reply: func(q dnsmessage.Message) [][]byte { return nil }, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := dnsServer(t, func(q dnsmessage.Message) [][]byte {
				asked <- q.Questions[0]
				return tt.reply(q)
			})
			start := time.Now()
			err := DNSCheck{Addr: addr, Timeout: timeout, Type: tt.typ, Name: tt.qn}.Check(context.Background())
			if time.Since(start) > timeout+time.Second {
				t.Errorf("Check took %v", time.Since(start))
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
			q := <-asked
			if got := fmt.Sprintf("%s %v", q.Name, q.Type); tt.wantQ != "" && got != tt.wantQ {
				t.Errorf("question = %s, want %s", got, tt.wantQ)
			}
		})
	}
	if err := (DNSCheck{Addr: netip.MustParseAddrPort("127.0.0.1:53"), Type: "PTR"}).Check(context.Background()); err == nil {
		t.Error("Check with type PTR succeeded")
	}
}

func TestParseHex(t *testing.T) {
	got, err := ParseHex("Ab12f 3 456 546443123")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseHex (-want +got):\n%s", diff)
	}
	p, err := ParseHexPattern("aXx1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(HexPattern{Data: []byte{0xa0, 0x01}, Mask: []byte{0xf0, 0x0f}}, p); diff != "" {
		t.Errorf("ParseHexPattern (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"zz", "1x"} {
		if _, err := ParseHex(bad); err == nil {
			t.Errorf("ParseHex(%q) succeeded", bad)
		}
	}
}

// udpServer replies to each datagram with reply(payload), or not at all when it returns nil.
func udpServer(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func closedUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return addr
}

func TestUDPCheck(t *testing.T) {
	const timeout = 400 * time.Millisecond
	echo := udpServer(t, func(p []byte) []byte { return append([]byte(nil), p...) })
	silent := udpServer(t, func([]byte) []byte { return nil })
	fixed := udpServer(t, func([]byte) []byte { return []byte{0xca, 0xfe, 0x12, 0x34} })
	pat := func(s string) HexPattern {
		p, err := ParseHexPattern(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		c       UDPCheck
		wantErr error
	}{
		{name: "echo with reply required", c: UDPCheck{Addr: echo, Payload: []byte("ping"), RequireReply: true}},
		{name: "reply matches wildcard pattern", c: UDPCheck{Addr: fixed, RequireReply: true, ReplyPattern: pat("caXe 1x")}},
		{name: "pattern longer than reply compares the reply's length", c: UDPCheck{Addr: fixed, RequireReply: true, ReplyPattern: pat("cafe1234 5678")}},
		{name: "lying reply", c: UDPCheck{Addr: fixed, RequireReply: true, ReplyPattern: pat("cafe99")}, wantErr: ErrUDPReply},
		{name: "reply too short", c: UDPCheck{Addr: fixed, RequireReply: true, MinReplyLength: 5}, wantErr: ErrUDPReply},
		{name: "reply too long", c: UDPCheck{Addr: fixed, RequireReply: true, MaxReplyLength: 3}, wantErr: ErrUDPReply},
		{name: "silent server, reply required", c: UDPCheck{Addr: silent, RequireReply: true}, wantErr: context.DeadlineExceeded},
		{name: "silent server, no reply required", c: UDPCheck{Addr: silent}},
		{name: "port unreachable", c: UDPCheck{Addr: closedUDPPort(t)}, wantErr: syscall.ECONNREFUSED},
		{name: "port unreachable, reply required", c: UDPCheck{Addr: closedUDPPort(t), RequireReply: true}, wantErr: syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Timeout = timeout
			start := time.Now()
			err := tt.c.Check(context.Background())
			if elapsed := time.Since(start); elapsed >= timeout {
				t.Errorf("Check took %v, not less than its timeout %v", elapsed, timeout)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func FuzzSMTPReply(f *testing.F) {
	f.Add([]byte("220 mx ready\r\n"), 220)
	f.Add([]byte("250-mx\r\n250-SIZE 1000\r\n250 OK\r\n"), 250)
	f.Add([]byte("421\r\n"), 220)
	f.Fuzz(func(t *testing.T, data []byte, want int) {
		err := smtpExpect(bufio.NewReaderSize(bytes.NewReader(data), 1024), want)
		if err == nil && !bytes.HasPrefix(data, []byte(strconv.Itoa(want))) {
			t.Errorf("reply %q accepted for code %d", data, want)
		}
	})
}

func FuzzDNSAnswers(f *testing.F) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("example.org."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	ok := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 7, Response: true},
		Questions: []dnsmessage.Question{q},
		Answers: []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
			Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}},
		}},
	}
	b, err := ok.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:20])
	f.Fuzz(func(t *testing.T, pkt []byte) {
		mine, err := dnsAnswers(pkt, 7, q)
		if mine && err == nil {
			var p dnsmessage.Parser
			h, perr := p.Start(pkt)
			if perr != nil || h.ID != 7 || !h.Response || h.RCode != dnsmessage.RCodeSuccess {
				t.Errorf("packet %x accepted: header %+v, %v", pkt, h, perr)
			}
		}
	})
}
