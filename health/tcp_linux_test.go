package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// unresponsive returns a loopback address whose SYNs go unanswered: a listener with a backlog
// of 0 that never accepts, its accept queue filled. Linux then drops further SYNs (unless
// net.ipv4.tcp_abort_on_overflow is set), so connecting hangs as it would to a dead server.
func unresponsive(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr), uint16(sa.(*syscall.SockaddrInet4).Port))

	for range 8 {
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return addr
		}
		t.Skipf("a full accept queue does not drop SYNs here (%v); is tcp_abort_on_overflow set?", err)
	}
	t.Skip("could not fill the accept queue of a listener with backlog 0")
	return netip.AddrPort{}
}

func TestTCPCheckTimeout(t *testing.T) {
	addr := unresponsive(t)
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     time.Duration // the context's deadline; 0: none
	}{
		{name: "timeout", timeout: 300 * time.Millisecond},
		{name: "context deadline", timeout: time.Minute, ctx: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			start := time.Now()
			err := TCPCheck{Addr: addr, Timeout: tt.timeout}.Check(ctx)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Check passed, want a timeout")
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("Check = %v, want a timeout", err)
			}
			if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
				t.Errorf("Check returned after %v, want about 300ms", elapsed)
			}
		})
	}
}
