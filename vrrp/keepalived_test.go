package vrrp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type kaCase struct {
	name     string
	version  int
	interval time.Duration
	auth     string
	unicast  bool
	vip      netip.Prefix
}

// keepalivedConf is a vrrp_instance as an operator would write it for the node at src.
func keepalivedConf(c kaCase, state string, prio int, src, peer netip.Addr, vip netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  vrrp_version %d\n}\n", c.version)
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n  state %s\n  interface eth0\n  virtual_router_id 51\n  priority %d\n", state, prio)
	fmt.Fprintf(&b, "  advert_int %g\n", c.interval.Seconds())
	if c.auth != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", c.auth)
	}
	if c.unicast {
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", src, peer)
	}
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s\n  }\n}\n", vip)
	return b.String()
}

// startKeepalived runs keepalived's VRRP process in ns with conf; its log is returned.
func startKeepalived(t *testing.T, env *netns.Env, ns *netns.NS, conf string) (*netns.Proc, *syncBuffer) {
	t.Helper()
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		netns.SkipPrivileged(t, "keepalived is not installed (apt-get install keepalived)")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := ns.Command(bin, "-n", "-l", "-D", "-P", "-f", f,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	p, err := env.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() || os.Getenv("DEBUGKA") != "" {
			t.Logf("keepalived log:\n%s", log)
		}
	})
	return p, log
}

// TestKeepalivedInterop runs a Sluice instance and keepalived 2.x on one link, each way round:
// they must elect the same master, hold the VIP on the master only, never drop each other's
// adverts, and take over quickly when the master stops and sends priority 0.
func TestKeepalivedInterop(t *testing.T) {
	vip4 := netip.MustParsePrefix("10.9.0.100/32")
	cases := []kaCase{
		{"v2 PASS multicast", 2, time.Second, "secret123", false, vip4},
		{"v3 multicast", 3, 200 * time.Millisecond, "", false, vip4},
		{"v3 unicast", 3, 200 * time.Millisecond, "", true, vip4},
		{"v3 IPv6 multicast", 3, 200 * time.Millisecond, "", false, netip.MustParsePrefix("fd09::100/128")},
	}
	vip := vip4
	kaAddr, goAddr := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	for _, c := range cases {
		vip := c.vip
		goCfg := func(prio uint8) Config {
			cfg := Config{Name: "VI_1", VRID: 51, Priority: prio, Version: c.version, AdvertInterval: c.interval,
				AuthPass: c.auth, VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second}
			if c.unicast {
				cfg.UnicastSrc, cfg.UnicastPeers = goAddr, []netip.Addr{kaAddr}
			}
			return cfg
		}
		down := MasterDownInterval(c.version, 100, c.interval)

		t.Run(c.name+"/sluice master", func(t *testing.T) {
			env, nss := lan(t, "ka", "go")
			sl := start(t, nss[1], func() Config { cfg := goCfg(200); cfg.StartMaster = true; return cfg }())
			sl.wait(t, Master, time.Second)
			_, log := startKeepalived(t, env, nss[0], keepalivedConf(c, "BACKUP", 100, kaAddr, goAddr, vip))
			// keepalived must accept our adverts for longer than its Master_Down_Interval.
			time.Sleep(down + time.Second)
			if hasAddr(t, nss[0], "eth0", vip.Addr()) || strings.Contains(log.String(), "Entering MASTER STATE") {
				t.Fatalf("keepalived took over from a higher-priority Sluice master")
			}
			if !strings.Contains(log.String(), "Entering BACKUP STATE") {
				t.Errorf("keepalived never reported BACKUP")
			}
			expectHolder(t, nil, vip.Addr(), sl, sl)
			// Our priority 0 makes keepalived take over after its Skew_Time.
			stopped := time.Now()
			sl.stop(t)
			if !eventually(2*down, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
				t.Fatalf("keepalived did not take over after our release")
			}
			if took := time.Since(stopped); took > down {
				t.Errorf("keepalived took over %v after our priority 0, want well under Master_Down_Interval %v", took, down)
			}
			if hasAddr(t, nss[1], "eth0", vip.Addr()) {
				t.Errorf("Sluice kept the VIP after stopping")
			}
			if !strings.Contains(log.String(), "received priority 0") {
				t.Errorf("keepalived did not log our priority 0 advert")
			}
		})

		t.Run(c.name+"/keepalived master", func(t *testing.T) {
			env, nss := lan(t, "ka", "go")
			ka, _ := startKeepalived(t, env, nss[0], keepalivedConf(c, "MASTER", 200, kaAddr, goAddr, vip))
			if !eventually(5*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
				t.Fatalf("keepalived did not become master")
			}
			sl := start(t, nss[1], goCfg(100))
			sl.wait(t, Backup, time.Second)
			time.Sleep(down + time.Second)
			if st := sl.inst.State(); st != Backup {
				t.Fatalf("Sluice is %v under a higher-priority keepalived master", st)
			}
			stats := sl.inst.Stats()
			if stats.Received == 0 || len(stats.Dropped) != 0 {
				t.Errorf("stats %+v: want keepalived's adverts received and none dropped", stats)
			}
			// keepalived stops with priority 0: Sluice takes over after Skew_Time.
			stopped := time.Now()
			if err := ka.Stop(5 * time.Second); err != nil {
				t.Errorf("stop keepalived: %v", err)
			}
			ev := sl.wait(t, Master, 2*down)
			if took := ev.At.Sub(stopped); took > down {
				t.Errorf("takeover %v after keepalived stopped, want well under Master_Down_Interval %v", took, down)
			}
			expectHolder(t, nil, vip.Addr(), sl, sl)
			if hasAddr(t, nss[0], "eth0", vip.Addr()) {
				t.Errorf("keepalived kept the VIP after stopping")
			}
		})
	}

	t.Run("v2 wrong auth_pass is dropped", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		c := cases[0]
		c.auth = "otherpass"
		startKeepalived(t, env, nss[0], keepalivedConf(c, "MASTER", 200, kaAddr, goAddr, vip))
		if !eventually(5*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Fatalf("keepalived did not become master")
		}
		sl := start(t, nss[1], Config{Name: "VI_1", VRID: 51, Priority: 100, Version: 2, AdvertInterval: time.Second,
			AuthType: "PASS", AuthPass: "secret123", VIPs: []netip.Prefix{vip}})
		// It cannot hear keepalived, so it becomes master too (split brain by misconfiguration).
		sl.wait(t, Master, MasterDownInterval(2, 100, time.Second)+time.Second)
		if got := sl.inst.Stats().Dropped[ReasonAuth]; got == 0 {
			t.Errorf("no adverts dropped for a wrong password: stats %+v", sl.inst.Stats())
		}
	})
}
