package control

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// lookupTimeout bounds each reverse lookup, so `sluice list` without -n stays usable when DNS
// is down (ipvsadm would hang).
const lookupTimeout = 300 * time.Millisecond

// Names returns a ListOptions.Names that prints host names (reverse DNS, cached) and service
// names from /etc/services, as ipvsadm does without -n. Addresses and ports without a name
// stay numeric.
func Names(ctx context.Context) func(proto string, ap netip.AddrPort) string {
	services := map[string]string{}
	if f, err := os.Open("/etc/services"); err == nil {
		services = parseServices(io.LimitReader(f, 4<<20))
		f.Close()
	}
	hosts := map[netip.Addr]string{}
	return func(proto string, ap netip.AddrPort) string {
		host, ok := hosts[ap.Addr()]
		if !ok {
			host = ap.Addr().String()
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			if names, err := net.DefaultResolver.LookupAddr(lctx, host); err == nil && len(names) > 0 {
				host = strings.TrimSuffix(names[0], ".")
			}
			cancel()
			hosts[ap.Addr()] = host
		}
		if ap.Addr().Is6() && host == ap.Addr().String() {
			host = "[" + host + "]"
		}
		port := strconv.Itoa(int(ap.Port()))
		if n, ok := services[strings.ToLower(proto)+"/"+port]; ok {
			port = n
		}
		return host + ":" + port
	}
}

// parseServices reads /etc/services lines ("http 80/tcp www") into "tcp/80" -> "http"; the
// first name listed for a port wins, as with getservbyport.
func parseServices(r io.Reader) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		key := f[1] // "80/tcp"
		port, proto, ok := strings.Cut(key, "/")
		if !ok {
			continue
		}
		k := proto + "/" + port
		if _, dup := m[k]; !dup {
			m[k] = f[0]
		}
	}
	return m
}
