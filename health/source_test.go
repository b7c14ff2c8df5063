package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
	"golang.org/x/sys/unix"
)

func TestSourceOptions(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root for SO_BINDTODEVICE and SO_MARK")
	}
	addr, peers := listen(t, "127.0.0.1:0")
	port := uint16(closedPort(t).Port()) // free a moment ago
	tests := []struct {
		name     string
		src      Source
		wantPort uint16
		wantErr  bool
	}{
		{name: "bind_port", src: Source{BindPort: port}, wantPort: port},
		{name: "bind_if lo", src: Source{BindIf: "lo"}},
		{name: "bind_if missing", src: Source{BindIf: "nosuchif0"}, wantErr: true},
		{name: "fwmark", src: Source{FWMark: 0x2a}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TCPCheck{Addr: addr, Timeout: time.Second, Source: tt.src}.Check(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			peer := <-peers
			if tt.wantPort != 0 && peer.Port() != tt.wantPort {
				t.Errorf("probe came from port %d, want %d", peer.Port(), tt.wantPort)
			}
		})
	}
	t.Run("fwmark is set on the socket", func(t *testing.T) {
		d := Source{FWMark: 0x2a}.dialer("tcp", addr.Addr())
		conn, err := d.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		<-peers
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mark int
		var gerr error
		raw.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
		if gerr != nil || mark != 0x2a {
			t.Errorf("SO_MARK = %#x, %v; want 0x2a", mark, gerr)
		}
	})
}

// TestCheckStringsNameUnsetBindAny checks that check descriptions (logs, shared-check keys) print
// an unset bindto as "any", and a set one as its address.
func TestCheckStringsNameUnsetBindAny(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.1:53")
	bind := netip.MustParseAddr("192.0.2.9")
	for _, tc := range []struct {
		name      string
		unset, to fmt.Stringer
	}{
		{"udp", UDPCheck{Addr: addr}, UDPCheck{Addr: addr, BindTo: bind}},
		{"dns", DNSCheck{Addr: addr}, DNSCheck{Addr: addr, BindTo: bind}},
		{"ping", PingCheck{Addr: addr.Addr()}, PingCheck{Addr: addr.Addr(), BindTo: bind}},
		{"smtp", SMTPCheck{Addr: addr}, SMTPCheck{Addr: addr, BindTo: bind}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s := tc.unset.String(); !strings.Contains(s, "[any ") || strings.Contains(s, "invalid") {
				t.Errorf("unset bindto: %q, want [any ...]", s)
			}
			if s := tc.to.String(); !strings.Contains(s, "[192.0.2.9 ") {
				t.Errorf("bindto 192.0.2.9: %q", s)
			}
		})
	}
}
