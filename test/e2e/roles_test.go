package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// roleLab builds the usual lab and a keepalived.conf of its virtual server plus vrrp.
func roleLab(t *testing.T, vrrp string) (*lab.Lab, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	l, err := lab.Build(netns.ForTest(t), 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	return l, writeConf(t, l.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout)+vrrp)
}

// startRole starts `sluice run EXTRA...` on the lab; cleanup stops it and checks it left nothing.
func startRole(t *testing.T, l *lab.Lab, conf string, extra ...string) *daemon {
	t.Helper()
	log, stopLog := testLog(t)
	d := &daemon{lab: l, conf: conf, log: log}
	var err error
	if d.proc, err = l.StartSluice(sluiceBin, conf, log, extra...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopAndVerify(t)
		stopLog()
	})
	return d
}

// TestChecksOnly runs `sluice run -C` (keepalived --check): the virtual servers are checked and
// forwarded, and vrrp_instance blocks are ignored — here one on an interface the director does
// not have, which stops a daemon started without -C.
func TestChecksOnly(t *testing.T) {
	vrrp := fmt.Sprintf("vrrp_instance VI_1 {\n interface nosuch0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  %s\n }\n}\n", lab.VIP)
	l, conf := roleLab(t, vrrp)

	full := l.Director.Command(sluiceBin, "run", "-f", conf, "-n", "-l", "--socket", "/run/sluice/roles-full.sock")
	out, err := full.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nosuch0") {
		t.Fatalf("without -C, a vrrp_instance on a missing interface should stop the start; exit %v:\n%s", err, out)
	}

	d := startRole(t, l, conf, "-C")
	if err := l.WaitReady(context.Background(), 20*time.Second); err != nil {
		t.Fatalf("-C does not serve the VIP: %v", err)
	}
	if attached, desc, err := l.XDPState(); err != nil || !attached {
		t.Fatalf("-C: XDP attached %v (%s), err %v", attached, desc, err)
	}
	st := roleStatus(t, d)
	if len(st.VRRP) != 0 {
		t.Errorf("-C runs vrrp instances: %+v", st.VRRP)
	}
}

// TestVRRPOnly runs `sluice run -P` (keepalived --vrrp): the vrrp_instance takes its address,
// no data plane is loaded and no real server is checked (they are all stopped); SIGTERM
// releases the address.
func TestVRRPOnly(t *testing.T) {
	const vip = "10.111.0.200"
	vrrp := fmt.Sprintf("vrrp_instance VI_1 {\n interface %s\n version 3\n advert_int 0.1\n virtual_router_id 52\n priority 100\n virtual_ipaddress {\n  %s/32\n }\n}\n", lab.Iface, vip)
	l, conf := roleLab(t, vrrp)
	for _, rs := range l.RealServers {
		if err := rs.Stop(); err != nil { // a health check would now fail; -P must not run any
			t.Fatal(err)
		}
	}
	// Runs after startRole's cleanup has stopped the daemon.
	t.Cleanup(func() {
		if hasAddr(t, l, vip) {
			t.Errorf("-P: %s still on %s after SIGTERM", vip, lab.Iface)
		}
	})
	d := startRole(t, l, conf, "-P")

	deadline := time.Now().Add(10 * time.Second)
	for !hasAddr(t, l, vip) {
		if time.Now().After(deadline) {
			t.Fatalf("-P: %s not added to %s within 10s", vip, lab.Iface)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if attached, desc, _ := l.XDPState(); attached {
		t.Errorf("-P attached XDP: %s", desc)
	}
	st := roleStatus(t, d)
	if !strings.Contains(st.Dataplane, "none") || len(st.VRRP) != 1 || len(st.Services) != 0 {
		t.Errorf("-P status: dataplane %q, %d vrrp instances, %d services", st.Dataplane, len(st.VRRP), len(st.Services))
	}
	if log := strings.Join(d.log.Since(0), "\n"); strings.Contains(log, "health check") {
		t.Errorf("-P ran health checks:\n%s", log)
	}

}

func roleStatus(t *testing.T, d *daemon) control.Status {
	t.Helper()
	out, errOut, code := d.cli(t, "status", "--json")
	if code != 0 {
		t.Fatalf("sluice status: exit %d: %s", code, errOut)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("sluice status --json: %v\n%s", err, out)
	}
	return st
}

func hasAddr(t *testing.T, l *lab.Lab, addr string) bool {
	t.Helper()
	out, err := l.Director.Command("ip", "-o", "addr", "show", "dev", lab.Iface).Output()
	if err != nil {
		t.Fatalf("ip addr: %v", err)
	}
	return strings.Contains(string(out), " "+addr+"/")
}
