package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sluice-lb/sluice/health"
)

// genhashMain is keepalived's genhash: it prints the MD5 digest of a page's body for an
// HTTP_GET or SSL_GET url block. The flags are genhash's short ones.
func genhashMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("genhash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("s", "", "server address (genhash --server)")
	port := fs.String("p", "", "server port (genhash --port)")
	path := fs.String("u", "", "url path, e.g. /index.html (genhash --url)")
	useTLS := fs.Bool("S", false, "use TLS, as SSL_GET (genhash --use-ssl)")
	sni := fs.Bool("I", false, "send the virtual host as TLS SNI (genhash --use-sni)")
	vhost := fs.String("V", "", "virtual host for the Host header (genhash --use-virtualhost)")
	proto := fs.String("P", "1.0", "HTTP protocol: 1.0, 1.0C (with Connection: close) or 1.1 (genhash --protocol)")
	timeout := fs.Int("t", 5, "timeout in seconds (genhash --timeout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p, err := strconv.ParseUint(*port, 10, 16)
	if *server == "" || *path == "" || err != nil || p == 0 || fs.NArg() != 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, "usage: sluice genhash [-S] [-I] -s ADDRESS -p PORT -u PATH [-V VHOST] [-P 1.0|1.0C|1.1] [-t SECONDS]")
		return 2
	}
	opts := health.GenHashOptions{
		Server:      *server,
		Port:        uint16(p),
		Path:        *path,
		TLS:         *useTLS,
		SNI:         *sni,
		VirtualHost: *vhost,
		Protocol:    *proto,
		Timeout:     time.Duration(*timeout) * time.Second,
	}
	if err := health.GenHash(context.Background(), opts, stdout); err != nil {
		fmt.Fprintln(stderr, "sluice", err)
		return 1
	}
	return 0
}
