package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// TestPersistence checks keepalived's persistence_timeout through the real daemon: without it
// round robin spreads one client's connections over every real server; once a reload adds it,
// every new connection of the client goes to one real server; and an all-ports service
// (virtual_server VIP 0, real servers of port 0) with persistence serves port 80 the same way.
func TestPersistence(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()
	const conns = 30

	spread := d.lab.Run(ctx, conns)
	t.Logf("without persistence: %v", spread.ByServer)
	if len(spread.Failed) > 0 {
		logFailures(t, spread.Failed, spread.Failed[0].Start, t.Errorf)
	}
	var names []string
	for _, rs := range d.lab.RealServers {
		names = append(names, rs.Name)
	}
	checkShares(t, spread, names...)

	base, err := os.ReadFile(d.conf)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(conf string) {
		t.Helper()
		if err := writeAtomic(d.conf, []byte(conf)); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := d.cli(t, "reload"); code != 0 {
			t.Fatalf("sluice reload: %s", errOut)
		}
	}
	sticky := func(what string) {
		t.Helper()
		tally := d.lab.Run(ctx, conns)
		t.Logf("%s: %v", what, tally.ByServer)
		if len(tally.Failed) > 0 {
			t.Errorf("%s: %d of %d connections failed", what, len(tally.Failed), tally.Total)
			logFailures(t, tally.Failed, tally.Failed[0].Start, t.Errorf)
		}
		if len(tally.ByServer) != 1 {
			t.Errorf("%s: one client's %d connections went to %d real servers, want 1: %v",
				what, tally.Total, len(tally.ByServer), tally.ByServer)
		}
	}

	persistent := strings.Replace(string(base), "lb_algo rr\n", "lb_algo rr\n    persistence_timeout 60\n", 1)
	if persistent == string(base) {
		t.Fatal("could not add persistence_timeout to the lab's configuration")
	}
	reload(persistent)
	// `sluice reload` returns once the daemon took the file; wait until it is applied.
	for deadline := time.Now().Add(lab.ApplyMargin + 5*time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, _, _ := d.cli(t, "list", "-n"); strings.Contains(out, " persistent 60") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sluice list never showed the service as persistent after the reload")
		}
	}
	sticky("persistence_timeout 60")

	// The all-ports service: the same real servers at port 0, checked on port 80.
	allPorts := strings.Replace(persistent, fmt.Sprintf("virtual_server %s %d {", lab.VIP, lab.Port),
		fmt.Sprintf("virtual_server %s 0 {", lab.VIP), 1)
	allPorts = strings.ReplaceAll(allPorts, fmt.Sprintf(" %d {\n        weight", lab.Port), " 0 {\n        weight")
	allPorts = strings.ReplaceAll(allPorts, "TCP_CHECK {\n", fmt.Sprintf("TCP_CHECK {\n            connect_port %d\n", lab.Port))
	if strings.Count(allPorts, " 0 {") != 1+len(d.lab.RealServers) {
		t.Fatalf("could not derive an all-ports configuration:\n%s", allPorts)
	}
	reload(allPorts)
	// A connection opened while the data plane swaps the services may be re-scheduled (see
	// docs/dataplane.md), so measure once `sluice list` shows the swap done.
	done := false
	for deadline := time.Now().Add(10 * time.Second); !done && time.Now().Before(deadline); {
		out, _, _ := d.cli(t, "list")
		done = strings.Contains(out, fmt.Sprintf("%s:0 ", lab.VIP)) && !strings.Contains(out, fmt.Sprintf("%s:%d ", lab.VIP, lab.Port))
		if !done {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !done {
		out, _, _ := d.cli(t, "list")
		t.Fatalf("sluice list does not show the all-ports service alone:\n%s", out)
	}
	sticky("virtual_server port 0 with persistence_timeout 60")
}
