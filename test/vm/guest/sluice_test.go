package guest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// sluiceBin is the static sluice binary test/vm puts in the VM.
func sluiceBin() string { return cmpOr(os.Getenv("SLUICE_BIN"), "/usr/local/bin/sluice") }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// server is one real_server line of a generated keepalived.conf.
type server struct {
	addr   netip.Addr
	weight int
}

// keepalivedConf is a keepalived.conf with one TCP virtual service on vip:80 and a TCP_CHECK
// per real server that takes a dead server out after one failed check.
func keepalivedConf(vip netip.Addr, algo, kind string, servers ...server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_server %s 80 {\n    delay_loop %d\n    lb_algo %s\n    lb_kind %s\n    protocol TCP\n",
		vip, int(lab.DelayLoop/time.Second), algo, kind)
	for _, s := range servers {
		fmt.Fprintf(&b, "    real_server %s 80 {\n        weight %d\n        TCP_CHECK {\n            connect_timeout %d\n            retry 0\n        }\n    }\n",
			s.addr, s.weight, int(lab.ConnectTimeout/time.Second))
	}
	b.WriteString("}\n")
	return b.String()
}

// daemon is `sluice run` running in a director namespace.
type daemon struct {
	proc    *netns.Proc
	log     *lab.LogTail
	conf    string
	socket  string // its control socket
	nsPath  string // the director's namespace, whose IPVS table sluice programs
	stopped bool   // stopped by the test, checked then
}

// startSluice writes conf and starts `sluice run --dataplane ipvs` with it in director.
// Cleanup stops it with SIGTERM and fails the test unless it exits with status 0 and leaves
// the IPVS table empty.
func startSluice(t *testing.T, env *netns.Env, director *netns.NS, conf string) *daemon {
	t.Helper()
	return startSluiceWith(t, env, director, conf, nil, "--dataplane", "ipvs")
}

// startSluiceWith is startSluice with the command prefixed by wrapper (such as noxdp) and
// extra flags for sluice run.
func startSluiceWith(t *testing.T, env *netns.Env, director *netns.NS, conf string, wrapper []string, extra ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{conf: filepath.Join(dir, "keepalived.conf"), socket: filepath.Join(dir, "sluice.sock"),
		nsPath: "/run/netns/" + director.Name}
	if err := os.WriteFile(d.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var ended atomic.Bool
	name := director.Short
	d.log = &lab.LogTail{OnLine: func(line string) {
		if !ended.Load() {
			t.Log("sluice@" + name + ": " + line)
		}
	}}
	args := append(slices.Clone(wrapper), sluiceBin(), "run", "-f", d.conf, "-n", "-l", "--socket", d.socket)
	args = append(args, extra...)
	cmd := director.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.WaitDelay = 5 * time.Second
	var err error
	if d.proc, err = env.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer ended.Store(true)
		if d.stopped {
			return
		}
		select {
		case <-d.proc.Done():
			t.Errorf("sluice exited before the test ended: %v", d.proc.Err())
			return
		default:
		}
		d.stop(t)
	})
	return d
}

// stop stops sluice with SIGTERM and fails the test unless it exits with status 0 and leaves
// the IPVS table empty.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.stopped = true
	if err := d.proc.Stop(10 * time.Second); err != nil {
		t.Errorf("sluice did not exit cleanly on SIGTERM: %v", err)
	}
	if got := kernelTable(t, d.nsPath); len(got) != 0 {
		t.Errorf("IPVS table after sluice exited = %q, want empty", got)
	}
}

// reload rewrites the configuration and sends SIGHUP.
func (d *daemon) reload(t *testing.T, conf string) {
	t.Helper()
	if err := os.WriteFile(d.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
}

// waitTable polls the director's IPVS table until it equals want.
func (d *daemon) waitTable(t *testing.T, timeout time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(timeout)
	var got []string
	for i := 0; i < 1000; i++ {
		if got = kernelTable(t, d.nsPath); slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("IPVS table within %v:\n  got  %q\n  want %q", timeout, got, want)
}

// checkTally fails unless every attempt succeeded, each server in want answered exactly as
// often as want says (or at least once for -1), and every real server saw the client's own
// address.
func checkTally(t *testing.T, tally lab.Tally, client netip.Addr, want map[string]int) {
	t.Helper()
	for _, a := range tally.Failed {
		t.Errorf("connection failed after %v: %v", a.Duration.Round(time.Millisecond), a.Err)
	}
	for name, n := range want {
		if got := tally.ByServer[name]; (n < 0 && got == 0) || (n >= 0 && got != n) {
			t.Errorf("%s answered %d times, want %d (all: %v)", name, got, n, tally.ByServer)
		}
	}
	for name := range tally.ByServer {
		if _, ok := want[name]; !ok {
			t.Errorf("%s answered %d times, want none (all: %v)", name, tally.ByServer[name], tally.ByServer)
		}
	}
	for peer, n := range tally.ByPeer {
		if peer != client.String() {
			t.Errorf("real servers saw %d connections from %s, want only the client %s", n, peer, client)
		}
	}
}

// healthWindow is how long sluice may take to notice a dead real server and reprogram IPVS.
const healthWindow = lab.DelayLoop + lab.ConnectTimeout + lab.ApplyMargin + 3*time.Second

// TestSluiceDirectRouting runs `sluice run --dataplane ipvs` on the standard lab (client,
// director holding the VIP, two DR real servers on one bridge) and checks balancing, health-
// driven removal and return, weight changes on reload, and cleanup on exit.
func TestSluiceDirectRouting(t *testing.T) {
	env := netns.ForTest(t)
	l, err := lab.Build(env, 2)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	rs1, rs2 := l.RealServers[0], l.RealServers[1]
	vs := fmt.Sprintf("TCP %s:80", lab.VIP)
	d := startSluice(t, env, l.Director, keepalivedConf(lab.VIP, "rr", "DR", server{rs1.Addr, 1}, server{rs2.Addr, 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.waitTable(t, time.Second, vs+" rr", vs+" -> "+rs1.Addr.String()+":80 DR w=1", vs+" -> "+rs2.Addr.String()+":80 DR w=1")

	t.Run("round robin over both, client address kept", func(t *testing.T) {
		checkTally(t, l.Run(ctx, 20), lab.ClientIP, map[string]int{"rs1": 10, "rs2": 10})
	})

	t.Run("dead server removed by its health check", func(t *testing.T) {
		if err := rs1.Stop(); err != nil {
			t.Fatal(err)
		}
		d.waitTable(t, healthWindow, vs+" rr", vs+" -> "+rs2.Addr.String()+":80 DR w=1")
		checkTally(t, l.Run(ctx, 10), lab.ClientIP, map[string]int{"rs2": 10})
	})

	t.Run("recovered server comes back", func(t *testing.T) {
		if err := rs1.Start(); err != nil {
			t.Fatal(err)
		}
		d.waitTable(t, healthWindow, vs+" rr", vs+" -> "+rs1.Addr.String()+":80 DR w=1", vs+" -> "+rs2.Addr.String()+":80 DR w=1")
		checkTally(t, l.Run(ctx, 10), lab.ClientIP, map[string]int{"rs1": 5, "rs2": 5})
	})

	t.Run("reload to wrr 3:1", func(t *testing.T) {
		d.reload(t, keepalivedConf(lab.VIP, "wrr", "DR", server{rs1.Addr, 3}, server{rs2.Addr, 1}))
		d.waitTable(t, 10*time.Second, vs+" wrr", vs+" -> "+rs1.Addr.String()+":80 DR w=3", vs+" -> "+rs2.Addr.String()+":80 DR w=1")
		// IPVS keeps the entries of closed connections for a while, and a client source port
		// the kernel reuses may meet one and go to its old server: allow one such connection.
		tally := l.Run(ctx, 20)
		if r1, r2 := tally.ByServer["rs1"], tally.ByServer["rs2"]; r1 < 14 || r2 < 4 || r1+r2 != 20 {
			t.Errorf("wrr 3:1 over 20 connections: rs1 %d, rs2 %d; want 15 and 5, give or take one (all: %v)", r1, r2, tally.ByServer)
		}
		checkTally(t, tally, lab.ClientIP, map[string]int{"rs1": -1, "rs2": -1})
	})

	t.Run("weight 0 drains", func(t *testing.T) {
		d.reload(t, keepalivedConf(lab.VIP, "wrr", "DR", server{rs1.Addr, 0}, server{rs2.Addr, 1}))
		d.waitTable(t, 10*time.Second, vs+" wrr", vs+" -> "+rs1.Addr.String()+":80 DR w=0", vs+" -> "+rs2.Addr.String()+":80 DR w=1")
		checkTally(t, l.Run(ctx, 10), lab.ClientIP, map[string]int{"rs2": 10})
	})
}

// TestSluiceTunnel runs sluice with lb_kind TUN on the standard lab: the director wraps each
// request in IPIP to a real server, which unwraps it on tunl0 and answers the client directly.
func TestSluiceTunnel(t *testing.T) {
	env := netns.ForTest(t)
	l, err := lab.Build(env, 2)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	rs1, rs2 := l.RealServers[0], l.RealServers[1]
	for _, rs := range l.RealServers {
		// tunl0 exists in every namespace once ipip is loaded; rp_filter would drop the
		// unwrapped packets, which arrive on tunl0 from the client's address.
		must(t, rs.NS.LinkUp("tunl0"))
		must(t, rs.NS.Sysctl("net/ipv4/conf/tunl0/rp_filter", "0"))
	}
	vs := fmt.Sprintf("TCP %s:80", lab.VIP)
	d := startSluice(t, env, l.Director, keepalivedConf(lab.VIP, "rr", "TUN", server{rs1.Addr, 1}, server{rs2.Addr, 1}))
	d.waitTable(t, 10*time.Second, vs+" rr", vs+" -> "+rs1.Addr.String()+":80 TUN w=1", vs+" -> "+rs2.Addr.String()+":80 TUN w=1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	checkTally(t, l.Run(ctx, 20), lab.ClientIP, map[string]int{"rs1": 10, "rs2": 10})
}

// NAT test bed: the client and the real servers are on different subnets and the director
// routes between them, rewriting the destination to a real server and the replies back.
var (
	natClient   = netip.MustParseAddr("10.112.1.10")
	natFront    = netip.MustParseAddr("10.112.1.1")
	natVIP      = netip.MustParseAddr("10.112.1.100")
	natBack     = netip.MustParseAddr("10.112.2.1")
	natServers  = []netip.Addr{netip.MustParseAddr("10.112.2.11"), netip.MustParseAddr("10.112.2.12")}
	natSubnetSz = 24
)

func addDefaultRoute(t *testing.T, ns *netns.NS, gw netip.Addr) {
	t.Helper()
	if err := ns.Netlink().RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route via %s in %s: %v", gw, ns.Short, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSluiceNAT runs sluice with lb_kind NAT: requests and replies both cross the director.
func TestSluiceNAT(t *testing.T) {
	env := netns.ForTest(t)
	client, err := env.NewNS("client")
	must(t, err)
	dir, err := env.NewNS("director")
	must(t, err)
	sw, err := env.NewSwitch("switch")
	must(t, err)
	must(t, env.Veth(client, "eth0", dir, "eth0"))
	must(t, client.AddAddr("eth0", netip.PrefixFrom(natClient, natSubnetSz)))
	must(t, dir.AddAddr("eth0", netip.PrefixFrom(natFront, natSubnetSz)))
	must(t, dir.AddAddr("eth0", netip.PrefixFrom(natVIP, 32)))
	addDefaultRoute(t, client, natFront)
	_, err = sw.Plug(dir, "eth1")
	must(t, err)
	must(t, dir.AddAddr("eth1", netip.PrefixFrom(natBack, natSubnetSz)))
	must(t, dir.Sysctl("net/ipv4/ip_forward", "1"))

	var rss []*lab.RealServer
	for i, addr := range natServers {
		name := fmt.Sprintf("rs%d", i+1)
		ns, err := env.NewNS(name)
		must(t, err)
		_, err = sw.Plug(ns, "eth0")
		must(t, err)
		must(t, ns.AddAddr("eth0", netip.PrefixFrom(addr, natSubnetSz)))
		addDefaultRoute(t, ns, natBack)
		rs := &lab.RealServer{Name: name, Addr: addr, NS: ns}
		must(t, rs.Start())
		t.Cleanup(func() { rs.Stop() })
		rss = append(rss, rs)
	}

	vs := fmt.Sprintf("TCP %s:80", natVIP)
	d := startSluice(t, env, dir, keepalivedConf(natVIP, "rr", "NAT", server{natServers[0], 1}, server{natServers[1], 1}))
	d.waitTable(t, 10*time.Second, vs+" rr", vs+" -> "+natServers[0].String()+":80 NAT w=1", vs+" -> "+natServers[1].String()+":80 NAT w=1")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nat := &natLab{http: client.HTTPClient(lab.RequestTimeout)}
	t.Run("round robin over both, replies rewritten back", func(t *testing.T) {
		checkTally(t, nat.run(ctx, 20), natClient, map[string]int{"rs1": 10, "rs2": 10})
	})
	t.Run("dead server removed by its health check", func(t *testing.T) {
		must(t, rss[0].Stop())
		d.waitTable(t, healthWindow, vs+" rr", vs+" -> "+natServers[1].String()+":80 NAT w=1")
		checkTally(t, nat.run(ctx, 10), natClient, map[string]int{"rs2": 10})
	})
}

// natLab makes requests to the NAT test bed's VIP the way lab.Lab does to its own.
type natLab struct{ http *http.Client }

func (n *natLab) run(ctx context.Context, count int) lab.Tally {
	var tally lab.Tally
	for i := 0; i < count && ctx.Err() == nil; i++ {
		tally.Add(n.get(ctx))
	}
	return tally
}

func (n *natLab) get(ctx context.Context) (a lab.Attempt) {
	a.Start = time.Now()
	defer func() { a.Duration = time.Since(a.Start) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/", natVIP), nil)
	if err != nil {
		a.Err = err
		return a
	}
	resp, err := n.http.Do(req)
	if err != nil {
		a.Err = err
		return a
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		a.Err = fmt.Errorf("read response: %w", err)
		return a
	}
	if resp.StatusCode != http.StatusOK {
		a.Err = fmt.Errorf("status %s", resp.Status)
		return a
	}
	a.Server = strings.TrimSpace(string(body))
	if ap, err := netip.ParseAddrPort(resp.Header.Get(lab.PeerHeader)); err == nil {
		a.Peer = ap.Addr().String()
	}
	return a
}
