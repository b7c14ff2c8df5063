package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// TestGenHashMatchesKeepalived runs keepalived's own genhash (Debian's keepalived package) and
// GenHash on the same local pages and compares their output byte for byte.
func TestGenHashMatchesKeepalived(t *testing.T) {
	genhash, err := exec.LookPath("genhash")
	if err != nil {
		netns.SkipPrivileged(t, "keepalived's genhash is not installed (scripts/install-deps installs keepalived)")
	}
	big := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB, several reads
	handler := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, big)
		case "/empty":
		default:
			pages(w, r)
		}
	}
	plain := startHTTP(t, handler, nil)
	pki := newPKI(t, "server.example")
	secure := startHTTP(t, handler, &tls.Config{Certificates: []tls.Certificate{pki.cert}})

	tests := []struct {
		name string
		s    *httpServer
		opts GenHashOptions
		args []string
	}{
		{name: "page", s: plain, opts: GenHashOptions{Path: "/ok"}},
		{name: "404 page is hashed too", s: plain, opts: GenHashOptions{Path: "/missing"}},
		{name: "empty body", s: plain, opts: GenHashOptions{Path: "/empty"}},
		{name: "large page", s: plain, opts: GenHashOptions{Path: "/big"}},
		{name: "virtual host", s: plain, opts: GenHashOptions{Path: "/host", VirtualHost: "www.example.org"}, args: []string{"-V", "www.example.org"}},
		{name: "default host", s: plain, opts: GenHashOptions{Path: "/host"}},
		{name: "http 1.1", s: plain, opts: GenHashOptions{Path: "/ok", Protocol: "1.1"}, args: []string{"-P", "1.1"}},
		{name: "chunked with http 1.1", s: plain, opts: GenHashOptions{Path: "/chunked", Protocol: "1.1"}, args: []string{"-P", "1.1"}},
		{name: "ssl", s: secure, opts: GenHashOptions{Path: "/ok", TLS: true}, args: []string{"-S"}},
		{name: "ssl with sni", s: secure, opts: GenHashOptions{Path: "/host", TLS: true, SNI: true, VirtualHost: "server.example"}, args: []string{"-S", "-I", "-V", "server.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := strconv.Itoa(int(tt.s.addr.Port()))
			args := append([]string{"-s", "127.0.0.1", "-p", port, "-u", tt.opts.Path, "-t", "5"}, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			want, err := exec.CommandContext(ctx, genhash, args...).Output()
			if err != nil {
				t.Fatalf("genhash %v: %v", args, err)
			}
			tt.opts.Server, tt.opts.Port = "127.0.0.1", tt.s.addr.Port()
			var got bytes.Buffer
			if err := GenHash(ctx, tt.opts, &got); err != nil {
				t.Fatalf("GenHash: %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("GenHash printed %q, keepalived's genhash %v printed %q", got.Bytes(), args, want)
			}
		})
	}
}

func TestGenHashErrors(t *testing.T) {
	for _, o := range []GenHashOptions{
		{Port: 80, Path: "/"},
		{Server: "127.0.0.1", Path: "/"},
		{Server: "127.0.0.1", Port: uint16(closedPort(t).Port()), Path: "/", Timeout: time.Second},
		{Server: "127.0.0.1", Port: 80, Path: "/", SNI: true},
	} {
		var out bytes.Buffer
		if err := GenHash(context.Background(), o, &out); err == nil || out.Len() != 0 {
			t.Errorf("GenHash(%+v) = %v, printed %q; want an error and nothing printed", o, err, out.String())
		}
	}
}
