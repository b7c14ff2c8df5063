package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// trackStatus returns `sluice status --json` of the director, or ok false while it cannot answer.
func (d *vrrpDirector) trackStatus(t *testing.T) (control.Status, bool) {
	t.Helper()
	out, err := d.ns.Command(sluiceBin, "status", "--json").Output()
	if err != nil {
		return control.Status{}, false
	}
	var st control.Status
	return st, json.Unmarshal(out, &st) == nil
}

// trackInstance returns the status of one vrrp_instance, or ok false.
func (d *vrrpDirector) trackInstance(t *testing.T, name string) (control.VRRPInstance, bool) {
	t.Helper()
	st, ok := d.trackStatus(t)
	if !ok {
		return control.VRRPInstance{}, false
	}
	for _, v := range st.VRRP {
		if v.Name == name {
			return v, true
		}
	}
	return control.VRRPInstance{}, false
}

// waitTrackInstance polls the director's status until cond holds for the instance.
func (d *vrrpDirector) waitTrackInstance(t *testing.T, name, what string, timeout time.Duration, cond func(control.VRRPInstance) bool) control.VRRPInstance {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := d.trackInstance(t, name)
		if ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: vrrp_instance %s is %+v (found %v) after %v", what, name, v, ok, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeTrackScript makes the script at path exit with code, atomically.
func writeTrackScript(t *testing.T, path string, code int) {
	t.Helper()
	if err := writeAtomic(path, fmt.Appendf(nil, "#!/bin/sh\nexit %d\n", code)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
}

// TestVRRPTrackScriptAndReload runs two real directors. The MASTER tracks a vrrp_script
// (weight -100, run as script_user root); when the script fails its effective priority, shown
// by `sluice status`, drops below the BACKUP's, which takes the VIP over; when it passes again
// the MASTER preempts back. Then a reload adds a vrrp_instance and leaves VI_1 untouched (no
// transition, same state since), and a second reload removes the new one again.
func TestVRRPTrackScriptAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	l, err := lab.BuildVRRP(env, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "check")
	writeTrackScript(t, script, 0)
	track := fmt.Sprintf("global_defs {\n    script_user root\n}\n\nvrrp_script chk {\n    script %q\n"+
		"    interval 0.2\n    timeout 2\n    weight -100\n}\n\n", script)
	confA := track + strings.Replace(l.KeepalivedConfVRRP(150), "    priority 150\n",
		"    priority 150\n    track_script {\n        chk\n    }\n", 1)
	ds := startDirectors(t, env, l, dir, [2]string{confA, l.KeepalivedConfVRRP(100)})
	ctx := context.Background()
	serve := func(step string) {
		t.Helper()
		if err := l.WaitReady(ctx, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if tally := l.Run(ctx, 30); len(tally.Failed) > 0 {
			t.Errorf("%s: %d of 30 connections failed", step, len(tally.Failed))
		}
	}

	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("election: %v", err)
	}
	ds[0].waitTrackInstance(t, "VI_1", "script passing", 5*time.Second, func(v control.VRRPInstance) bool {
		return v.State == "MASTER" && v.Priority == 150 && v.EffectivePriority == 150
	})
	serve("director 0 MASTER")

	// The script fails: 150 - 100 = 50 < 100, so director 1 preempts.
	writeTrackScript(t, script, 1)
	ds[0].waitTrackInstance(t, "VI_1", "script failing", 5*time.Second, func(v control.VRRPInstance) bool {
		return v.EffectivePriority == 50
	})
	if err := l.WaitHolder(1, 5*time.Second); err != nil {
		t.Fatalf("takeover after the script failed: %v", err)
	}
	ds[0].waitTrackInstance(t, "VI_1", "lowered master yields", 5*time.Second, func(v control.VRRPInstance) bool {
		return v.State == "BACKUP"
	})
	serve("director 1 MASTER")

	// The script passes again: director 0 preempts back.
	writeTrackScript(t, script, 0)
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("preemption after the script recovered: %v", err)
	}
	serve("director 0 MASTER again")

	// Reload director 0 with a second instance: VI_1 keeps running, untouched.
	before := ds[0].waitTrackInstance(t, "VI_1", "before reload", 5*time.Second, func(v control.VRRPInstance) bool {
		return v.State == "MASTER" && v.EffectivePriority == 150
	})
	vi2 := fmt.Sprintf("vrrp_instance VI_2 {\n    interface %s\n    virtual_router_id 52\n    version 3\n"+
		"    priority 100\n    advert_int 0.2\n    virtual_ipaddress {\n        10.111.0.222/32\n    }\n}\n", lab.Iface)
	reloadOn := func(d *vrrpDirector, conf string) {
		t.Helper()
		if err := writeAtomic(d.conf, []byte(conf)); err != nil {
			t.Fatal(err)
		}
		if err := d.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reload := func(conf string) { t.Helper(); reloadOn(ds[0], conf) }
	reload(confA + vi2)
	ds[0].waitTrackInstance(t, "VI_2", "added by reload", 5*time.Second, func(v control.VRRPInstance) bool {
		return v.State == "MASTER" // alone on VRID 52
	})
	if v, _ := ds[0].trackInstance(t, "VI_1"); v.State != "MASTER" || !v.Since.Equal(before.Since) {
		t.Errorf("VI_1 after a reload that did not change it: %+v, want MASTER since %v", v, before.Since)
	}
	if err := l.WaitHolder(0, time.Second); err != nil {
		t.Errorf("VIP after the reload: %v", err)
	}
	serve("after adding VI_2")

	// Removing VI_2 stops it: its address is released.
	reload(confA)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && holdsTrackAddr(t, ds[0].ns, "10.111.0.222") {
		time.Sleep(50 * time.Millisecond)
	}
	if holdsTrackAddr(t, ds[0].ns, "10.111.0.222") {
		t.Error("VI_2's address still held after the reload removed VI_2")
	}
	if v, _ := ds[0].trackInstance(t, "VI_1"); v.State != "MASTER" || !v.Since.Equal(before.Since) {
		t.Errorf("VI_1 after removing VI_2: %+v, want MASTER since %v", v, before.Since)
	}
	serve("after removing VI_2")

	// Both directors reload with a second address in VI_1: it changes in place, as with
	// keepalived (no transition, no handover), and the MASTER adds it.
	const extra = "10.111.0.223"
	withExtra := func(conf string) string {
		line := fmt.Sprintf("        %s/32\n", lab.VIP)
		return strings.Replace(conf, line, line+"        "+extra+"/32\n", 1)
	}
	reload(withExtra(confA))
	reloadOn(ds[1], withExtra(l.KeepalivedConfVRRP(100)))
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !holdsTrackAddr(t, ds[0].ns, extra) {
		time.Sleep(50 * time.Millisecond)
	}
	if !holdsTrackAddr(t, ds[0].ns, extra) {
		t.Fatalf("the MASTER does not hold %s after the reload that added it to VI_1", extra)
	}
	time.Sleep(time.Second) // a restart would show as a transition within the master down interval
	for i, d := range ds {
		v, _ := d.trackInstance(t, "VI_1")
		if want := []string{"MASTER", "BACKUP"}[i]; v.State != want || (i == 0 && !v.Since.Equal(before.Since)) {
			t.Errorf("director %d's VI_1 after the address reload: %+v, want %s (director 0: since %v)", i, v, want, before.Since)
		}
	}
	if holdsTrackAddr(t, ds[1].ns, extra) {
		t.Errorf("the BACKUP holds %s", extra)
	}
	serve("after adding an address to VI_1")
}

// holdsTrackAddr reports whether addr is on the director's lab interface.
func holdsTrackAddr(t *testing.T, ns *netns.NS, addr string) bool {
	t.Helper()
	out, err := ns.Command("ip", "-o", "addr", "show", "dev", lab.Iface).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(out), " "+addr+"/")
}
