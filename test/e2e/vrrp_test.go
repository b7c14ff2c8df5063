package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
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

// vrrpDirector is one `sluice run` of a VRRP pair.
type vrrpDirector struct {
	ns   *netns.NS
	conf string
	proc *netns.Proc
	log  *lab.LogTail
}

func (d *vrrpDirector) start(t *testing.T, env *netns.Env) {
	t.Helper()
	d.log = &lab.LogTail{}
	cmd := d.ns.Command(sluiceBin, "run", "-f", d.conf, "-n", "-l")
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.WaitDelay = 5 * time.Second
	var err error
	if d.proc, err = env.Start(cmd); err != nil {
		t.Fatal(err)
	}
}

// startDirectors writes confs[i] for director i of l into dir and starts `sluice run` on it; the
// directors' logs are printed if the test fails.
func startDirectors(t *testing.T, env *netns.Env, l *lab.VRRPLab, dir string, confs [2]string) [2]*vrrpDirector {
	t.Helper()
	ds := [2]*vrrpDirector{}
	for i, conf := range confs {
		ds[i] = &vrrpDirector{ns: l.Directors[i], conf: filepath.Join(dir, []string{"a.conf", "b.conf"}[i])}
		if err := os.WriteFile(ds[i].conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ds[i].start(t, env)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, d := range ds {
				for _, line := range d.log.Since(0) {
					t.Logf("director %d: %s", i, line)
				}
			}
		}
	})
	return ds
}

func (d *vrrpDirector) vrrpState(t *testing.T) string {
	t.Helper()
	st, _ := d.vrrpStatus(t)
	return st
}

// vrrpStatus returns the state of the director's one vrrp_instance and the master it knows.
func (d *vrrpDirector) vrrpStatus(t *testing.T) (state string, master netip.Addr) {
	t.Helper()
	out, err := d.ns.Command(sluiceBin, "status", "--json").Output()
	if err != nil {
		return "", netip.Addr{}
	}
	var st control.Status
	if json.Unmarshal(out, &st) != nil || len(st.VRRP) != 1 {
		return "", netip.Addr{}
	}
	return st.VRRP[0].State, st.VRRP[0].Master
}

// TestVRRPFailover runs two real directors sharing the VIP through VRRPv3: the higher priority
// becomes MASTER and serves; stopped, it releases (priority 0) and the other takes over, with
// the client's ARP entry following; restarted, it preempts back. Every step is checked with
// real connections through the VIP.
func TestVRRPFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	l, err := lab.BuildVRRP(env, 3)
	if err != nil {
		t.Fatal(err)
	}
	ds := startDirectors(t, env, l, t.TempDir(), [2]string{l.KeepalivedConfVRRP(150), l.KeepalivedConfVRRP(100)})
	ctx := context.Background()
	serve := func(step string) {
		t.Helper()
		if err := l.WaitReady(ctx, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if tally := l.Run(ctx, 60); len(tally.Failed) > 0 {
			t.Errorf("%s: %d of 60 connections failed", step, len(tally.Failed))
		}
	}

	// 1. Priority 150 wins the election; VRRPv3 at 200 ms: master down is about 0.8 s.
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("election: %v", err)
	}
	serve("director 0 MASTER")
	if a, b := ds[0].vrrpState(t), ds[1].vrrpState(t); a != "MASTER" || b != "BACKUP" {
		t.Errorf("sluice status: director 0 %q, director 1 %q; want MASTER and BACKUP", a, b)
	}
	// Both name director 0 as the master: itself, and the source of the adverts it hears.
	for i, d := range ds {
		if _, m := d.vrrpStatus(t); m != lab.DirectorIP {
			t.Errorf("sluice status of director %d: master %v, want %v", i, m, lab.DirectorIP)
		}
	}

	// 2. SIGTERM: director 0 sends priority 0 and removes the VIP; director 1 takes over at
	// once (skew time), and its gratuitous ARP moves the client.
	if err := ds[0].proc.Stop(10 * time.Second); err != nil {
		t.Errorf("director 0 did not stop cleanly: %v", err)
	}
	if err := l.WaitHolder(1, 2*time.Second); err != nil {
		t.Fatalf("takeover after release: %v", err)
	}
	serve("director 1 MASTER")

	// 3. Restarted with the higher priority, director 0 preempts.
	ds[0].start(t, env)
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("preemption: %v", err)
	}
	serve("director 0 MASTER again")
	if b := ds[1].vrrpState(t); b != "BACKUP" {
		t.Errorf("director 1 is %q after director 0 preempted, want BACKUP", b)
	}

	// 4. SIGKILL gives no release: director 1 waits out master down (about 0.8 s) and takes
	// over; the dead director's VIP stays on its interface, as with keepalived, but the
	// client follows the new master's gratuitous ARP.
	ds[0].proc.Cmd.Process.Signal(syscall.SIGKILL)
	<-ds[0].proc.Done()
	// A killed daemon cannot remove its control socket (the next one to start replaces it).
	t.Cleanup(func() { os.Remove(filepath.Join(control.DefaultDir, l.Directors[0].Name+".sock")) })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ds[1].vrrpState(t) != "MASTER" {
		time.Sleep(50 * time.Millisecond)
	}
	if st := ds[1].vrrpState(t); st != "MASTER" {
		t.Fatalf("director 1 is %q after director 0 was killed, want MASTER", st)
	}
	mac1, _ := l.Directors[1].HardwareAddr(lab.Iface)
	for time.Now().Before(deadline) {
		if mac, _ := l.ClientVIPMAC(); mac == mac1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mac, _ := l.ClientVIPMAC(); mac != mac1 {
		t.Errorf("client's ARP entry for the VIP is %q after the kill, want director 1's %s", mac, mac1)
	}
	serve("director 1 MASTER after kill")
	if !strings.Contains(strings.Join(ds[1].log.Since(0), "\n"), "MASTER") {
		t.Error("director 1 never logged becoming MASTER")
	}
}
