package director

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/health"
)

// TestHealthHooks runs real TCP_CHECKs against loopback listeners: OnProbe hears every probe
// with its latency under the target's ID, and OnHealth the transition of the server whose
// listener closed.
func TestHealthHooks(t *testing.T) {
	ln1, rs1 := listen(t)
	_, rs2 := listen(t)
	cfg := testConfig(rs1, rs2)
	id1, id2 := TargetID(cfg.VirtualServers[0], cfg.VirtualServers[0].RealServers[0]),
		TargetID(cfg.VirtualServers[0], cfg.VirtualServers[0].RealServers[1])
	if want := TargetIDOf(ServiceKey{VIP: cfg.VirtualServers[0].Addr, Port: 80, Proto: TCP}, rs1); id1 != want {
		t.Fatalf("TargetID %q, TargetIDOf %q: they must agree", id1, want)
	}

	var mu sync.Mutex
	var probes []health.Probe
	var events []health.Event
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour,
		OnProbe:  func(p health.Probe) { mu.Lock(); probes = append(probes, p); mu.Unlock() },
		OnHealth: func(ev health.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() },
	})
	waitFor(t, rec, "both up", func(s Snapshot) bool { m := upSet(s); return m[rs1] && m[rs2] })
	ln1.Close()
	waitFor(t, rec, "rs1 down", func(s Snapshot) bool { return !upSet(s)[rs1] })

	// rs2's checks run every 50 ms: wait for one (bounded).
	var passed2, failed1 bool
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		for _, p := range probes {
			switch {
			case slices.Equal(p.IDs, []string{id2}) && p.Err == nil && p.Latency > 0 && p.Latency < time.Second:
				passed2 = true
			case slices.Equal(p.IDs, []string{id1}) && p.Err != nil && strings.Contains(p.Check, "TCP_CHECK"):
				failed1 = true
			}
		}
		mu.Unlock()
		if passed2 && failed1 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !passed2 || !failed1 {
		t.Errorf("probes %+v: want a passing one of %q with its latency and a failing one of %q", probes, id2, id1)
	}
	if !slices.ContainsFunc(events, func(ev health.Event) bool { return ev.ID == id1 && !ev.Up && ev.Err != nil }) {
		t.Errorf("health events %+v: want %q down with its error", events, id1)
	}
}
