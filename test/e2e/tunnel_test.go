package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestTunnelling runs `sluice run` on a keepalived.conf with lb_kind TUN for an IPv4 and an
// IPv6 virtual service: the XDP program encapsulates in IPIP and IP6IP6, the real servers
// decapsulate (see lab.Decap) and answer the client directly from the VIP.
func TestTunnelling(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	tl, err := lab.BuildTUN(env, 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	conf := writeConf(t, tl.KeepalivedConfTUN(lab.DelayLoop, lab.ConnectTimeout))
	log, stopLog := testLog(t)
	d := &daemon{lab: tl.Lab, conf: conf, log: log}
	d.proc, err = tl.StartSluice(sluiceBin, conf, d.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopAndVerify(t)
		stopLog()
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.proc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tl.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatalf("IPv4: %v", err)
	}
	if err := tl.WaitReady6(ctx, 20*time.Second); err != nil {
		t.Fatalf("IPv6: %v", err)
	}
	if attached, desc, err := tl.XDPState(); err != nil || !attached {
		t.Fatalf("VIPs answer but no XDP program on the director: %s %v", desc, err)
	}

	for _, tc := range []struct {
		name   string
		get    func(context.Context) lab.Attempt
		client string
	}{
		{"ipip", tl.Get, lab.ClientIP.String()},
		{"ip6ip6", tl.Get6, lab.ClientIP6.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before int64
			for _, dc := range tl.Tunnels {
				before += dc.Packets()
			}
			const n = 150
			var tally lab.Tally
			start := time.Now()
			for i := 0; i < n && ctx.Err() == nil; i++ {
				tally.Add(tc.get(ctx))
			}
			t.Logf("%d connections in %v: %v", n, time.Since(start).Round(time.Millisecond), tally.ByServer)
			if len(tally.Failed) > 0 {
				t.Errorf("%d of %d connections failed", len(tally.Failed), n)
				logFailures(t, tally.Failed, start, t.Errorf)
			}
			checkShares(t, tally, "rs1", "rs2", "rs3")
			// The tunnel carries the client's packet whole: the real server sees the client.
			if want := map[string]int{tc.client: n - len(tally.Failed)}; !maps.Equal(tally.ByPeer, want) {
				t.Errorf("real servers saw connections from %v, want only the client %s", tally.ByPeer, tc.client)
			}
			// Every connection is at least a SYN, an ACK and a request through the tunnel.
			var after int64
			kernel := false
			for _, dc := range tl.Tunnels {
				after += dc.Packets()
				kernel = kernel || dc.Kernel
			}
			if !kernel && after-before < 3*int64(n-len(tally.Failed)) {
				t.Errorf("real servers decapsulated %d packets for %d connections, want at least 3 each", after-before, n)
			}
		})
	}
}
