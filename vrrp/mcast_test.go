package vrrp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestMcastGroupConfig covers the multicast group and unicast_ttl settings New accepts.
func TestMcastGroupConfig(t *testing.T) {
	vip4 := []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")}
	vip6 := []netip.Prefix{netip.MustParsePrefix("fd00::100/128")}
	tests := []struct {
		name      string
		vips      []netip.Prefix
		group     string
		ttl       int
		wantGroup string
		wantErr   string
	}{
		{"IPv4 default", vip4, "", 0, "224.0.0.18", ""},
		{"IPv6 default", vip6, "", 0, "ff02::12", ""},
		{"IPv4 other group", vip4, "224.0.0.19", 0, "224.0.0.19", ""},
		{"IPv4 site group", vip4, "239.1.2.3", 0, "239.1.2.3", ""},
		{"IPv6 link-local group", vip6, "ff02::13", 0, "ff02::13", ""},
		{"IPv6 transient link-local group", vip6, "ff12::1:12", 0, "ff12::1:12", ""},
		{"unicast address as group", vip4, "10.0.0.1", 0, "", "not an IPv4 multicast address"},
		{"IPv6 group for IPv4 VIPs", vip4, "ff02::12", 0, "", "not an IPv4 multicast address"},
		{"IPv4 group for IPv6 VIPs", vip6, "224.0.0.18", 0, "", "not an IPv6 multicast address"},
		{"IPv6 site-local group", vip6, "ff05::12", 0, "", "must be link-local"},
		{"unicast_ttl 1", vip4, "", 1, "224.0.0.18", ""},
		{"unicast_ttl 256", vip4, "", 256, "", "unicast_ttl 256"},
		{"unicast_ttl -1", vip4, "", -1, "", "unicast_ttl -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Interface: "eth0", VRID: 1, Priority: 100, Version: 3, VIPs: tt.vips, UnicastTTL: tt.ttl}
			if tt.group != "" {
				c.McastGroup = netip.MustParseAddr(tt.group)
			}
			err := validate(&c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validate = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.McastGroup.String(); got != tt.wantGroup {
				t.Errorf("group %s, want %s", got, tt.wantGroup)
			}
		})
	}
}

// TestReceiveOtherGroup: an instance on a non-default group drops adverts sent to another
// group (another instance's, which its socket hears too) and accepts its own group's.
func TestReceiveOtherGroup(t *testing.T) {
	me, peer := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	vips := []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")}
	group := netip.MustParseAddr("224.0.0.19")
	cfg := Config{Interface: "eth0", VRID: 7, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond,
		VIPs: vips, UnicastSrc: me, McastGroup: group}
	p := Packet{Version: 3, VRID: 7, Priority: 150, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{vips[0].Addr()}}
	for _, tt := range []struct {
		dst  netip.Addr
		want Reason
	}{
		{group, ""},
		{GroupIPv4, ReasonGroup},
		{me, ""}, // unicast to us is not another group's
	} {
		t.Run(tt.dst.String(), func(t *testing.T) {
			in := checker(t, cfg)
			in.group = in.cfg.McastGroup
			b, err := p.Marshal(peer, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if _, reason := in.check(received{b: b, src: peer, dst: tt.dst, ttl: 255}); reason != tt.want {
				t.Errorf("reason %q, want %q", reason, tt.want)
			}
		})
	}
}

// TestConnGroupAndTTL sends through real sockets in two namespaces: a Conn on a non-default
// group receives adverts sent to it with TTL / hop limit 255, and unicast adverts carry
// unicast_ttl.
func TestConnGroupAndTTL(t *testing.T) {
	_, nss := lan(t, "a", "b")
	tests := []struct {
		name   string
		srcs   [2]string
		group  string
		ttl    int
		dst    string
		wantTT int
	}{
		{"IPv4 group 224.0.0.19", [2]string{"10.9.0.1", "10.9.0.2"}, "224.0.0.19", 0, "224.0.0.19", 255},
		{"IPv6 group ff02::13", [2]string{"fd09::1", "fd09::2"}, "ff02::13", 0, "ff02::13", 255},
		{"IPv4 multicast ignores unicast_ttl", [2]string{"10.9.0.1", "10.9.0.2"}, "224.0.0.19", 7, "224.0.0.19", 255},
		{"IPv4 unicast_ttl 7", [2]string{"10.9.0.1", "10.9.0.2"}, "", 7, "10.9.0.2", 7},
		{"IPv6 unicast_ttl 9", [2]string{"fd09::1", "fd09::2"}, "", 9, "fd09::2", 9},
		{"IPv4 unicast default 255", [2]string{"10.9.0.1", "10.9.0.2"}, "", 0, "10.9.0.2", 255},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts ListenOptions
			if tt.group != "" {
				opts.Group = netip.MustParseAddr(tt.group)
			}
			opts.UnicastTTL = tt.ttl
			conns := [2]*Conn{}
			for i, ns := range nss {
				err := ns.Do(func() (err error) {
					conns[i], err = ListenWith("eth0", netip.MustParseAddr(tt.srcs[i]), opts)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				defer conns[i].Close()
			}
			dst := netip.MustParseAddr(tt.dst)
			p := Packet{Version: 3, VRID: 9, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{dst}}
			b, err := p.Marshal(conns[0].Src(), dst)
			if err != nil {
				t.Fatal(err)
			}
			// The first sends may go before IPv6 neighbour discovery or the group join settle:
			// send a few, read until one arrives.
			got := make(chan string, 1)
			go func() {
				buf := make([]byte, 1500)
				conns[1].SetReadDeadline(time.Now().Add(3 * time.Second))
				for {
					n, src, rdst, ttl, err := conns[1].ReadFrom(buf)
					if err != nil {
						got <- err.Error()
						return
					}
					if src == conns[0].Src() {
						if _, err := Unmarshal(buf[:n], src, rdst); err != nil {
							got <- err.Error()
							return
						}
						got <- fmt.Sprintf("dst %s ttl %d", rdst, ttl)
						return
					}
				}
			}()
			want := fmt.Sprintf("dst %s ttl %d", dst, tt.wantTT)
			for i := 0; i < 10; i++ {
				if err := conns[0].WriteTo(b, dst); err != nil {
					t.Fatal(err)
				}
				select {
				case g := <-got:
					if g != want {
						t.Fatalf("received %s, want %s", g, want)
					}
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
			if g := <-got; g != want {
				t.Fatalf("received %s, want %s", g, want)
			}
		})
	}
}

// TestKeepalivedMcastGroup runs Sluice and keepalived on vrrp_mcast_group4 224.0.0.19: each
// hears the other's adverts there, so the lower priority stays BACKUP under the other as
// master, each way round.
func TestKeepalivedMcastGroup(t *testing.T) {
	group := netip.MustParseAddr("224.0.0.19")
	vip := netip.MustParsePrefix("10.9.0.100/32")
	kaAddr, goAddr := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	c := kaCase{"v3 group", 3, 200 * time.Millisecond, "", false, vip}
	kaConf := func(state string, prio int) string {
		conf := keepalivedConf(c, state, prio, kaAddr, goAddr, vip)
		return strings.Replace(conf, "global_defs {\n", "global_defs {\n  vrrp_mcast_group4 224.0.0.19\n", 1)
	}
	goCfg := func(prio uint8) Config {
		return Config{Name: "VI_1", VRID: 51, Priority: prio, Version: 3, AdvertInterval: c.interval,
			VIPs: []netip.Prefix{vip}, McastGroup: group}
	}
	down := MasterDownInterval(3, 100, c.interval)

	t.Run("sluice master", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		sl := start(t, nss[1], func() Config { cfg := goCfg(200); cfg.StartMaster = true; return cfg }())
		sl.wait(t, Master, time.Second)
		_, log := startKeepalived(t, env, nss[0], kaConf("BACKUP", 100))
		time.Sleep(down + time.Second)
		if hasAddr(t, nss[0], "eth0", vip.Addr()) || strings.Contains(log.String(), "Entering MASTER STATE") {
			t.Fatalf("keepalived on %s did not hear Sluice's adverts there: it became master", group)
		}
		if !strings.Contains(log.String(), "Entering BACKUP STATE") {
			t.Errorf("keepalived never reported BACKUP")
		}
	})
	t.Run("keepalived master", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		startKeepalived(t, env, nss[0], kaConf("MASTER", 200))
		if !eventually(5*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Fatalf("keepalived did not become master")
		}
		sl := start(t, nss[1], goCfg(100))
		sl.wait(t, Backup, time.Second)
		time.Sleep(down + time.Second)
		if st := sl.inst.State(); st != Backup {
			t.Fatalf("Sluice is %v under a keepalived master on %s", st, group)
		}
		if stats := sl.inst.Stats(); stats.Received == 0 || len(stats.Dropped) != 0 {
			t.Errorf("stats %+v: want keepalived's adverts on %s received and none dropped", stats, group)
		}
	})
}
