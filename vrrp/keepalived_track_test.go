package vrrp

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeepalivedTrackScriptInterop runs a vrrp_script with weight -100 on the master of a
// Sluice / keepalived pair, each way round: when the master's script fails its adverts carry
// priority 50 and the other (100) takes over; when it passes again the master preempts back.
// Both sides apply the same keepalived.conf rules to the same script.
func TestKeepalivedTrackScriptInterop(t *testing.T) {
	c := kaCase{"v3 multicast", 3, 200 * time.Millisecond, "", false, netip.MustParsePrefix("10.9.0.100/32")}
	vip := c.vip
	kaAddr, goAddr := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	takeover := 3 * MasterDownInterval(3, 100, c.interval)

	t.Run("sluice master tracks", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		script := filepath.Join(t.TempDir(), "check")
		setExit(t, script, 0)
		sl := start(t, nss[1], Config{Name: "VI_1", VRID: 51, Priority: 150, Version: 3, AdvertInterval: c.interval,
			VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second,
			TrackScripts: []TrackScript{{Name: "chk", Path: []string{script}, Interval: 100 * time.Millisecond,
				Timeout: 2 * time.Second, Weight: -100, User: "root"}}})
		sl.wait(t, Master, 3*time.Second)
		_, log := startKeepalived(t, env, nss[0], keepalivedConf(c, "BACKUP", 100, kaAddr, goAddr, vip))
		if !eventually(5*time.Second, func() bool { return strings.Contains(log.String(), "Entering BACKUP STATE") }) {
			t.Fatal("keepalived never reported BACKUP")
		}

		setExit(t, script, 1)
		sl.waitPriority(t, 50, 3*time.Second)
		if !eventually(takeover, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Fatal("keepalived (100) did not take over from Sluice at effective priority 50")
		}
		sl.wait(t, Backup, time.Second)
		expectHolder(t, nil, vip.Addr(), nil, sl)

		setExit(t, script, 0)
		sl.waitPriority(t, 150, 3*time.Second)
		sl.wait(t, Master, takeover)
		if !eventually(2*time.Second, func() bool { return !hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Error("keepalived kept the VIP after Sluice preempted it")
		}
	})

	t.Run("keepalived master tracks", func(t *testing.T) {
		env, nss := lan(t, "ka", "go")
		script := filepath.Join(t.TempDir(), "check")
		setExit(t, script, 0)
		conf := "global_defs {\n  script_user root\n}\nvrrp_script chk {\n  script \"" + script + "\"\n  interval 1\n  weight -100\n}\n" +
			strings.Replace(keepalivedConf(c, "MASTER", 150, kaAddr, goAddr, vip), "  priority 150\n", "  priority 150\n  track_script {\n    chk\n  }\n", 1)
		startKeepalived(t, env, nss[0], conf)
		if !eventually(5*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Fatal("keepalived did not become master")
		}
		sl := start(t, nss[1], Config{Name: "VI_1", VRID: 51, Priority: 100, Version: 3, AdvertInterval: c.interval,
			VIPs: []netip.Prefix{vip}, GARPMasterDelay: time.Second})
		sl.wait(t, Backup, time.Second)

		setExit(t, script, 1)
		sl.wait(t, Master, 3*time.Second+takeover) // keepalived runs it every second
		expectHolder(t, nil, vip.Addr(), sl, sl)

		setExit(t, script, 0)
		sl.wait(t, Backup, 3*time.Second+takeover)
		if !eventually(2*time.Second, func() bool { return hasAddr(t, nss[0], "eth0", vip.Addr()) }) {
			t.Error("keepalived did not take the VIP back at priority 150")
		}
	})
}
