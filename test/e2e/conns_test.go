package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// TestLeastConnection runs `lb_algo lc` with real connections: 12 long-lived ones held on rs1
// (made while rs2 and rs3 are drained at weight 0), then all three at weight 1. New connections,
// each closed after its request, must avoid rs1, which holds 12 established connections, and
// `sluice list` must show them as rs1's ActiveConn.
func TestLeastConnection(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()
	base, err := os.ReadFile(d.conf)
	if err != nil {
		t.Fatal(err)
	}
	lc := strings.Replace(string(base), "lb_algo rr", "lb_algo lc", 1)
	// Drain every real server but the first: weight 0 on the second and third.
	first := strings.Index(lc, "weight 1") + len("weight 1")
	drained := lc[:first] + strings.ReplaceAll(lc[first:], "weight 1", "weight 0")
	if lc == string(base) || drained == lc {
		t.Fatal("could not derive the lc configurations")
	}
	rs := d.lab.RealServers

	// reload applies conf and waits until `sluice list` shows the weights.
	reload := func(conf string, weights ...int) {
		t.Helper()
		if err := writeAtomic(d.conf, []byte(conf)); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := d.cli(t, "reload"); code != 0 {
			t.Fatalf("reload: %s", errOut)
		}
		var want []string
		for i, w := range weights {
			want = append(want, fmt.Sprintf("%s:%d Route %d", rs[i].Addr, lab.Port, w))
		}
		deadline := time.Now().Add(lab.ApplyMargin + 5*time.Second)
		for {
			out, _, _ := d.cli(t, "list", "-n")
			var got []string
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) == 6 && f[0] == "->" && f[1] != "RemoteAddress:Port" {
					got = append(got, strings.Join(f[1:4], " "))
				}
			}
			if strings.Contains(out, " lc\n") && strings.Join(got, ",") == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after reload, sluice list -n:\n%s\nwant real servers %v", out, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	reload(drained, 1, 0, 0)
	const kept = 12
	for i := range kept {
		c, err := d.lab.Client.Dial("tcp4", fmt.Sprintf("%s:%d", lab.VIP, lab.Port), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		k := &keptConn{c: c, br: bufio.NewReader(c)}
		if server, err := k.get(); err != nil || server != rs[0].Name {
			t.Fatalf("long-lived connection %d: served by %q (%v), want %s", i, server, err, rs[0].Name)
		}
	}

	reload(lc, 1, 1, 1)
	out, _, _ := d.cli(t, "list", "-n")
	active, _ := connColumns(t, out)
	if !strings.Contains(out, fmt.Sprintf("%s:%d", rs[0].Addr, lab.Port)) || active != kept {
		t.Errorf("with %d connections held, ActiveConn sums to %d:\n%s", kept, active, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[1] == fmt.Sprintf("%s:%d", rs[0].Addr, lab.Port) && f[4] != fmt.Sprint(kept) {
			t.Errorf("rs1's ActiveConn is %s, want %d:\n%s", f[4], kept, out)
		}
	}

	const n = 30
	tally := d.lab.Run(ctx, n)
	t.Logf("%d new connections: %v", n, tally.ByServer)
	if len(tally.Failed) > 0 {
		t.Fatalf("%d of %d connections failed", len(tally.Failed), n)
	}
	// Under rr rs1 would get a third. lc sends new connections to the least loaded until
	// they hold as many established connections as rs1, which short ones never do.
	if got := tally.ByServer[rs[0].Name]; got > 0 {
		t.Errorf("rs1, holding %d connections, got %d of %d new ones: %v", kept, got, n, tally.ByServer)
	}
	for _, r := range rs[1:] {
		if tally.ByServer[r.Name] < n/4 {
			t.Errorf("%s got %d of %d new connections, want about half: %v", r.Name, tally.ByServer[r.Name], n, tally.ByServer)
		}
	}
}
