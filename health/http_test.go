package health

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// rawServer serves every connection with handle, on a loopback port; it is closed in cleanup.
func rawServer(t *testing.T, handle func(c net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 64)
	t.Cleanup(func() {
		ln.Close()
		close(done)
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- c:
			default:
			}
			go func() {
				defer c.Close()
				// Read the request head first, as a server would.
				buf := make([]byte, 4096)
				var req []byte
				for !bytes.Contains(req, []byte("\r\n\r\n")) && len(req) < 1<<16 {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, err := c.Read(buf)
					req = append(req, buf[:n]...)
					if err != nil {
						return
					}
				}
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// httpServer runs a real net/http server on loopback; requests are recorded.
type httpServer struct {
	addr netip.AddrPort
	reqs chan *http.Request
	srv  *http.Server
}

func startHTTP(t *testing.T, h http.HandlerFunc, tlsCfg *tls.Config) *httpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &httpServer{addr: ln.Addr().(*net.TCPAddr).AddrPort(), reqs: make(chan *http.Request, 64)}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case s.reqs <- r:
			default:
			}
			h(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         tlsCfg,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		if tlsCfg != nil {
			_ = s.srv.ServeTLS(ln, "", "")
		} else {
			_ = s.srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func pages(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ok":
		io.WriteString(w, "all good\n")
	case "/other":
		io.WriteString(w, "other page\n")
	case "/missing":
		http.Error(w, "not here", http.StatusNotFound)
	case "/unavailable":
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case "/chunked":
		w.Write([]byte("part one, "))
		w.(http.Flusher).Flush()
		w.Write([]byte("part two"))
	case "/host":
		io.WriteString(w, r.Host)
	default:
		http.NotFound(w, r)
	}
}

func mustHTTPCheck(t *testing.T, o HTTPOptions) *HTTPCheck {
	t.Helper()
	c, err := NewHTTPCheck(o)
	if err != nil {
		t.Fatalf("NewHTTPCheck: %v", err)
	}
	return c
}

func TestHTTPCheck(t *testing.T) {
	s := startHTTP(t, pages, nil)
	tests := []struct {
		name    string
		proto   string
		vhost   string
		urls    []URL
		wantErr error // nil: passes
	}{
		{name: "200 passes by default", urls: []URL{{Path: "/ok"}}},
		{name: "404 fails by default", urls: []URL{{Path: "/missing"}}, wantErr: ErrStatus},
		{name: "404 accepted when listed", urls: []URL{{Path: "/missing", StatusCodes: []StatusRange{{200, 200}, {400, 499}}}}},
		{name: "503 outside the listed codes", urls: []URL{{Path: "/unavailable", StatusCodes: []StatusRange{{200, 299}, {404, 404}}}}, wantErr: ErrStatus},
		{name: "digest matches", urls: []URL{{Path: "/ok", Digest: md5hex("all good\n")}}},
		{name: "digest is case-insensitive", urls: []URL{{Path: "/ok", Digest: strings.ToUpper(md5hex("all good\n"))}}},
		{name: "lying digest", urls: []URL{{Path: "/ok", Digest: md5hex("something else")}}, wantErr: ErrDigest},
		{name: "regex matches", urls: []URL{{Path: "/ok", Regex: "a[l]+ go+d"}}},
		{name: "regex does not match", urls: []URL{{Path: "/ok", Regex: "bad"}}, wantErr: ErrRegex},
		{name: "regex_no_match passes", urls: []URL{{Path: "/ok", Regex: "bad", RegexNoMatch: true}}},
		{name: "regex_no_match fails on a match", urls: []URL{{Path: "/ok", Regex: "good", RegexNoMatch: true}}, wantErr: ErrRegex},
		{name: "all urls must pass", urls: []URL{{Path: "/ok"}, {Path: "/missing"}}, wantErr: ErrStatus},
		{name: "several urls pass", urls: []URL{{Path: "/ok", Digest: md5hex("all good\n")}, {Path: "/other", Digest: md5hex("other page\n")}}},
		{name: "chunked body hashed raw as keepalived does", proto: "1.1", urls: []URL{{Path: "/chunked", Digest: md5hex("a\r\npart one, \r\n8\r\npart two\r\n0\r\n\r\n")}}},
		{name: "virtualhost", vhost: "www.example.org", urls: []URL{{Path: "/host", Digest: md5hex("www.example.org")}}},
		{name: "url virtualhost wins", vhost: "www.example.org", urls: []URL{{Path: "/host", VirtualHost: "api.example.org", Digest: md5hex("api.example.org")}}},
		{name: "default host is address and port", urls: []URL{{Path: "/host", Digest: md5hex(s.addr.String())}}},
		{name: "http 1.0C", proto: "1.0C", urls: []URL{{Path: "/ok"}}},
		{name: "http 1.0K", proto: "1.0K", urls: []URL{{Path: "/ok"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustHTTPCheck(t, HTTPOptions{Addr: s.addr, Timeout: 2 * time.Second, Protocol: tt.proto, VirtualHost: tt.vhost, URLs: tt.urls})
			err := c.Check(context.Background())
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestHTTPCheckRequest(t *testing.T) {
	reqs := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := c.Read(buf)
			reqs <- string(buf[:n])
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\n")
			c.Close()
		}
	}()
	rec := ln.Addr().(*net.TCPAddr).AddrPort()
	tests := []struct{ proto, vhost, want string }{
		{"", "", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: " + rec.String() + "\r\n\r\n"},
		{"1.0C", "v.example", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: v.example\r\n\r\n"},
		{"1.1", "v.example", "GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: v.example\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run("protocol "+tt.proto, func(t *testing.T) {
			c := mustHTTPCheck(t, HTTPOptions{Addr: rec, Timeout: 2 * time.Second, Protocol: tt.proto, VirtualHost: tt.vhost, URLs: []URL{{Path: "/p?q=1"}}})
			if err := c.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got := <-reqs; got != tt.want {
				t.Errorf("request = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHTTPCheckHostile runs the check against servers that stall, lie, flood or send garbage;
// every probe must end within its deadline with the right error.
func TestHTTPCheckHostile(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var flooded atomic.Int64 // bytes a flooding server managed to write
	flood := func(prefix string) func(net.Conn) {
		return func(c net.Conn) {
			io.WriteString(c, prefix)
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for range 1024 { // at most 32 MiB
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				n, err := c.Write(chunk)
				flooded.Add(int64(n))
				if err != nil {
					return
				}
			}
		}
	}
	tests := []struct {
		name    string
		handle  func(net.Conn)
		url     URL
		wantErr error // nil: passes
	}{
		{name: "silent server", handle: func(c net.Conn) { time.Sleep(3 * timeout) }, url: URL{Path: "/"}, wantErr: context.DeadlineExceeded},
		{name: "slow header drip", handle: func(c net.Conn) {
			for range 100 {
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}, url: URL{Path: "/"}, wantErr: context.DeadlineExceeded},
		{name: "slow body with digest", handle: func(c net.Conn) {
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n")
			for range 100 {
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}, url: URL{Path: "/", Digest: md5hex("x")}, wantErr: context.DeadlineExceeded},
		{name: "huge header", handle: flood("HTTP/1.0 200 OK\r\nX-Big: "), url: URL{Path: "/"}, wantErr: ErrHeaderTooLarge},
		{name: "endless status line", handle: flood("HTTP/1.0 200 "), url: URL{Path: "/"}, wantErr: ErrHeaderTooLarge},
		{name: "endless body with digest", handle: flood("HTTP/1.0 200 OK\r\n\r\n"), url: URL{Path: "/", Digest: md5hex("x")}, wantErr: ErrBodyTooLarge},
		{name: "endless chunked body with regex", handle: flood("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000\r\n"), url: URL{Path: "/", Regex: "y"}, wantErr: ErrBodyTooLarge},
		{name: "endless body without digest is not read", handle: flood("HTTP/1.0 200 OK\r\n\r\n"), url: URL{Path: "/"}},
		{name: "content-length over the cap", handle: func(c net.Conn) {
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 99999999999\r\n\r\nabc")
		}, url: URL{Path: "/", Digest: md5hex("abc")}, wantErr: ErrBodyTooLarge},
		{name: "short body", handle: func(c net.Conn) {
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		}, url: URL{Path: "/", Digest: md5hex("abc")}, wantErr: ErrBadResponse},
		{name: "lying status", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.0 500 OK\r\n\r\n") }, url: URL{Path: "/"}, wantErr: ErrStatus},
		{name: "lying body", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nnot it") }, url: URL{Path: "/", Digest: md5hex("it")}, wantErr: ErrDigest},
		{name: "garbage", handle: func(c net.Conn) { c.Write([]byte{0, 1, 2, 0xff, '\n'}) }, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "four-digit status", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 2000 OK\r\n\r\n") }, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "http 2 status line", handle: func(c net.Conn) { io.WriteString(c, "HTTP/2 200\r\n\r\n") }, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "bad header line", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nno colon\r\n\r\n") }, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "closed in the header", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nA: b") }, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "closed at once", handle: func(c net.Conn) {}, url: URL{Path: "/"}, wantErr: ErrBadResponse},
		{name: "bare LF lines are accepted", handle: func(c net.Conn) { io.WriteString(c, "HTTP/1.0 200 OK\nA: b\n\nbody") }, url: URL{Path: "/", Digest: md5hex("body")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flooded.Store(0)
			addr := rawServer(t, tt.handle)
			c := mustHTTPCheck(t, HTTPOptions{Addr: addr, Timeout: timeout, URLs: []URL{tt.url}})
			start := time.Now()
			err := c.Check(context.Background())
			if elapsed := time.Since(start); elapsed > timeout+time.Second {
				t.Errorf("Check took %v with a timeout of %v", elapsed, timeout)
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestReadResponseBounded shows the reader's memory bound: whatever a server sends, it reads
// at most MaxHeaderBytes plus the body cap plus one buffer.
func TestReadResponseBounded(t *testing.T) {
	var read countingReader
	read.r = io.MultiReader(strings.NewReader("HTTP/1.0 200 OK\r\n\r\n"), zeros{})
	_, err := readResponse(&read, true, 64<<10)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("readResponse = %v, want %v", err, ErrBodyTooLarge)
	}
	if max := int64(MaxHeaderBytes + 64<<10 + 8<<10); read.n > max {
		t.Errorf("read %d bytes of an endless body, want at most %d", read.n, max)
	}
	read = countingReader{r: io.MultiReader(strings.NewReader("HTTP/1.0 200 OK\r\nX: "), zeros{})}
	if _, err := readResponse(&read, false, 0); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("readResponse = %v, want %v", err, ErrHeaderTooLarge)
	}
	if read.n > MaxHeaderBytes {
		t.Errorf("read %d bytes of an endless header, want at most %d", read.n, MaxHeaderBytes)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.1 404 Not Found\nA: b\n\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), true)
	f.Fuzz(func(t *testing.T, data []byte, wantBody bool) {
		resp, err := readResponse(bytes.NewReader(data), wantBody, 1024)
		if err != nil {
			return
		}
		if resp.status < 100 || resp.status > 999 {
			t.Errorf("status %d out of range", resp.status)
		}
		if len(resp.body) > 1024 || len(resp.header) > MaxHeaderBytes {
			t.Errorf("body %d or header %d bytes over the bounds", len(resp.body), len(resp.header))
		}
		if !wantBody && resp.body != nil {
			t.Errorf("body read although not wanted")
		}
	})
}

func TestParseStatusCodes(t *testing.T) {
	got, err := ParseStatusCodes([]string{"200", "200-299", "400-499", "503"})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]StatusRange{{200, 200}, {200, 299}, {400, 499}, {503, 503}})
	if fmt.Sprint(got) != want {
		t.Errorf("ParseStatusCodes = %v, want %s", got, want)
	}
	for _, bad := range []string{"", "abc", "99", "300-200", "200-", "1000"} {
		if _, err := ParseStatusCodes([]string{bad}); err == nil {
			t.Errorf("ParseStatusCodes(%q) succeeded", bad)
		}
	}
}

func TestNewHTTPCheckRejects(t *testing.T) {
	addr := netip.MustParseAddrPort("127.0.0.1:80")
	tests := []struct {
		name string
		o    HTTPOptions
	}{
		{"no address", HTTPOptions{URLs: []URL{{Path: "/"}}}},
		{"no url", HTTPOptions{Addr: addr}},
		{"relative path", HTTPOptions{Addr: addr, URLs: []URL{{Path: "x"}}}},
		{"path with CRLF", HTTPOptions{Addr: addr, URLs: []URL{{Path: "/\r\nX: y"}}}},
		{"vhost with CRLF", HTTPOptions{Addr: addr, VirtualHost: "a\r\nb", URLs: []URL{{Path: "/"}}}},
		{"bad digest", HTTPOptions{Addr: addr, URLs: []URL{{Path: "/", Digest: "xyz"}}}},
		{"bad regex", HTTPOptions{Addr: addr, URLs: []URL{{Path: "/", Regex: "("}}}},
		{"bad protocol", HTTPOptions{Addr: addr, Protocol: "2", URLs: []URL{{Path: "/"}}}},
		{"missing ca", HTTPOptions{Addr: addr, TLS: true, SSL: &SSLConfig{CA: "/nonexistent"}, URLs: []URL{{Path: "/"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHTTPCheck(tt.o); err == nil {
				t.Errorf("NewHTTPCheck succeeded")
			}
		})
	}
}

// testPKI is a CA and a certificate it signed, generated for the test.
type testPKI struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
	pool                      *x509.CertPool
}

func newPKI(t *testing.T, name string) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	write := func(file, typ string, der []byte) {
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	p.cert, err = tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSSLGet(t *testing.T) {
	server := newPKI(t, "server.example")
	client := newPKI(t, "client.example")
	other := newPKI(t, "other.example")
	sni := make(chan string, 16)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{server.cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni <- h.ServerName
			return nil, nil
		},
	}
	mtlsCfg := cfg.Clone()
	s := startHTTP(t, pages, cfg)
	mtlsCfg.GetConfigForClient = nil
	mtlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
	mtlsCfg.ClientCAs = client.pool
	m := startHTTP(t, pages, mtlsCfg)

	tests := []struct {
		name    string
		o       HTTPOptions
		wantSNI string
		wantErr bool
	}{
		{name: "no verification by default", o: HTTPOptions{Addr: s.addr, URLs: []URL{{Path: "/ok", Digest: md5hex("all good\n")}}}},
		{name: "sni from sni_name", o: HTTPOptions{Addr: s.addr, EnableSNI: true, SNIName: "server.example", URLs: []URL{{Path: "/ok"}}}, wantSNI: "server.example"},
		{name: "sni from virtualhost", o: HTTPOptions{Addr: s.addr, EnableSNI: true, VirtualHost: "vh.example", URLs: []URL{{Path: "/ok"}}}, wantSNI: "vh.example"},
		{name: "ca verifies", o: HTTPOptions{Addr: s.addr, SSL: &SSLConfig{CA: server.caFile}, URLs: []URL{{Path: "/ok"}}}},
		{name: "wrong ca fails", o: HTTPOptions{Addr: s.addr, SSL: &SSLConfig{CA: other.caFile}, URLs: []URL{{Path: "/ok"}}}, wantErr: true},
		{name: "client certificate", o: HTTPOptions{Addr: m.addr, SSL: &SSLConfig{Certificate: client.certFile, Key: client.keyFile}, URLs: []URL{{Path: "/ok"}}}},
		{name: "missing client certificate", o: HTTPOptions{Addr: m.addr, URLs: []URL{{Path: "/ok"}}}, wantErr: true},
		{name: "tls_compliant", o: HTTPOptions{Addr: s.addr, TLSCompliant: true, URLs: []URL{{Path: "/ok"}}}},
		{name: "status over tls", o: HTTPOptions{Addr: s.addr, URLs: []URL{{Path: "/missing"}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for len(sni) > 0 {
				<-sni
			}
			tt.o.TLS, tt.o.Timeout = true, 2*time.Second
			c := mustHTTPCheck(t, tt.o)
			err := c.Check(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantSNI != "" {
				if got := <-sni; got != tt.wantSNI {
					t.Errorf("server name = %q, want %q", got, tt.wantSNI)
				}
			}
		})
	}
	t.Run("silent tls server hits the deadline", func(t *testing.T) {
		addr := rawListener(t, func(c net.Conn) { time.Sleep(2 * time.Second) })
		c := mustHTTPCheck(t, HTTPOptions{Addr: addr, TLS: true, Timeout: 300 * time.Millisecond, URLs: []URL{{Path: "/ok"}}})
		start := time.Now()
		err := c.Check(context.Background())
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Check = %v, want a deadline error", err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("Check took %v with a timeout of 300ms", time.Since(start))
		}
	})
	t.Run("plain http to a tls server fails", func(t *testing.T) {
		c := mustHTTPCheck(t, HTTPOptions{Addr: s.addr, Timeout: time.Second, URLs: []URL{{Path: "/ok"}}})
		if err := c.Check(context.Background()); err == nil {
			t.Fatal("Check passed")
		}
	})
}

func TestDefaultHost(t *testing.T) {
	tests := []struct {
		addr string
		tls  bool
		want string
	}{
		{"10.0.0.2:80", false, "10.0.0.2"},
		{"10.0.0.2:8080", false, "10.0.0.2:8080"},
		{"10.0.0.2:443", true, "10.0.0.2"},
		{"10.0.0.2:80", true, "10.0.0.2:80"},
		{"[2001:db8::2]:80", false, "[2001:db8::2]"},
		{"[2001:db8::2]:8443", true, "[2001:db8::2]:8443"},
	}
	for _, tt := range tests {
		if got := defaultHost(netip.MustParseAddrPort(tt.addr), tt.tls); got != tt.want {
			t.Errorf("defaultHost(%s, tls %v) = %q, want %q", tt.addr, tt.tls, got, tt.want)
		}
	}
}

// TestHTTPCheckIPv6 checks a server on ::1.
func TestHTTPCheckIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(pages), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	c := mustHTTPCheck(t, HTTPOptions{Addr: addr, Timeout: 2 * time.Second, URLs: []URL{{Path: "/host", Digest: md5hex(fmt.Sprintf("[::1]:%d", addr.Port()))}}})
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// TestSSLGetEncryptedKey loads a client key encrypted with the SSL block's password.
func TestSSLGetEncryptedKey(t *testing.T) {
	client := newPKI(t, "client.example")
	keyPEM, err := os.ReadFile(client.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	//lint:ignore SA1019 keepalived's password is for legacy-encrypted PEM keys; the test makes one.
	enc, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte("s3cret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	encFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(encFile, pem.EncodeToMemory(enc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		password string
		wantErr  bool
	}{{"s3cret", false}, {"wrong", true}, {"", true}} {
		_, err := NewHTTPCheck(HTTPOptions{
			Addr: netip.MustParseAddrPort("127.0.0.1:443"), TLS: true, URLs: []URL{{Path: "/"}},
			SSL: &SSLConfig{Certificate: client.certFile, Key: encFile, Password: tt.password},
		})
		if (err != nil) != tt.wantErr {
			t.Errorf("password %q: NewHTTPCheck = %v, want error %v", tt.password, err, tt.wantErr)
		}
	}
}

func TestHTTPCheckStringHidesPassword(t *testing.T) {
	pki := newPKI(t, "client.example")
	c := mustHTTPCheck(t, HTTPOptions{Addr: netip.MustParseAddrPort("127.0.0.1:443"), TLS: true, URLs: []URL{{Path: "/"}},
		SSL: &SSLConfig{Certificate: pki.certFile, Key: pki.keyFile, Password: "hunter2"}})
	if strings.Contains(c.String(), "hunter2") {
		t.Errorf("String() = %q shows the password", c.String())
	}
}
