package e2e

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestNAT runs `sluice run` on a keepalived.conf with lb_kind NAT for an IPv4 and an IPv6
// virtual service on port 80 over real servers listening on 8080 behind the director: the XDP
// program translates the client's packets to the real server and, on the director's back
// interface, the replies back to the VIP.
func TestNAT(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	nl, err := lab.BuildNAT(env, 3)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	conf := writeConf(t, nl.KeepalivedConf(lab.DelayLoop, lab.ConnectTimeout))
	log, stopLog := testLog(t)
	proc, err := nl.StartSluice(sluiceBin, conf, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-proc.Done():
			t.Errorf("sluice exited before the test ended: %v", proc.Err())
		default:
			if err := proc.Stop(10 * time.Second); err != nil {
				t.Errorf("sluice did not exit cleanly on SIGTERM: %v", err)
			}
		}
		for _, ifName := range []string{"eth0", "eth1"} {
			if x, err := nl.Director.XDP(ifName); err != nil || x != nil {
				t.Errorf("director %s after sluice exited: XDP %+v, %v; want none", ifName, x, err)
			}
		}
		stopLog()
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-proc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, vip := range []netip.Addr{lab.NATVIP, lab.NATVIP6} {
		if err := nl.WaitReady(ctx, vip, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// The program runs on the back interface too, to translate the replies.
	for _, ifName := range []string{"eth0", "eth1"} {
		if x, err := nl.Director.XDP(ifName); err != nil || x == nil {
			t.Fatalf("director %s: no XDP program (%v)", ifName, err)
		}
	}

	for _, tc := range []struct {
		name   string
		vip    netip.Addr
		client netip.Addr
	}{
		{"ipv4", lab.NATVIP, lab.NATClientIP},
		{"ipv6", lab.NATVIP6, lab.NATClientIP6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 150
			var tally lab.Tally
			locals := map[string]int{}
			start := time.Now()
			for i := 0; i < n && ctx.Err() == nil; i++ {
				a := nl.Get(ctx, tc.vip)
				tally.Add(a.Attempt)
				if a.Err == nil {
					locals[a.Local]++
				}
			}
			t.Logf("%d connections in %v: %v", n, time.Since(start).Round(time.Millisecond), tally.ByServer)
			if len(tally.Failed) > 0 {
				t.Errorf("%d of %d connections failed", len(tally.Failed), n)
				logFailures(t, tally.Failed, start, t.Errorf)
			}
			checkShares(t, tally, "rs1", "rs2", "rs3")
			// NAT keeps the client's address and rewrites the destination to the real
			// server's own address and port.
			if want := map[string]int{tc.client.String(): n - len(tally.Failed)}; !maps.Equal(tally.ByPeer, want) {
				t.Errorf("real servers saw connections from %v, want only the client %s", tally.ByPeer, tc.client)
			}
			wantLocal := map[string]bool{}
			for _, s := range nl.Servers {
				a := s.Addr
				if tc.vip.Is6() {
					a = s.Addr6
				}
				wantLocal[netip.AddrPortFrom(a, lab.NATPort).String()] = true
			}
			for l := range locals {
				if !wantLocal[l] {
					t.Errorf("a real server saw a connection arrive on %s, want its own address and port %d", l, lab.NATPort)
				}
			}
		})
	}
}
