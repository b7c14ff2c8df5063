package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxHeaderBytes bounds the status line and headers of a response; a server sending more fails
// the check. keepalived reads headers into a buffer of a few KiB too.
const MaxHeaderBytes = 8 << 10

// DefaultMaxBody bounds the body read for a digest or a regex; a longer body fails the check
// (ErrBodyTooLarge) rather than being hashed in part.
const DefaultMaxBody = 1 << 20

// Errors an HTTP check reports; callers may branch on them with errors.Is.
var (
	ErrHeaderTooLarge = errors.New("http response header too large")
	ErrBodyTooLarge   = errors.New("http response body too large")
	ErrBadResponse    = errors.New("malformed http response")
	ErrStatus         = errors.New("unexpected http status")
	ErrDigest         = errors.New("http body digest mismatch")
	ErrRegex          = errors.New("http body regex check failed")
)

// StatusRange is one status_code entry: a single code (Min == Max) or a range.
type StatusRange struct{ Min, Max int }

// DefaultStatusCodes is keepalived's status_code default, 200-299.
var DefaultStatusCodes = []StatusRange{{200, 299}}

// ParseStatusCodes parses status_code arguments such as "200", "200-299" or "503".
func ParseStatusCodes(args []string) ([]StatusRange, error) {
	var out []StatusRange
	for _, a := range args {
		lo, hi, isRange := strings.Cut(a, "-")
		min, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("parse status_code %q: %w", a, err)
		}
		max := min
		if isRange {
			if max, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("parse status_code %q: %w", a, err)
			}
		}
		if min < 100 || max > 999 || min > max {
			return nil, fmt.Errorf("parse status_code %q: not a code or range within 100-999", a)
		}
		out = append(out, StatusRange{min, max})
	}
	return out, nil
}

// URL is one url block of HTTP_GET or SSL_GET.
type URL struct {
	// Path is the request target, e.g. "/health".
	Path string
	// Digest is the expected MD5 of the body in hex (genhash prints it); empty: not checked.
	Digest string
	// StatusCodes are the accepted codes; empty means DefaultStatusCodes.
	StatusCodes []StatusRange
	// VirtualHost overrides HTTPOptions.VirtualHost for this URL.
	VirtualHost string
	// Regex must match the body (Go RE2 syntax, not PCRE); empty: not checked.
	Regex string
	// RegexNoMatch inverts Regex: a match fails the check.
	RegexNoMatch bool
}

// SSLConfig is keepalived's top-level SSL block: file names of PEM data. All are optional.
type SSLConfig struct {
	// CA, when set, verifies the server's certificate chain against it (not the host name:
	// real servers are checked by address). Without it the certificate is not verified, as
	// keepalived does not verify it either.
	CA string
	// Certificate and Key are a client certificate presented to the server.
	Certificate string
	Key         string
	// Password decrypts Key when it is an encrypted (legacy "Proc-Type: 4,ENCRYPTED") PEM block.
	Password string
}

// HTTPOptions configures an HTTP_GET or SSL_GET check.
type HTTPOptions struct {
	// Addr is connect_ip and connect_port.
	Addr netip.AddrPort
	// BindTo is bindto: the local address of the probe, when valid.
	BindTo netip.Addr
	// Source is bind_port, bind_if and fwmark.
	Source Source
	// Timeout is connect_timeout, for the whole probe; zero or less means DefaultTimeout.
	Timeout time.Duration
	// TLS makes it SSL_GET.
	TLS bool
	// SSL is the top-level SSL block; nil: no client certificate, no verification.
	SSL *SSLConfig
	// EnableSNI sends SNIName, else the URL's virtual host, in the TLS handshake.
	EnableSNI bool
	SNIName   string
	// TLSCompliant sends a TLS close_notify before closing, as a compliant client does.
	TLSCompliant bool
	// Protocol is http_protocol: "1.0" (default), "1.0C" (1.0 with Connection: close),
	// "1.0K" (1.0 with Connection: keep-alive) or "1.1" (with Connection: close).
	Protocol string
	// VirtualHost is the default Host header; empty: the address (and port when not the
	// scheme's default), as keepalived sends.
	VirtualHost string
	// URLs must all pass, checked in order on one connection each.
	URLs []URL
	// MaxBody bounds the body read for a digest or regex; zero means DefaultMaxBody.
	MaxBody int64
}

// HTTPCheck is keepalived's HTTP_GET or SSL_GET. Build one with NewHTTPCheck.
type HTTPCheck struct {
	opts  HTTPOptions
	urls  []httpURL
	tls   *tls.Config
	proto string
}

type httpURL struct {
	URL
	digest []byte
	re     *regexp.Regexp
}

var _ TimeoutChecker = (*HTTPCheck)(nil)

// NewHTTPCheck validates o, compiles its regexes and loads its SSL files.
func NewHTTPCheck(o HTTPOptions) (*HTTPCheck, error) {
	c := &HTTPCheck{opts: o}
	if !o.Addr.IsValid() {
		return nil, fmt.Errorf("http check: invalid address %v", o.Addr)
	}
	if len(o.URLs) == 0 {
		return nil, fmt.Errorf("http check %s: no url", o.Addr)
	}
	switch strings.ToUpper(o.Protocol) {
	case "", "1.0":
		c.proto = "1.0"
	case "1.0C", "1.0K", "1.1":
		c.proto = strings.ToUpper(o.Protocol)
	default:
		return nil, fmt.Errorf("http check %s: unknown http_protocol %q", o.Addr, o.Protocol)
	}
	if c.opts.MaxBody <= 0 {
		c.opts.MaxBody = DefaultMaxBody
	}
	for _, u := range o.URLs {
		hu := httpURL{URL: u}
		if !strings.HasPrefix(u.Path, "/") || strings.ContainsAny(u.Path, " \r\n") {
			return nil, fmt.Errorf("http check %s: url path %q must start with / and hold no space or line break", o.Addr, u.Path)
		}
		if u.Digest != "" {
			d, err := hex.DecodeString(u.Digest)
			if err != nil || len(d) != md5.Size {
				return nil, fmt.Errorf("http check %s: digest %q is not an MD5 in hex", o.Addr, u.Digest)
			}
			hu.digest = d
		}
		if u.Regex != "" {
			re, err := regexp.Compile(u.Regex)
			if err != nil {
				return nil, fmt.Errorf("http check %s: regex: %w", o.Addr, err)
			}
			hu.re = re
		}
		if len(hu.StatusCodes) == 0 {
			hu.StatusCodes = DefaultStatusCodes
		}
		if vh := c.host(u); strings.ContainsAny(vh, " \r\n") {
			return nil, fmt.Errorf("http check %s: virtualhost %q holds a space or line break", o.Addr, vh)
		}
		c.urls = append(c.urls, hu)
	}
	if o.TLS {
		cfg, err := tlsClientConfig(o.SSL)
		if err != nil {
			return nil, fmt.Errorf("http check %s: %w", o.Addr, err)
		}
		c.tls = cfg
	}
	return c, nil
}

// Check requests every URL and checks each response.
func (c *HTTPCheck) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	for _, u := range c.urls {
		resp, err := c.get(ctx, u, u.digest != nil || u.re != nil, c.opts.MaxBody)
		if err != nil {
			return err
		}
		if err := u.verify(resp); err != nil {
			return fmt.Errorf("get %s%s: %w", c.opts.Addr, u.Path, err)
		}
	}
	return nil
}

func (u httpURL) verify(resp *httpResponse) error {
	ok := false
	for _, r := range u.StatusCodes {
		ok = ok || (resp.status >= r.Min && resp.status <= r.Max)
	}
	if !ok {
		return fmt.Errorf("%w %d", ErrStatus, resp.status)
	}
	if u.digest != nil {
		if sum := md5.Sum(resp.body); !bytes.Equal(sum[:], u.digest) {
			return fmt.Errorf("%w: got %x, want %x", ErrDigest, sum, u.digest)
		}
	}
	if u.re != nil && u.re.Match(resp.body) == u.RegexNoMatch {
		if u.RegexNoMatch {
			return fmt.Errorf("%w: body matches %q", ErrRegex, u.Regex)
		}
		return fmt.Errorf("%w: body does not match %q", ErrRegex, u.Regex)
	}
	return nil
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c *HTTPCheck) CheckTimeout() time.Duration {
	if c.opts.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.opts.Timeout
}

// String returns e.g. "HTTP_GET 10.0.0.2:80 /health" (the paths, space-separated). It
// includes every option that changes the probe, so identical strings mean identical probes.
func (c *HTTPCheck) String() string {
	var b strings.Builder
	if c.opts.TLS {
		b.WriteString("SSL_GET ")
	} else {
		b.WriteString("HTTP_GET ")
	}
	b.WriteString(c.opts.Addr.String())
	for _, u := range c.urls {
		b.WriteString(" " + u.Path)
	}
	// Options that change the probe, hidden in a compact suffix so logs stay readable.
	fmt.Fprintf(&b, " [%s %v %s %q %v %q %v %d", c.proto, bindString(c.opts.BindTo), c.CheckTimeout(), c.opts.VirtualHost,
		c.opts.EnableSNI, c.opts.SNIName, c.opts.TLSCompliant, c.opts.MaxBody)
	if ssl := c.opts.SSL; ssl != nil {
		// The password stays out of logs: checks differing only in it share probes.
		fmt.Fprintf(&b, " ssl %q %q %q password:%v", ssl.CA, ssl.Certificate, ssl.Key, ssl.Password != "")
	}
	if c.opts.Source != (Source{}) {
		fmt.Fprintf(&b, " %+v", c.opts.Source)
	}
	for _, u := range c.urls {
		fmt.Fprintf(&b, " %s %v %q %q %v", u.Digest, u.StatusCodes, u.VirtualHost, u.Regex, u.RegexNoMatch)
	}
	b.WriteString("]")
	return b.String()
}

// host returns the Host header for u.
func (c *HTTPCheck) host(u URL) string {
	if u.VirtualHost != "" {
		return u.VirtualHost
	}
	if c.opts.VirtualHost != "" {
		return c.opts.VirtualHost
	}
	return defaultHost(c.opts.Addr, c.opts.TLS)
}

// defaultHost is the Host header keepalived sends without a virtualhost: the address, in
// brackets for IPv6, with the port unless it is the scheme's default.
func defaultHost(addr netip.AddrPort, tls bool) string {
	host := addr.Addr().String()
	if addr.Addr().Is6() {
		host = "[" + host + "]"
	}
	if (tls && addr.Port() == 443) || (!tls && addr.Port() == 80) {
		return host
	}
	return host + ":" + strconv.Itoa(int(addr.Port()))
}

// request returns the GET request keepalived sends for path and host.
func request(proto, path, host string) []byte {
	var b bytes.Buffer
	v := "1.0"
	if proto == "1.1" {
		v = "1.1"
	}
	fmt.Fprintf(&b, "GET %s HTTP/%s\r\nUser-Agent: KeepAliveClient\r\n", path, v)
	switch proto {
	case "1.0C", "1.1":
		b.WriteString("Connection: close\r\n")
	case "1.0K":
		b.WriteString("Connection: keep-alive\r\n")
	}
	fmt.Fprintf(&b, "Host: %s\r\n\r\n", host)
	return b.Bytes()
}

// get sends one request for u and reads the response, the body only when wantBody.
func (c *HTTPCheck) get(ctx context.Context, u httpURL, wantBody bool, maxBody int64) (*httpResponse, error) {
	host := c.host(u.URL)
	d := c.opts.Source.dialer("tcp", c.opts.BindTo)
	raw, err := d.DialContext(ctx, "tcp", c.opts.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.opts.Addr, err)
	}
	defer raw.Close()
	// Every read and write below is bounded by the check's deadline, and cancelling ctx
	// unblocks them at once.
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	conn := raw
	if c.opts.TLS {
		cfg := c.tls.Clone()
		if c.opts.EnableSNI {
			cfg.ServerName = c.opts.SNIName
			if cfg.ServerName == "" {
				if h, _, err := net.SplitHostPort(host); err == nil {
					cfg.ServerName = h
				} else {
					cfg.ServerName = host
				}
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake with %s: %w", c.opts.Addr, err)
		}
		if c.opts.TLSCompliant {
			defer tc.Close() // sends close_notify before raw.Close
		}
		conn = tc
	}
	if _, err := conn.Write(request(c.proto, u.Path, host)); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", c.opts.Addr, err)
	}
	resp, err := readResponse(conn, wantBody, maxBody)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("read response from %s%s: %w", c.opts.Addr, u.Path, err)
	}
	return resp, nil
}

// httpResponse is what a check needs of a response.
type httpResponse struct {
	status int
	header []byte // the status line and headers as received, up to the blank line
	body   []byte // nil unless asked for
}

// readResponse reads an HTTP/1.x response from r: at most MaxHeaderBytes of status line and
// headers, then, when wantBody, a body of at most maxBody bytes: Content-Length bytes, else
// everything up to EOF (a chunked body too, undecoded, as keepalived digests it). The status line must be "HTTP/1.x NNN[ reason]".
func readResponse(r io.Reader, wantBody bool, maxBody int64) (*httpResponse, error) {
	hr := &limitedReader{r: r, n: MaxHeaderBytes}
	br := bufio.NewReaderSize(hr, 4096)
	var resp httpResponse
	var header bytes.Buffer
	line, err := readLine(br, &header)
	if err != nil {
		return nil, err
	}
	if resp.status, err = parseStatusLine(line); err != nil {
		return nil, err
	}
	contentLength, chunked := int64(-1), false
	for {
		line, err := readLine(br, &header)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: header line %q", ErrBadResponse, truncate(line))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (contentLength >= 0 && n != contentLength) {
				return nil, fmt.Errorf("%w: content-length %q", ErrBadResponse, truncate(value))
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = true
		}
	}
	if chunked {
		// keepalived hashes a chunked body as received, framing included, so digests made by
		// its genhash match only if the body is read raw, to the end.
		contentLength = -1
	}
	resp.header = header.Bytes()
	if !wantBody {
		return &resp, nil
	}
	// The header limit no longer applies; the body has its own.
	hr.n = maxBody + 1<<10
	body := io.Reader(br)
	if contentLength >= 0 {
		if contentLength > maxBody {
			return nil, fmt.Errorf("%w: content-length %d is over %d", ErrBodyTooLarge, contentLength, maxBody)
		}
		body = io.LimitReader(br, contentLength)
	}
	resp.body, err = io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(resp.body)) > maxBody {
		return nil, fmt.Errorf("%w: over %d bytes", ErrBodyTooLarge, maxBody)
	}
	if contentLength >= 0 && int64(len(resp.body)) < contentLength {
		return nil, fmt.Errorf("%w: body of %d bytes, content-length %d", ErrBadResponse, len(resp.body), contentLength)
	}
	return &resp, nil
}

// parseStatusLine parses "HTTP/1.x NNN[ reason]" and returns NNN.
func parseStatusLine(line []byte) (int, error) {
	rest, ok := bytes.CutPrefix(line, []byte("HTTP/1."))
	if !ok || len(rest) < 5 || (rest[0] != '0' && rest[0] != '1') || rest[1] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", ErrBadResponse, truncate(line))
	}
	code := rest[2:5]
	if len(rest) > 5 && rest[5] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", ErrBadResponse, truncate(line))
	}
	n := 0
	for i, ch := range code {
		if ch < '0' || ch > '9' || (i == 0 && ch == '0') {
			return 0, fmt.Errorf("%w: status line %q", ErrBadResponse, truncate(line))
		}
		n = n*10 + int(ch-'0')
	}
	return n, nil
}

// readLine reads a line ending in LF (CRLF or bare LF), copies it with its ending to raw, and
// returns it without. Running out of the header budget is ErrHeaderTooLarge.
func readLine(br *bufio.Reader, raw *bytes.Buffer) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		raw.Write(frag)
		line = append(line, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, errLimit) {
			return nil, fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, MaxHeaderBytes)
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: connection closed in the header", ErrBadResponse)
		}
		return nil, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	return line, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

var errLimit = errors.New("read limit reached")

// limitedReader is io.LimitedReader that reports errLimit rather than EOF at its limit, so a
// server that sends too much is told apart from one that closes early.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// tlsClientConfig builds SSL_GET's TLS client configuration from keepalived's SSL block.
func tlsClientConfig(s *SSLConfig) (*tls.Config, error) {
	cfg := &tls.Config{
		// keepalived checks that a server answers, not who it is; with a CA the chain is
		// verified below, still without the host name, since servers are checked by address.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS10,
	}
	if s == nil {
		return cfg, nil
	}
	if s.CA != "" {
		pem, err := os.ReadFile(s.CA)
		if err != nil {
			return nil, fmt.Errorf("read ssl ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read ssl ca %s: no PEM certificate", s.CA)
		}
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			var certs []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("parse server certificate: %w", err)
				}
				certs = append(certs, c)
			}
			if len(certs) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	if s.Certificate != "" || s.Key != "" {
		certPEM, err := os.ReadFile(s.Certificate)
		if err != nil {
			return nil, fmt.Errorf("read ssl certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(s.Key)
		if err != nil {
			return nil, fmt.Errorf("read ssl key: %w", err)
		}
		if s.Password != "" {
			if keyPEM, err = decryptKey(keyPEM, s.Password); err != nil {
				return nil, fmt.Errorf("decrypt ssl key %s: %w", s.Key, err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load ssl certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// decryptKey decrypts a legacy encrypted PEM key, the format keepalived's password applies to.
func decryptKey(keyPEM []byte, password string) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	//lint:ignore SA1019 keepalived's password protects legacy-encrypted PEM keys; there is no other API for them.
	if !x509.IsEncryptedPEMBlock(block) {
		return keyPEM, nil
	}
	//lint:ignore SA1019 as above.
	der, err := x509.DecryptPEMBlock(block, []byte(password))
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}), nil
}

// probeKey lets the Scheduler share the probes of identical checks: String names every option.
func (c *HTTPCheck) probeKey() string { return c.String() }
