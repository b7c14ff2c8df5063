package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// startNginx runs Debian's nginx on 127.0.0.1 with two virtual hosts, a.example (the default)
// and b.example, each serving its own index.html, and /down answering 503.
func startNginx(t *testing.T) netip.AddrPort {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		netns.SkipPrivileged(t, "nginx is not installed (apt-get install nginx-light)")
	}
	dir := sharedTempDir(t)
	for _, site := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, site), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, site, "index.html"), []byte("<html>site "+site+"</html>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s default_server;
        server_name a.example;
        root %[1]s/a;
        location = /down { return 503; }
    }
    server {
        listen %[2]s;
        server_name b.example;
        root %[1]s/b;
    }
}
`, dir, addr)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confFile, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
			c.Close()
			return addr
		}
		if time.Since(start) > 5*time.Second {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start listening on %s: %s %s", addr, out.String(), log)
		}
	}
}

// TestHTTPCheckNginx checks a real nginx, with digests made by keepalived's genhash.
func TestHTTPCheckNginx(t *testing.T) {
	addr := startNginx(t)
	digest := func(vhost string) string {
		t.Helper()
		args := []string{"-s", "127.0.0.1", "-p", strconv.Itoa(int(addr.Port())), "-u", "/index.html"}
		if vhost != "" {
			args = append(args, "-V", vhost)
		}
		var got bytes.Buffer
		if err := GenHash(context.Background(), GenHashOptions{Server: "127.0.0.1", Port: addr.Port(), Path: "/index.html", VirtualHost: vhost}, &got); err != nil {
			t.Fatalf("GenHash: %v", err)
		}
		if bin, err := exec.LookPath("genhash"); err == nil {
			want, err := exec.Command(bin, args...).Output()
			if err != nil {
				t.Fatalf("genhash: %v", err)
			}
			if !bytes.Equal(want, got.Bytes()) {
				t.Fatalf("GenHash = %q, keepalived's genhash = %q", got.Bytes(), want)
			}
		}
		return string(bytes.TrimSpace(got.Bytes()))
	}
	a, b := digest(""), digest("b.example")
	if a == b {
		t.Fatal("the two sites have the same digest")
	}
	tests := []struct {
		name    string
		proto   string
		urls    []URL
		wantErr error
	}{
		{name: "digest of the default site", urls: []URL{{Path: "/index.html", Digest: a}}},
		{name: "digest of a virtual host", urls: []URL{{Path: "/index.html", Digest: b, VirtualHost: "b.example"}}},
		{name: "virtual host serves other content", urls: []URL{{Path: "/index.html", Digest: a, VirtualHost: "b.example"}}, wantErr: ErrDigest},
		{name: "http 1.1", proto: "1.1", urls: []URL{{Path: "/index.html", Digest: a}, {Path: "/", Regex: "site a"}}},
		{name: "missing page", urls: []URL{{Path: "/nope"}}, wantErr: ErrStatus},
		{name: "503", urls: []URL{{Path: "/down"}}, wantErr: ErrStatus},
		{name: "503 accepted", urls: []URL{{Path: "/down", StatusCodes: []StatusRange{{503, 503}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustHTTPCheck(t, HTTPOptions{Addr: addr, Timeout: 2 * time.Second, Protocol: tt.proto, URLs: tt.urls})
			err := c.Check(context.Background())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
