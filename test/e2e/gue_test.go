package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// guePort is the UDP port the real servers of TestGUE decapsulate on.
const guePort = 6080

// TestGUE runs `sluice run` on a keepalived.conf with `lb_kind TUN type gue port 6080` for an
// IPv4 and an IPv6 virtual service: the XDP program encapsulates in UDP and GUE, the real
// servers decapsulate (gueDecap) and answer the client directly from the VIP, over real HTTP.
func TestGUE(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	tl, err := lab.BuildTUN(env, 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	var decaps []*gueDecap
	for _, rs := range tl.RealServers {
		g, err := startGUEDecap(env, rs.NS)
		if err != nil {
			t.Fatal(err)
		}
		decaps = append(decaps, g)
	}
	text := strings.ReplaceAll(tl.KeepalivedConfTUN(lab.DelayLoop, lab.ConnectTimeout),
		"lb_kind TUN\n", fmt.Sprintf("lb_kind TUN type gue port %d\n", guePort))
	if !strings.Contains(text, "type gue") {
		t.Fatalf("config has no GUE tunnel:\n%s", text)
	}
	conf := writeConf(t, text)
	log, stopLog := testLog(t)
	d := &daemon{lab: tl.Lab, conf: conf, log: log}
	d.proc, err = tl.StartSluice(sluiceBin, conf, d.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopAndVerify(t)
		stopLog()
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.proc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tl.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatalf("IPv4: %v", err)
	}
	if err := tl.WaitReady6(ctx, 20*time.Second); err != nil {
		t.Fatalf("IPv6: %v", err)
	}
	if attached, desc, err := tl.XDPState(); err != nil || !attached {
		t.Fatalf("VIPs answer but no XDP program on the director: %s %v", desc, err)
	}

	for _, tc := range []struct {
		name   string
		get    func(context.Context) lab.Attempt
		client string
		proto  byte
	}{
		{"gue ipv4", tl.Get, lab.ClientIP.String(), 4},
		{"gue ipv6", tl.Get6, lab.ClientIP6.String(), 41},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ipipBefore, gueBefore int64
			for i := range decaps {
				ipipBefore += tl.Tunnels[i].Packets()
				gueBefore += decaps[i].count(tc.proto)
			}
			const n = 100
			var tally lab.Tally
			start := time.Now()
			for i := 0; i < n && ctx.Err() == nil; i++ {
				tally.Add(tc.get(ctx))
			}
			t.Logf("%d connections in %v: %v", n, time.Since(start).Round(time.Millisecond), tally.ByServer)
			if len(tally.Failed) > 0 {
				t.Errorf("%d of %d connections failed", len(tally.Failed), n)
				logFailures(t, tally.Failed, start, t.Errorf)
			}
			checkShares(t, tally, "rs1", "rs2", "rs3")
			if want := map[string]int{tc.client: n - len(tally.Failed)}; !maps.Equal(tally.ByPeer, want) {
				t.Errorf("real servers saw connections from %v, want only the client %s", tally.ByPeer, tc.client)
			}
			// Every connection is at least a SYN, an ACK and a request, all through GUE and
			// none through IPIP.
			var ipipAfter, gueAfter int64
			ports := map[uint16]bool{}
			for i, g := range decaps {
				ipipAfter += tl.Tunnels[i].Packets()
				gueAfter += g.count(tc.proto)
				maps.Copy(ports, g.sourcePorts())
			}
			if got := gueAfter - gueBefore; got < 3*int64(n-len(tally.Failed)) {
				t.Errorf("real servers decapsulated %d GUE packets for %d connections, want at least 3 each", got, n)
			}
			if got := ipipAfter - ipipBefore; got != 0 {
				t.Errorf("real servers got %d IPIP packets, want none: the service tunnels with GUE", got)
			}
			// The UDP source port is hashed from the client's address and port: new
			// connections spread over many ports (ECMP entropy).
			if len(ports) < 10 {
				t.Errorf("GUE packets came from %d UDP source ports, want many", len(ports))
			}
		})
	}
}

// gueDecap is a real server's GUE endpoint, what `ip fou add port 6080 gue` does: this test
// machine's kernel has no fou module (CONFIG_NET_FOU off), so a UDP socket on guePort takes
// the GUE packets, checks the header (variant 0, version 0, no optional fields, protocol IPIP or
// IPv6) and writes the inner datagram into a TUN device, from which the stack receives it.
type gueDecap struct {
	v4, v6 atomic.Int64

	mu    sync.Mutex
	sport map[uint16]bool
}

func (g *gueDecap) count(proto byte) int64 {
	if proto == 4 {
		return g.v4.Load()
	}
	return g.v6.Load()
}

func (g *gueDecap) sourcePorts() map[uint16]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.sport)
}

// startGUEDecap sets up GUE decapsulation in ns until env closes.
func startGUEDecap(env *netns.Env, ns *netns.NS) (*gueDecap, error) {
	const ifName = "gue0"
	g := &gueDecap{sport: map[uint16]bool{}}
	var tun *os.File
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		if tun, err = lab.OpenTUN(ifName); err != nil {
			return err
		}
		// Dual-stack; GUE comes without a UDP checksum, which IPv6 sockets drop unless told.
		if c, err = net.ListenUDP("udp", &net.UDPAddr{Port: guePort}); err != nil {
			tun.Close()
			return fmt.Errorf("udp socket for GUE: %w", err)
		}
		raw, err := c.SyscallConn()
		if err == nil {
			cerr := raw.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_NO_CHECK6_RX, 1)
			})
			err = errors.Join(err, cerr)
		}
		if err != nil {
			c.Close()
			tun.Close()
			return fmt.Errorf("accept zero UDP checksums over IPv6: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("start GUE decapsulation in %s: %w", ns.Short, err)
	}
	env.Defer(func() error { return errors.Join(c.Close(), tun.Close()) })
	if err := ns.LinkUp(ifName); err != nil {
		return nil, err
	}
	if err := ns.Sysctl("net/ipv4/conf/"+ifName+"/rp_filter", "0"); err != nil {
		return nil, err
	}
	go g.pump(c, tun)
	return g, nil
}

// pump decapsulates until c is closed; malformed GUE is dropped, as fou drops it.
func (g *gueDecap) pump(c *net.UDPConn, tun *os.File) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 4 || buf[0] != 0 || buf[2] != 0 || buf[3] != 0 {
			continue // version 0, C clear, hlen 0, no flags
		}
		proto := buf[1]
		if proto != 4 && proto != 41 {
			continue
		}
		if _, err := tun.Write(buf[4:n]); err != nil {
			continue
		}
		if proto == 4 {
			g.v4.Add(1)
		} else {
			g.v6.Add(1)
		}
		g.mu.Lock()
		g.sport[uint16(from.Port)] = true
		g.mu.Unlock()
	}
}
