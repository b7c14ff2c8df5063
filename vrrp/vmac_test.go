package vrrp

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/netns"
)

func TestVMACAddr(t *testing.T) {
	if got := VMACAddr(51, true).String(); got != "00:00:5e:00:01:33" {
		t.Errorf("IPv4 VRID 51: %s", got)
	}
	if got := VMACAddr(255, false).String(); got != "00:00:5e:00:02:ff" {
		t.Errorf("IPv6 VRID 255: %s", got)
	}
	if got := VMACName(7); got != "vrrp.7" {
		t.Errorf("name %s", got)
	}
	c := Config{Interface: "eth0", VRID: 1, Priority: 100, Version: 3, UseVMAC: true,
		VIPs: []netip.Prefix{netip.MustParsePrefix("fd00::1/128")}}
	if err := validate(&c); err == nil || !strings.Contains(err.Error(), "use_vmac with IPv6") {
		t.Errorf("IPv6 use_vmac: %v, want a clear refusal", err)
	}
}

// onVMAC reports whether ns has a on vrrp.51 (false when there is no vrrp.51).
func onVMAC(t *testing.T, ns *netns.NS, a netip.Addr) bool {
	t.Helper()
	if _, err := ns.Link("vrrp.51"); err != nil {
		return false
	}
	return hasAddr(t, ns, "vrrp.51", a)
}

// receivedOn waits up to d for a datagram on c and returns it, or "".
func receivedOn(c net.PacketConn, d time.Duration) string {
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// TestVMAC runs two Sluice instances with use_vmac on a bridge: the master's VIP is on its
// macvlan vrrp.51 (MAC 00:00:5e:00:01:33, private mode), the client resolves the VIP to that
// MAC and keeps it across a failover while its datagrams follow the master; a stopped
// instance removes its macvlan and restores the base interface's arp_ignore. With
// vmac_xmit_base the adverts go from eth0 instead, and the same holds.
func TestVMAC(t *testing.T) {
	for _, xmitBase := range []bool{false, true} {
		t.Run(map[bool]string{false: "adverts from the VMAC", true: "vmac_xmit_base"}[xmitBase], func(t *testing.T) {
			testVMAC(t, xmitBase)
		})
	}
}

func testVMAC(t *testing.T, xmitBase bool) {
	_, nss := lan(t, "d1", "d2", "client")
	vip := netip.MustParsePrefix("10.9.0.100/32")
	const vmacMAC = "00:00:5e:00:01:33"
	cfg := Config{Name: "VI_1", VRID: 51, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: []netip.Prefix{vip}, UseVMAC: true, VMACXmitBase: xmitBase}
	c1, c2 := cfg, cfg
	c1.Priority, c2.Priority = 200, 100
	client := nss[2]

	// A UDP listener on each director tells which one the client's datagrams reach.
	var lns [2]net.PacketConn
	for i := range 2 {
		err := nss[i].Do(func() (err error) {
			lns[i], err = net.ListenPacket("udp4", ":7777")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer lns[i].Close()
	}
	send := func(msg string) {
		t.Helper()
		c, err := client.Dial("udp4", net.JoinHostPort(vip.Addr().String(), "7777"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte(msg))
	}
	// expectAt checks the VIP is on holder's vrrp.51 only, the client resolves it to the VMAC
	// and its datagrams reach holder.
	expectAt := func(step string, holder int) {
		t.Helper()
		for i := range 2 {
			want := i == holder
			if !eventually(2*time.Second, func() bool { return onVMAC(t, nss[i], vip.Addr()) == want }) {
				t.Errorf("%s: d%d has the VIP on vrrp.51: %v, want %v", step, i+1, !want, want)
			}
			if hasAddr(t, nss[i], "eth0", vip.Addr()) {
				t.Errorf("%s: d%d has the VIP on eth0", step, i+1)
			}
		}
		msg := "to-" + step
		got := ""
		for range 10 {
			send(msg)
			if got = receivedOn(lns[holder], 200*time.Millisecond); got == msg {
				break
			}
		}
		if got != msg {
			t.Errorf("%s: the client's datagram to the VIP did not reach d%d", step, holder+1)
		}
		if mac := neighMAC(t, client, vip.Addr()); mac != vmacMAC {
			t.Errorf("%s: client resolves the VIP to %q, want the VMAC %s", step, mac, vmacMAC)
		}
	}

	d2 := start(t, nss[1], c2)
	d2.wait(t, Master, 2*time.Second)
	var link netlink.Link
	err := nss[1].Do(func() (err error) { link, err = netlink.LinkByName("vrrp.51"); return err })
	if err != nil {
		t.Fatalf("d2 has no vrrp.51: %v", err)
	}
	mv, ok := link.(*netlink.Macvlan)
	if !ok || mv.Mode != netlink.MACVLAN_MODE_PRIVATE || link.Attrs().HardwareAddr.String() != vmacMAC {
		t.Errorf("vrrp.51 is %T mode %v MAC %s, want a private macvlan with %s", link, mv.Mode, link.Attrs().HardwareAddr, vmacMAC)
	}
	expectAt("d2 master", 1)

	d1 := start(t, nss[0], c1)
	d1.wait(t, Master, 2*time.Second)
	d2.wait(t, Backup, time.Second)
	expectAt("d1 preempted", 0)

	d1.stop(t)
	d2.wait(t, Master, time.Second)
	expectAt("d1 stopped", 1)
	err = nss[0].Do(func() error {
		if _, err := netlink.LinkByName("vrrp.51"); err == nil {
			t.Errorf("d1 kept vrrp.51 after stopping")
		}
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/eth0/arp_ignore")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != "0" {
			t.Errorf("d1's eth0 arp_ignore is %s after stopping, want 0 restored", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKeepalivedVMAC runs keepalived and Sluice, both with use_vmac: each hears the other's
// adverts sent from the shared VMAC, the lower priority stays BACKUP, and takes over (VIP on
// its vrrp.51) when the master stops with priority 0. Each way round.
func TestKeepalivedVMAC(t *testing.T) {
	vip := netip.MustParsePrefix("10.9.0.100/32")
	kaAddr, goAddr := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	c := kaCase{"v3 vmac", 3, 200 * time.Millisecond, "", false, vip}
	kaConf := func(state string, prio int) string {
		return strings.Replace(keepalivedConf(c, state, prio, kaAddr, goAddr, vip), "  interface eth0\n", "  interface eth0\n  use_vmac\n", 1)
	}
	goCfg := func(prio uint8) Config {
		return Config{Name: "VI_1", VRID: 51, Priority: prio, Version: 3, AdvertInterval: c.interval,
			VIPs: []netip.Prefix{vip}, UseVMAC: true}
	}
	down := MasterDownInterval(3, 100, c.interval)

	t.Run("keepalived master", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		ka, _ := startKeepalived(t, env, nss[0], kaConf("MASTER", 200))
		if !eventually(5*time.Second, func() bool { return onVMAC(t, nss[0], vip.Addr()) }) {
			t.Fatalf("keepalived did not become master with the VIP on vrrp.51")
		}
		sl := start(t, nss[1], goCfg(100))
		sl.wait(t, Backup, time.Second)
		time.Sleep(down + time.Second)
		if st := sl.inst.State(); st != Backup {
			t.Fatalf("Sluice is %v under a keepalived master, both with use_vmac", st)
		}
		if stats := sl.inst.Stats(); stats.Received == 0 || len(stats.Dropped) != 0 {
			t.Errorf("stats %+v: want keepalived's adverts received and none dropped", stats)
		}
		if err := ka.Stop(5 * time.Second); err != nil {
			t.Errorf("stop keepalived: %v", err)
		}
		sl.wait(t, Master, 2*down)
		if !eventually(time.Second, func() bool { return onVMAC(t, nss[1], vip.Addr()) }) {
			t.Errorf("Sluice master without the VIP on vrrp.51")
		}
	})
	t.Run("sluice master", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		sl := start(t, nss[1], func() Config { cfg := goCfg(200); cfg.StartMaster = true; return cfg }())
		sl.wait(t, Master, time.Second)
		_, log := startKeepalived(t, env, nss[0], kaConf("BACKUP", 100))
		time.Sleep(down + time.Second)
		if onVMAC(t, nss[0], vip.Addr()) || strings.Contains(log.String(), "Entering MASTER STATE") {
			t.Fatalf("keepalived took over from a higher-priority Sluice master: it does not hear our VMAC adverts")
		}
		sl.stop(t)
		if !eventually(2*down, func() bool { return onVMAC(t, nss[0], vip.Addr()) }) {
			t.Errorf("keepalived did not take over after our release")
		}
	})
}
