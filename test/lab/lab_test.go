package lab

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/netns"
)

// TestBuild checks the test bed without any load balancer: real servers answer on their own
// addresses, only the director answers ARP for the VIP, and with nothing on the director's
// port 80 the VIP refuses connections. When an e2e test fails, this one tells whether the
// topology or the daemon is to blame.
func TestBuild(t *testing.T) {
	l, err := Build(netns.ForTest(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, rs := range l.RealServers {
		a := l.get(ctx, rs.Addr)
		if a.Err != nil || a.Server != rs.Name {
			t.Errorf("GET http://%s/ = %q, %v; want %q", rs.Addr, a.Server, a.Err, rs.Name)
		}
	}

	a := l.Get(ctx)
	if !errors.Is(a.Err, syscall.ECONNREFUSED) {
		t.Errorf("GET http://%s/ without a load balancer = %q, %v; want connection refused by the director", VIP, a.Server, a.Err)
	}
	dirMAC, err := l.Director.HardwareAddr(Iface)
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := l.Client.Netlink().NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range neighs {
		if n.IP.String() == VIP.String() {
			found = true
			if n.HardwareAddr.String() != dirMAC {
				t.Errorf("client resolved VIP to %s, want the director's %s", n.HardwareAddr, dirMAC)
			}
		}
	}
	if !found {
		t.Errorf("client has no neighbour entry for the VIP: %v", neighs)
	}

	rs := l.RealServers[0]
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	if a := l.get(ctx, rs.Addr); a.Err == nil {
		t.Errorf("%s answered after Stop: %q", rs.Name, a.Server)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	if a := l.get(ctx, rs.Addr); a.Server != rs.Name {
		t.Errorf("%s after restart = %q, %v", rs.Name, a.Server, a.Err)
	}
	if got := rs.Hits(); got != 2 {
		t.Errorf("%s hits = %d, want 2", rs.Name, got)
	}

	conf := l.KeepalivedConf(time.Second, time.Second)
	for _, want := range []string{"virtual_server 10.111.0.100 80 {", "lb_kind DR", "real_server 10.111.0.13 80 {", "retry 0"} {
		if !strings.Contains(conf, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestLogTail(t *testing.T) {
	var got []string
	lt := &LogTail{Max: 3, OnLine: func(s string) { got = append(got, s) }}
	lt.Write([]byte("a\nb"))
	m := lt.Mark()
	lt.Write([]byte("b\nc\nd\ne\n"))
	if want := "a bb c d e"; strings.Join(got, " ") != want {
		t.Errorf("lines = %q, want %q", got, want)
	}
	if s := strings.Join(lt.Since(m), " "); s != "c d e" {
		t.Errorf("Since(mark) = %q, want the 3 kept lines", s)
	}
	if s := lt.Since(lt.Mark() + 5); len(s) != 0 {
		t.Errorf("Since(future) = %q", s)
	}
	if !lt.Contains(m, "d") || lt.Contains(m, "a") {
		t.Error("Contains")
	}
}
