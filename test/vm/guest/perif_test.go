package guest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestSluiceAutoPerInterface runs `sluice run` with the default --dataplane auto on a director
// whose VIP interface already carries another XDP program in native mode (an operator's own XDP
// firewall, here an XDP_PASS program). The XDP program loads but the kernel refuses to attach it
// there in both native mode (a program is attached) and generic mode (native and generic XDP
// cannot both be active), so sluice must say so in one line, serve that interface's services
// with kernel IPVS, leave the foreign program alone, show the choice per interface in sluice
// status, and report IPVS's own ActiveConn for a connection held open in sluice list.
func TestSluiceAutoPerInterface(t *testing.T) {
	env := netns.ForTest(t)
	l, err := lab.Build(env, 2)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	if err := l.Director.AttachXDPPass(lab.Iface); err != nil {
		t.Fatalf("attach the foreign XDP program: %v", err)
	}
	foreign, err := l.Director.XDP(lab.Iface)
	if err != nil || foreign == nil {
		t.Fatalf("foreign XDP program: %v (err %v)", foreign, err)
	}
	rs1, rs2 := l.RealServers[0], l.RealServers[1]
	vs := fmt.Sprintf("TCP %s:80", lab.VIP)
	conf := keepalivedConf(lab.VIP, "rr", "DR", server{rs1.Addr, 1}, server{rs2.Addr, 1})

	d := startSluiceWith(t, env, l.Director, conf, nil)
	d.waitTable(t, 20*time.Second, vs+" rr", vs+" -> "+rs1.Addr.String()+":80 DR w=1", vs+" -> "+rs2.Addr.String()+":80 DR w=1")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	checkTally(t, l.Run(ctx, 20), lab.ClientIP, map[string]int{"rs1": 10, "rs2": 10})

	if !d.log.Contains(0, "XDP cannot attach to interface, serving its services with kernel IPVS", lab.Iface) {
		t.Errorf("sluice did not log the per-interface fallback")
	}
	if got, err := l.Director.XDP(lab.Iface); err != nil || got == nil || got.ProgId != foreign.ProgId {
		t.Errorf("%s carries %+v (err %v), want the foreign program %+v untouched", lab.Iface, got, err, foreign)
	}
	st := sluiceStatus(t, d)
	t.Logf("sluice status:\n%s", st)
	for _, want := range []string{"data plane xdp,", "interface " + lab.Iface + ": ipvs (auto: XDP cannot attach:", "native", "generic"} {
		if !strings.Contains(st, want) {
			t.Errorf("sluice status does not say %q", want)
		}
	}

	// A connection held open is one ActiveConn in IPVS, which sluice list shows.
	c, err := l.Client.Dial("tcp", fmt.Sprintf("%s:80", lab.VIP), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the VIP: %v", err)
	}
	defer c.Close()
	var total int
	var out string
	for i := 0; i < 50; i++ { // up to 10 s
		out = sluiceList(t, d)
		if total = activeConns(out); total == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if total != 1 {
		t.Errorf("sluice list shows %d ActiveConn over the real servers with one connection open, want 1:\n%s", total, out)
	}
}

// sluiceList runs `sluice list` against d's control socket.
func sluiceList(t *testing.T, d *daemon) string {
	t.Helper()
	out, err := exec.Command(sluiceBin(), "list", "--socket", d.socket).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice list: %v\n%s", err, out)
	}
	return string(out)
}

// activeConns sums the ActiveConn column of the real-server lines of sluice list's output
// ("  -> ADDR:PORT  Route  W  ACTIVE  INACTIVE").
func activeConns(out string) int {
	total := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "->" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(f[4], &n); err == nil {
			total += n
		}
	}
	return total
}
