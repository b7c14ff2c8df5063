package health

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// GenHashOptions are the arguments of keepalived's genhash.
type GenHashOptions struct {
	// Server is -s: an IP address or a host name.
	Server string
	// Port is -p.
	Port uint16
	// Path is -u, e.g. "/index.html".
	Path string
	// TLS is -S.
	TLS bool
	// SNI is -I: send VirtualHost as the TLS server name.
	SNI bool
	// VirtualHost is -V: the Host header, else the address and port.
	VirtualHost string
	// Protocol is -P: "1.0" (default), "1.0C" or "1.1".
	Protocol string
	// Timeout is -t; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxBody bounds the body hashed; zero means DefaultMaxBody.
	MaxBody int64
}

// GenHash fetches the page as HTTP_GET (or SSL_GET) would and writes the MD5 of its body in
// hex and a newline to w, exactly as keepalived's genhash does without -v: that is the digest
// to put in a url block. Like genhash, it hashes the body whatever the status code.
func GenHash(ctx context.Context, opts GenHashOptions, w io.Writer) error {
	if opts.Server == "" || opts.Port == 0 || opts.Path == "" {
		return errors.New("genhash: server, port and url are required")
	}
	if opts.SNI && opts.VirtualHost == "" {
		return errors.New("genhash: sni needs a virtual host")
	}
	addr, err := netip.ParseAddr(opts.Server)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", opts.Server)
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("genhash: resolve %s: %w", opts.Server, err)
		}
		addr = ips[0]
	}
	c, err := NewHTTPCheck(HTTPOptions{
		Addr:        netip.AddrPortFrom(addr.Unmap(), opts.Port),
		Timeout:     opts.Timeout,
		TLS:         opts.TLS,
		EnableSNI:   opts.SNI,
		Protocol:    opts.Protocol,
		VirtualHost: opts.VirtualHost,
		URLs:        []URL{{Path: opts.Path}},
		MaxBody:     opts.MaxBody,
	})
	if err != nil {
		return fmt.Errorf("genhash: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	resp, err := c.get(ctx, c.urls[0], true, c.opts.MaxBody)
	if err != nil {
		return fmt.Errorf("genhash: %w", err)
	}
	sum := md5.Sum(resp.body)
	_, err = fmt.Fprintf(w, "%x\n", sum)
	return err
}
