package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// vip2 is the group's second address, next to lab.VIP on the lab's subnet.
var vip2 = netip.MustParseAddr("10.111.0.101")

// TestVirtualServerGroup serves a virtual_server_group of two VIPs through the XDP data plane:
// after a reload from the lab's single virtual_server to `virtual_server group`, both VIPs
// spread new connections over every real server, and `sluice list` shows one service per VIP.
// (That each real server is checked once, not once per VIP, is director's TestRunServesGroup.)
func TestVirtualServerGroup(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()

	// The second VIP, as the first: on the director's interface (it answers ARP for it) and on
	// each DR real server's lo.
	if err := d.lab.Director.AddAddr(lab.Iface, netip.PrefixFrom(vip2, 32)); err != nil {
		t.Fatal(err)
	}
	for _, rs := range d.lab.RealServers {
		if err := rs.NS.AddAddr("lo", netip.PrefixFrom(vip2, 32)); err != nil {
			t.Fatal(err)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "virtual_server_group web {\n    %s %d\n    %s %d\n}\n", lab.VIP, lab.Port, vip2, lab.Port)
	fmt.Fprintf(&b, "virtual_server group web {\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n")
	for _, rs := range d.lab.RealServers {
		fmt.Fprintf(&b, "    real_server %s %d {\n        TCP_CHECK {\n            connect_timeout 1\n            retry 0\n        }\n    }\n", rs.Addr, lab.Port)
	}
	b.WriteString("}\n")
	if err := writeAtomic(d.conf, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := d.cli(t, "reload"); code != 0 {
		t.Fatalf("sluice reload: %s", errOut)
	}

	client := d.lab.Client.HTTPClient(lab.RequestTimeout)
	get := func(vip netip.Addr) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+netip.AddrPortFrom(vip, lab.Port).String()+"/", nil)
		if err != nil {
			return "", err
		}
		req.Close = true // a new connection each time, so each is scheduled
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
		return strings.TrimSpace(string(body)), err
	}
	// Both VIPs reach every real server; wait (bounded) for the reload to be applied.
	for _, vip := range []netip.Addr{lab.VIP, vip2} {
		seen := map[string]int{}
		deadline := time.Now().Add(15 * time.Second)
		for i := 0; i < 300 && len(seen) < len(d.lab.RealServers) && time.Now().Before(deadline); i++ {
			name, err := get(vip)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			seen[name]++
		}
		if len(seen) != len(d.lab.RealServers) {
			t.Errorf("VIP %s reached %v, want all %d real servers", vip, seen, len(d.lab.RealServers))
		} else {
			t.Logf("VIP %s: %v", vip, seen)
		}
	}

	out, errOut, code := d.cli(t, "list", "-n")
	if code != 0 {
		t.Fatalf("sluice list -n: %s", errOut)
	}
	for _, want := range []string{"TCP  10.111.0.100:80 rr\n", "TCP  10.111.0.101:80 rr\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("sluice list -n has no %q:\n%s", want, out)
		}
	}

}
