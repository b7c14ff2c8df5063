package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// explainJSON runs `sluice explain --json ARGS...` on the director and decodes its answer.
func (d *daemon) explainJSON(t *testing.T, args ...string) control.Explanation {
	t.Helper()
	out, errOut, code := d.cli(t, append([]string{"explain", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("sluice explain %v: exit %d: %s", args, code, errOut)
	}
	var ex control.Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("sluice explain --json: %v\n%s", err, out)
	}
	return ex
}

// TestExplain asks the running daemon about real flows of the lab: an established connection
// is a flow-table hit pinned to the real server that answers on it; a new flow is a miss whose
// round-robin table lists every real server, and after a reload to mh, a miss names the real
// server that then answers the client's new connections; a packet to no VIP goes to the stack.
func TestExplain(t *testing.T) {
	d := startSluice(t)
	vip := fmt.Sprintf("%s:%d", lab.VIP, lab.Port)
	addrOf := map[string]netip.AddrPort{}
	var all []netip.AddrPort
	for _, rs := range d.lab.RealServers {
		addrOf[rs.Name] = netip.AddrPortFrom(rs.Addr, lab.Port)
		all = append(all, addrOf[rs.Name])
	}

	t.Run("established connection is a hit", func(t *testing.T) {
		c, err := d.lab.Client.Dial("tcp4", vip, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		k := &keptConn{c: c, br: bufio.NewReader(c)}
		server, err := k.get()
		if err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().String()
		ex := d.explainJSON(t, "tcp", local, vip)
		want := addrOf[server]
		if ex.Flow != director.FlowConfirmed || ex.Pinned == nil || *ex.Pinned != want || ex.RealServer == nil ||
			*ex.RealServer != want || ex.Verdict != "forward" || ex.Method != "DR" {
			t.Errorf("explain of the connection %s served by %s (%s):\n%+v", local, server, want, ex)
		}
		if len(ex.RealServers) != 1 || !ex.RealServers[0].Healthy || ex.RealServers[0].Weight != 1 {
			t.Errorf("real server health in the explanation: %+v", ex.RealServers)
		}
		// The same connection keeps going to the server explain named.
		if again, err := k.get(); err != nil || again != server {
			t.Errorf("next request on the connection: %q, %v; want %s", again, err, server)
		}
		out, _, code := d.cli(t, "explain", "tcp", local, vip)
		t.Logf("sluice explain tcp %s %s:\n%s", local, vip, out)
		for _, line := range []string{
			fmt.Sprintf("service:     TCP %s (lb_algo rr)\n", vip),
			fmt.Sprintf("flow:        hit, confirmed, pinned to %s", want),
			fmt.Sprintf("verdict:     forward to %s by DR\n", want),
		} {
			if code != 0 || !strings.Contains(out, line) {
				t.Errorf("sluice explain (exit %d) lacks %q:\n%s", code, line, out)
			}
		}
	})

	t.Run("new flow is a miss with the round-robin table", func(t *testing.T) {
		ex := d.explainJSON(t, "tcp", netip.AddrPortFrom(lab.ClientIP, 1).String(), vip)
		if ex.Flow != director.FlowNone || ex.Selection == nil || ex.Selection.Method != director.SelectRoundRobin || ex.RealServer != nil {
			t.Fatalf("explain of a new flow: %+v", ex)
		}
		got := slices.Clone(ex.Selection.Entries)
		slices.SortFunc(got, func(a, b netip.AddrPort) int { return a.Compare(b) })
		if !slices.Equal(got, all) || len(ex.Selection.Cursors) == 0 || len(ex.RealServers) != 3 {
			t.Errorf("round-robin selection %+v with real servers %+v, want a table of %v and a cursor per CPU", ex.Selection, ex.RealServers, all)
		}
	})

	t.Run("not a VIP", func(t *testing.T) {
		ex := d.explainJSON(t, "tcp", netip.AddrPortFrom(lab.ClientIP, 1).String(), netip.AddrPortFrom(lab.DirectorIP, 22).String())
		if ex.Verdict != "pass" || ex.Service != nil || !strings.Contains(strings.Join(ex.Why, "\n"), "not a VIP") {
			t.Errorf("explain of a packet to the director's own address: %+v", ex)
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"icmp", "10.0.0.1:1", vip},
			{"tcp", "10.0.0.1", vip},
			{"tcp", "10.0.0.1:1"},
		} {
			if _, errOut, code := d.cli(t, append([]string{"explain"}, args...)...); code != 2 || errOut == "" {
				t.Errorf("sluice explain %v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
			}
		}
	})

	t.Run("source hash names the server that answers", func(t *testing.T) {
		conf, err := os.ReadFile(d.conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.conf, []byte(strings.Replace(string(conf), "lb_algo rr", "lb_algo mh", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := d.cli(t, "reload"); code != 0 {
			t.Fatalf("reload: %s", errOut)
		}
		var ex control.Explanation
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			ex = d.explainJSON(t, "tcp", netip.AddrPortFrom(lab.ClientIP, 1).String(), vip)
			if ex.Selection != nil && ex.Selection.Method == director.SelectSourceHash {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no source-hash selection after the reload to mh: %+v", ex)
			}
		}
		if ex.RealServer == nil {
			t.Fatalf("mh miss names no real server: %+v", ex)
		}
		tally := d.lab.Run(context.Background(), 10)
		if len(tally.Failed) > 0 || len(tally.ByServer) != 1 {
			t.Fatalf("10 connections after the reload to mh: %+v", tally)
		}
		for name := range tally.ByServer {
			if addrOf[name] != *ex.RealServer {
				t.Errorf("explain said %s (slot %d), connections went to %s (%s)", ex.RealServer, ex.Selection.Slot, name, addrOf[name])
			}
		}
	})
}

// TestVRRPMetricsAndExplain runs a VRRP pair with metrics on: the MASTER reports its state and
// the adverts it sends, the BACKUP the adverts it receives; `sluice explain` on the BACKUP says
// the VIP's packets go to its stack because its instance is not MASTER, and on the MASTER where
// they are forwarded.
func TestVRRPMetricsAndExplain(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	l, err := lab.BuildVRRP(env, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Each director serves metrics on its own namespace's loopback.
	const addr = "127.0.0.1:9723"
	dir := t.TempDir()
	var logs [2]*lab.LogTail
	for i, prio := range []int{150, 100} {
		conf := filepath.Join(dir, fmt.Sprintf("%d.conf", i))
		if err := os.WriteFile(conf, []byte(l.KeepalivedConfVRRP(prio)), 0o600); err != nil {
			t.Fatal(err)
		}
		logs[i] = &lab.LogTail{}
		cmd := l.Directors[i].Command(sluiceBin, "run", "-f", conf, "-n", "-l", "--metrics-listen", addr)
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		cmd.WaitDelay = 5 * time.Second
		if _, err := env.Start(cmd); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, lg := range logs {
				for _, line := range lg.Since(0) {
					t.Logf("director %d: %s", i, line)
				}
			}
		}
	})
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("election: %v", err)
	}
	if err := l.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // adverts every 200 ms

	master, backup := scrapeMetrics(t, l.Directors[0], addr), scrapeMetrics(t, l.Directors[1], addr)
	state := func(s string) string { return fmt.Sprintf(`sluice_vrrp_state{instance="VI_1",state="%s"}`, s) }
	const vi = `{instance="VI_1"}`
	for _, c := range []struct {
		name    string
		got     float64
		atLeast float64
	}{
		{"MASTER state on director 0", master[state("MASTER")], 1},
		{"BACKUP state on director 1", backup[state("BACKUP")], 1},
		{"adverts sent by the MASTER", master["sluice_vrrp_adverts_sent_total"+vi], 3},
		{"adverts received by the BACKUP", backup["sluice_vrrp_adverts_received_total"+vi], 3},
		{"transitions of the MASTER (INIT, BACKUP, MASTER)", master["sluice_vrrp_transitions_total"+vi], 2},
	} {
		if c.got < c.atLeast {
			t.Errorf("%s: %v, want at least %v", c.name, c.got, c.atLeast)
		}
	}
	if master[state("BACKUP")] != 0 || backup[state("MASTER")] != 0 {
		t.Errorf("a director reports two states: master %v, backup %v", master[state("BACKUP")], backup[state("MASTER")])
	}

	vip := fmt.Sprintf("%s:%d", lab.VIP, lab.Port)
	src := netip.AddrPortFrom(lab.ClientIP, 40000).String()
	for i, want := range []struct{ state, verdict, why string }{
		{"MASTER", "forward", "is MASTER here"},
		{"BACKUP", "pass", "is BACKUP here, not MASTER"},
	} {
		cmd := l.Directors[i].Command(sluiceBin, "explain", "--json", "tcp", src, vip)
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("director %d: sluice explain: %v: %s", i, err, errb.String())
		}
		var ex control.Explanation
		if err := json.Unmarshal(out, &ex); err != nil {
			t.Fatal(err)
		}
		if ex.VRRPInstance != "VI_1" || ex.VRRPState != want.state || ex.Verdict != want.verdict ||
			!strings.Contains(strings.Join(ex.Why, "\n"), want.why) {
			t.Errorf("director %d: explanation %+v, want VI_1 %s and verdict %s", i, ex, want.state, want.verdict)
		}
	}
}
