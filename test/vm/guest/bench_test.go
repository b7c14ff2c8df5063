package guest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/bench"
)

// benchQuick makes TestBenchQuick run: test/vm's TestBenchInVM (make bench-vm) sets it.
var benchQuick = flag.Bool("bench-quick", false, "run `sluice bench --quick` and print its JSON between markers")

// Markers around the JSON TestBenchQuick prints on the console.
const (
	benchBegin = "SLUICE-BENCH-JSON-BEGIN"
	benchEnd   = "SLUICE-BENCH-JSON-END"
)

// TestBenchBaselines runs a smoke-sized `sluice bench` in the VM, whose kernel has IPVS and
// pktgen, and checks what they promise: every throughput row has an IPVS baseline measured in
// the same run, whose packets reached every real server (with DR, still addressed to the VIP;
// with TUN, encapsulated), and the UDP rows that pktgen sent reached every real server through
// Sluice and through IPVS. Rates are never compared: the VM runs under software emulation.
func TestBenchBaselines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	// DR, TUN and NAT over both families (live frames, TCP); pktgen's established UDP flows
	// over IPv4 and its flood over IPv6. About 4 s a scenario under emulation.
	results, err := bench.Run(ctx, bench.Options{
		Smoke: true, Generator: bench.GeneratorPktgen, ThroughputOnly: true, Progress: &progress,
		Filter: `^(established (dr|tun|nat)|established-udp dr ipv4|udp-flood dr ipv6) `,
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	pktgenRows := map[string]bool{}
	nftRows, rows := 0, 0
	for _, r := range results {
		if r.Kind != "throughput" {
			continue
		}
		rows++
		name := fmt.Sprintf("%s %s %s %s flows=%d (%s)", r.Scenario, r.Mode, r.Family, r.Proto, r.Flows, r.Generator)
		if r.IPVSMpps == nil || *r.IPVSMpps <= 0 {
			t.Errorf("%s: ipvs_mpps %v, want a measurement", name, r.IPVSMpps)
		}
		var delivered uint64
		for i, n := range r.IPVSPerReal {
			delivered += n
			if n == 0 {
				t.Errorf("%s: real server %d received nothing from IPVS (per real %v)", name, i, r.IPVSPerReal)
			}
		}
		if len(r.IPVSPerReal) != 3 {
			t.Errorf("%s: IPVS delivered to %d real servers (%v), want 3", name, len(r.IPVSPerReal), r.IPVSPerReal)
		}
		switch r.Mode {
		case "dr":
			if r.IPVSToVIP != delivered || r.IPVSEncapsulated != 0 {
				t.Errorf("%s: of %d packets IPVS delivered, %d to the VIP and %d encapsulated; want all to the VIP (DR)", name, delivered, r.IPVSToVIP, r.IPVSEncapsulated)
			}
		case "tun":
			if r.IPVSEncapsulated != delivered {
				t.Errorf("%s: of %d packets IPVS delivered, %d encapsulated; want all (TUN)", name, delivered, r.IPVSEncapsulated)
			}
		case "nat":
			if r.IPVSToVIP != 0 || r.IPVSEncapsulated != 0 {
				t.Errorf("%s: of %d packets IPVS delivered, %d to the VIP and %d encapsulated; want the real server's address (NAT)", name, delivered, r.IPVSToVIP, r.IPVSEncapsulated)
			}
		}
		if r.NftMpps != nil {
			nftRows++
			if *r.NftMpps <= 0 {
				t.Errorf("%s: nft_mpps %v: nftables DNAT delivered nothing next to IPVS's local VIPs", name, *r.NftMpps)
			}
		}
		wantGen := bench.GeneratorLiveFrames
		if r.Proto == "UDP" {
			wantGen = bench.GeneratorPktgen
			pktgenRows[r.Family+" "+r.Scenario] = true
		}
		if r.Generator != wantGen {
			t.Errorf("%s: generator %q, want %q", name, r.Generator, wantGen)
		}
		if r.Sent == 0 || r.CeilingMpps == nil || *r.CeilingMpps <= 0 {
			t.Errorf("%s: sent %d, ceiling %v: want the generator's packets sent and bounced", name, r.Sent, r.CeilingMpps)
		}
		if r.Delivered == 0 || len(r.PerReal) != 3 {
			t.Errorf("%s: Sluice delivered %d (per real %v), want traffic to 3 real servers", name, r.Delivered, r.PerReal)
		}
		for i, n := range r.PerReal {
			if n == 0 {
				t.Errorf("%s: real server %d received nothing from Sluice (per real %v)", name, i, r.PerReal)
			}
		}
	}
	if rows != 8 {
		t.Errorf("%d throughput rows, want the filter's 8", rows)
	}
	if _, err := exec.LookPath("nft"); err == nil && nftRows == 0 {
		t.Errorf("nft is installed but no row measured the nftables baseline")
	}
	for _, want := range []string{"ipv6 udp-flood", "ipv4 established-udp"} {
		if !pktgenRows[want] {
			t.Errorf("no %s row sent by pktgen (have %v)", want, pktgenRows)
		}
	}
}

// TestBenchQuick runs `sluice bench --quick --json --generator pktgen` when -bench-quick is
// given (make bench-vm) and prints the JSON between markers for the host to read.
func TestBenchQuick(t *testing.T) {
	if !*benchQuick {
		t.Skip("only with -bench-quick (make bench-vm)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin(), "bench", "--quick", "--json", "--throughput-only", "--generator", bench.GeneratorPktgen)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice bench: %v", err)
	}
	fmt.Printf("%s\n%s%s\n", benchBegin, stdout.String(), benchEnd)
}
