package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/bench"
	"github.com/sluice-lb/sluice/test/netns"
)

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{name: "stray argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "negative duration", args: []string{"--duration", "-1s"}, wantErr: "want a positive duration"},
		{name: "unknown generator", args: []string{"--generator", "trafgen"}, wantErr: "want live-frames, pktgen or auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := realMain(append([]string{"bench"}, tt.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestBenchSmokeJSON runs `sluice bench --smoke --json --svg FILE` and checks what it prints.
func TestBenchSmokeJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: sluice bench builds network namespaces")
	}
	svg := filepath.Join(t.TempDir(), "bench.svg")
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"bench", "--smoke", "--json", "--svg", svg}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rows); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout.String())
	}
	if len(rows) == 0 || rows[0]["scenario"] != "established" || rows[0]["mpps"] == nil {
		t.Errorf("first row %v: want the established scenario with its Mpps", rows[0])
	}
	if !strings.Contains(stderr.String(), "[1/8]") || !strings.Contains(stderr.String(), "[8/8]") {
		t.Errorf("no progress over the 8 smoke scenarios on stderr:\n%s", stderr.String())
	}
	// Every method over both families is in the output.
	seen := map[string]bool{}
	for _, r := range rows {
		if r["kind"] == "throughput" {
			seen[r["mode"].(string)+" "+r["family"].(string)] = true
		}
	}
	for _, want := range []string{"dr ipv4", "dr ipv6", "tun ipv4", "tun ipv6", "nat ipv4", "nat ipv6"} {
		if !seen[want] {
			t.Errorf("no %s scenario in the JSON output (have %v)", want, seen)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Errorf("chart %s: %v, starts %q", svg, err, b[:min(len(b), 20)])
	}
}

// TestBenchPktgenMissing asks for kernel pktgen on a kernel without it (this machine's): a clear
// error before anything is built. Where pktgen exists, test/vm's guest test uses it.
func TestBenchPktgenMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: sluice bench builds network namespaces")
	}
	if bench.PktgenLoaded() {
		t.Skip("this kernel has pktgen")
	}
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"bench", "--smoke", "--generator", "pktgen"}, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "this kernel has no pktgen") {
		t.Errorf("stderr %q: want it to say the kernel has no pktgen", stderr.String())
	}
}
