package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// listen returns a TCP listener on addr that accepts connections and reports each peer's
// address.
func listen(t *testing.T, addr string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), peers
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return addr
}

func TestTCPCheck(t *testing.T) {
	open, peers := listen(t, "127.0.0.1:0")
	tests := []struct {
		name     string
		check    TCPCheck
		wantErr  error // nil: the check passes
		wantPeer netip.Addr
	}{
		{name: "open port", check: TCPCheck{Addr: open, Timeout: time.Second}, wantPeer: netip.MustParseAddr("127.0.0.1")},
		{name: "bind_to", check: TCPCheck{Addr: open, BindTo: netip.MustParseAddr("127.0.0.2"), Timeout: time.Second}, wantPeer: netip.MustParseAddr("127.0.0.2")},
		{name: "closed port is refused", check: TCPCheck{Addr: closedPort(t), Timeout: 5 * time.Second}, wantErr: syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.check.Check(context.Background())
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("Check took %v on loopback", elapsed)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Check = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			select {
			case peer := <-peers:
				if peer.Addr() != tt.wantPeer {
					t.Errorf("server saw a connection from %v, want %v", peer.Addr(), tt.wantPeer)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server saw no connection")
			}
		})
	}
}

func TestTCPCheckIPv6(t *testing.T) {
	addr, peers := listen(t, "[::1]:0")
	if err := (TCPCheck{Addr: addr, Timeout: time.Second}).Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if peer := <-peers; peer.Addr() != netip.IPv6Loopback() {
		t.Errorf("server saw a connection from %v, want ::1", peer)
	}
}

func TestTCPCheckInvalid(t *testing.T) {
	tests := []struct {
		name  string
		check TCPCheck
	}{
		{name: "no address", check: TCPCheck{}},
		{name: "bind_to of another family", check: TCPCheck{Addr: closedPort(t), BindTo: netip.IPv6Loopback()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check.Check(context.Background()); err == nil {
				t.Errorf("Check(%+v) passed, want an error", tt.check)
			}
		})
	}
}

func TestTCPCheckString(t *testing.T) {
	c := TCPCheck{Addr: netip.MustParseAddrPort("10.0.0.2:80")}
	if got, want := c.String(), "TCP_CHECK 10.0.0.2:80"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := c.CheckTimeout(); got != DefaultTimeout {
		t.Errorf("CheckTimeout with no Timeout = %v, want %v", got, DefaultTimeout)
	}
	c.Timeout = 2 * time.Second
	if got := c.CheckTimeout(); got != 2*time.Second {
		t.Errorf("CheckTimeout = %v, want 2s", got)
	}
}

// TestSchedulerTCPCheck runs the Scheduler on the system clock with a real check.
func TestSchedulerTCPCheck(t *testing.T) {
	events := make(chan Event)
	s := NewScheduler(events, WithSeed(1))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	addr := closedPort(t)
	check := TCPCheck{Addr: addr, Timeout: time.Second}
	if err := s.Update([]Target{{ID: addr.String(), Checkers: []Checker{check}, Interval: 50 * time.Millisecond, InitiallyUp: true}}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	select {
	case ev := <-events:
		if ev.Up || !errors.Is(ev.Err, syscall.ECONNREFUSED) {
			t.Errorf("event %+v, want down with connection refused", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}
