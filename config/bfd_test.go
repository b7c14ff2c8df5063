package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBFDInstance(t *testing.T) {
	src := `bfd_instance edge {
  neighbor_ip 192.0.2.10
  source_ip 192.0.2.1
  min_rx 50
  min_tx 25.5
  idle_tx 2000
  multiplier 3
  passive
  ttl 250
  hoplimit 200
  max_hops 5
  weight -20 reverse
  checker
}
bfd_instance plain {
  neighbour_ip 2001:db8::2
}
virtual_server 192.0.2.100 80 {
  protocol TCP
  real_server 192.0.2.10 80 {
    BFD_CHECK {
      name edge
    }
  }
}
`
	cfg := parseOK(t, src)
	want := []BFDInstance{
		{Pos: pos("t.conf", 1, 1), Name: "edge", Neighbor: netip.MustParseAddr("192.0.2.10"), Source: netip.MustParseAddr("192.0.2.1"),
			MinRx: 50 * time.Millisecond, MinTx: 25500 * time.Microsecond, IdleTx: 2 * time.Second, Multiplier: 3, Passive: true,
			TTL: 250, HopLimit: 200, MaxHops: 5, Weight: -20, Reverse: true, OnlyChecker: true},
		{Pos: pos("t.conf", 15, 1), Name: "plain", Neighbor: netip.MustParseAddr("2001:db8::2"),
			MinRx: DefaultBFDMinRx, MinTx: DefaultBFDMinTx, IdleTx: DefaultBFDIdleTx, Multiplier: DefaultBFDMultiplier},
	}
	if diff := cmp.Diff(want, cfg.BFDInstances, cmpOpts...); diff != "" {
		t.Errorf("BFDInstances (-want +got):\n%s", diff)
	}
	rs := cfg.VirtualServers[0].RealServers[0]
	if len(rs.Checkers) != 1 || rs.Checkers[0].BFD == nil || rs.Checkers[0].BFD.Name != "edge" {
		t.Errorf("checkers = %+v, want one BFD_CHECK of edge", rs.Checkers)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestBFDInstanceErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"no neighbor", "bfd_instance a {\nmin_rx 10\n}\n", "t.conf:1:1: bfd_instance a needs neighbor_ip"},
		{"no name", "bfd_instance {\nneighbor_ip 10.0.0.1\n}\n", "t.conf:1:1: bfd_instance needs a name: expected bfd_instance NAME { ... }"},
		{"bad address", "bfd_instance a {\nneighbor_ip 10.0.0\n}\n", `t.conf:2:13: invalid neighbor_ip address "10.0.0": expected an IPv4 or IPv6 address`},
		{"mixed families", "bfd_instance a {\nneighbor_ip 10.0.0.1\nsource_ip ::1\n}\n", "t.conf:1:1: bfd_instance a: source_ip ::1 and neighbor_ip 10.0.0.1 are of different families"},
		{"bad interval", "bfd_instance a {\nneighbor_ip 10.0.0.1\nmin_rx 1.2345\n}\n", `t.conf:3:8: invalid min_rx "1.2345": expected milliseconds in 0.001..4294967 with at most 3 decimal places`},
		{"zero interval", "bfd_instance a {\nneighbor_ip 10.0.0.1\nmin_tx 0\n}\n", `t.conf:3:8: invalid min_tx "0": expected milliseconds in 0.001..4294967 with at most 3 decimal places`},
		{"multiplier range", "bfd_instance a {\nneighbor_ip 10.0.0.1\nmultiplier 0\n}\n", `t.conf:3:12: invalid multiplier "0": out of range, expected an integer in 1..255`},
		{"too big", "bfd_instance a {\nneighbor_ip 10.0.0.1\nmin_rx 4294968\n}\n", `t.conf:3:8: invalid min_rx "4294968": expected milliseconds in 0.001..4294967 with at most 3 decimal places`},
		{"duplicate", "bfd_instance a {\nneighbor_ip 10.0.0.1\n}\nbfd_instance a {\nneighbor_ip 10.0.0.2\n}\n", "t.conf:4:1: bfd_instance a is defined twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.conf", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := err.Error(); !containsLine(got, tt.want) {
				t.Errorf("error:\n%s\nwant a line %q", got, tt.want)
			}
		})
	}
}

func containsLine(text, line string) bool {
	for l := range strings.SplitSeq(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestBFDIdleTxBelowOneSecond(t *testing.T) {
	cfg := parseOK(t, "bfd_instance a {\nneighbor_ip 10.0.0.1\nidle_tx 200\n}\n")
	if got := cfg.BFDInstances[0].IdleTx; got != DefaultBFDIdleTx {
		t.Errorf("idle_tx = %v, want the default %v", got, DefaultBFDIdleTx)
	}
	want := "t.conf:3:9: bfd_instance a idle_tx 200 is below 1000 ms (RFC 5880 wants at least 1 s while not Up); using 1s as keepalived does"
	if got := warnStrings(cfg.Warnings); !contains(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}
