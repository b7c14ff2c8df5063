package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
	"github.com/vishvananda/netlink"
)

// node is one Instance running in a namespace of a test topology.
type node struct {
	ns     *netns.NS
	inst   *Instance
	cancel context.CancelFunc
	done   chan error
	events chan Event
	mac    string
}

// lan builds a switch with the namespaces named in short plugged in on eth0, addressed
// 10.9.0.(i+1)/24 and fd09::(i+1)/64, with the transmit checksum offload off so raw frames
// arrive intact.
func lan(t *testing.T, short ...string) (*netns.Env, []*netns.NS) {
	t.Helper()
	env := netns.ForTest(t)
	sw, err := env.NewSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	var out []*netns.NS
	for i, name := range short {
		ns, err := env.NewNS(name)
		if err != nil {
			t.Fatal(err)
		}
		// No duplicate address detection, so link-local sources are usable at once.
		if err := ns.Sysctl("net/ipv6/conf/default/accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
		if _, err := sw.Plug(ns, "eth0"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"10.9.0.%d/24", "fd09::%d/64"} {
			pfx := netip.MustParsePrefix(sprintf(p, i+1))
			if err := ns.AddAddr("eth0", pfx); err != nil {
				t.Fatal(err)
			}
		}
		if err := ns.TxOffloadOff("eth0"); err != nil {
			t.Fatal(err)
		}
		out = append(out, ns)
	}
	return env, out
}

// start creates the instance inside ns, so its sockets live there, and runs it.
func start(t *testing.T, ns *netns.NS, cfg Config) *node {
	t.Helper()
	n := &node{ns: ns, done: make(chan error, 1), events: make(chan Event, 64)}
	if cfg.Interface == "" {
		cfg.Interface = "eth0"
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := ns.Do(func() (err error) { n.inst, err = New(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	mac, err := ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	n.mac = mac
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- n.inst.Run(ctx) }()
	go func() {
		for ev := range n.inst.Events() {
			n.events <- ev
		}
		close(n.events)
	}()
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: Run: %v", n.ns.Short, err)
		}
		n.done <- nil // later stops return at once
	case <-time.After(5 * time.Second):
		t.Errorf("%s: Run did not return within 5s of cancel", n.ns.Short)
	}
}

// wait returns the next event reporting state st within d, skipping others.
func (n *node) wait(t *testing.T, st State, d time.Duration) Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-n.events:
			if !ok {
				t.Fatalf("%s: events closed while waiting for %v", n.ns.Short, st)
			}
			if ev.State == st {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: no transition to %v within %v (state %v, stats %+v)", n.ns.Short, st, d, n.inst.State(), n.inst.Stats())
		}
	}
}

// hasAddr reports whether ifname in ns holds a.
func hasAddr(t *testing.T, ns *netns.NS, ifname string, a netip.Addr) bool {
	t.Helper()
	l, err := ns.Link(ifname)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ns.Netlink().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return true
		}
	}
	return false
}

// eventually polls cond every 20ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// neighMAC returns the link-layer address ns's neighbor table holds for a on eth0.
func neighMAC(t *testing.T, ns *netns.NS, a netip.Addr) string {
	t.Helper()
	l, err := ns.Link("eth0")
	if err != nil {
		t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	neighs, err := ns.Netlink().NeighList(l.Attrs().Index, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a && n.HardwareAddr != nil {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// touch sends one UDP datagram from ns to a so ns resolves a's link-layer address.
func touch(t *testing.T, ns *netns.NS, a netip.Addr) {
	t.Helper()
	c, err := ns.Dial("udp", net.JoinHostPort(a.String(), "9"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

// expectHolder checks that exactly holder (of nodes) holds vip and that client's neighbor
// table sends vip to holder.
func expectHolder(t *testing.T, client *netns.NS, vip netip.Addr, holder *node, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		want := n == holder
		if !eventually(2*time.Second, func() bool { return hasAddr(t, n.ns, "eth0", vip) == want }) {
			t.Errorf("%s holds %s: %v, want %v", n.ns.Short, vip, !want, want)
		}
	}
	if client == nil {
		return
	}
	if !eventually(2*time.Second, func() bool { return neighMAC(t, client, vip) == holder.mac }) {
		t.Errorf("client resolves %s to %q, want %s's %s", vip, neighMAC(t, client, vip), holder.ns.Short, holder.mac)
	}
}

func TestElectionFailoverAndRelease(t *testing.T) {
	for _, fam := range []struct {
		name string
		vip  netip.Prefix
	}{
		{"IPv4", netip.MustParsePrefix("10.9.0.100/32")},
		{"IPv6", netip.MustParsePrefix("fd09::100/128")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			_, nss := lan(t, "d1", "d2", "client")
			vip := fam.vip.Addr()
			cfg := Config{Name: "VI_1", VRID: 51, Version: 3, AdvertInterval: 100 * time.Millisecond,
				VIPs: []netip.Prefix{fam.vip}, GARPMasterDelay: time.Second}
			cfg.HigherPrioSendAdvert = true
			c1, c2 := cfg, cfg
			c1.Priority, c2.Priority = 200, 100
			// Election: d2 alone becomes master; d1 (200) then preempts it.
			d2 := start(t, nss[1], c2)
			d2.wait(t, Backup, time.Second)
			d2.wait(t, Master, 2*time.Second)
			d1 := start(t, nss[0], c1)
			client := nss[2]
			d1.wait(t, Backup, time.Second)
			d1.wait(t, Master, 2*time.Second)
			d2.wait(t, Backup, time.Second)
			expectHolder(t, nil, vip, d1, d1, d2)
			touch(t, client, vip)
			expectHolder(t, client, vip, d1, d1, d2)

			down := MasterDownInterval(3, 100, cfg.AdvertInterval)

			// Split brain: VRRP between them is cut while the link stays up. d2 hears
			// nothing, takes over after Master_Down_Interval (0.3609375 s for priority 100) and
			// the client follows its announcements; d1 stays master too.
			cut := time.Now()
			nft(t, nss[0], "add table inet vrrpcut",
				"add chain inet vrrpcut in { type filter hook input priority 0; }",
				"add chain inet vrrpcut out { type filter hook output priority 0; }",
				"add rule inet vrrpcut in meta l4proto 112 drop",
				"add rule inet vrrpcut out meta l4proto 112 drop")
			ev := d2.wait(t, Master, 3*time.Second)
			if took := ev.At.Sub(cut); took < down-50*time.Millisecond || took > down+500*time.Millisecond {
				t.Errorf("backup took over %v after the master went silent, want about %v", took, down)
			}
			expectHolder(t, client, vip, d2)
			if d1.inst.State() != Master {
				t.Fatalf("d1 is %v, want still MASTER during the split", d1.inst.State())
			}

			// Healed: d2 yields to d1's priority with one last advert (higher_prio_send_advert),
			// d1 hears a lower-priority master and re-announces: the client returns to d1.
			nft(t, nss[0], "delete table inet vrrpcut")
			d2.wait(t, Backup, 2*time.Second)
			expectHolder(t, client, vip, d1, d1, d2)

			// d1's link fails: FAULT, its VIP goes; d2 takes over after Master_Down_Interval.
			l, err := nss[0].Link("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if err := nss[0].Netlink().LinkSetDown(l); err != nil {
				t.Fatal(err)
			}
			d1.wait(t, Fault, time.Second)
			d2.wait(t, Master, 3*time.Second)
			expectHolder(t, client, vip, d2, d1, d2)

			// The link returns: d1 is BACKUP, then preempts d2 by priority.
			if err := nss[0].Netlink().LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
			d1.wait(t, Backup, time.Second)
			d1.wait(t, Master, 2*time.Second)
			d2.wait(t, Backup, time.Second)
			expectHolder(t, client, vip, d1, d1, d2)

			// d1 stops: it sends priority 0, so d2 takes over after Skew_Time, far sooner
			// than Master_Down_Interval, and d1 removes its VIP.
			released := time.Now()
			d1.stop(t)
			ev = d2.wait(t, Master, 2*time.Second)
			if took := ev.At.Sub(released); took > down/2 {
				t.Errorf("takeover after priority 0 took %v, want about Skew_Time %v", took, SkewTime(3, 100, cfg.AdvertInterval))
			}
			expectHolder(t, client, vip, d2, d1, d2)
			if got := d2.inst.Stats(); len(got.Dropped) != 0 || got.Received == 0 {
				t.Errorf("d2 stats %+v: want adverts received and none dropped", got)
			}
			d2.stop(t)
			if hasAddr(t, nss[1], "eth0", vip) {
				t.Errorf("d2 still holds %s after stopping", vip)
			}
		})
	}
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// nft runs nftables commands in ns.
func nft(t *testing.T, ns *netns.NS, cmds ...string) {
	t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", ns.Short, err, out)
	}
}
