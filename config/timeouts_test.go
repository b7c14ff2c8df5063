package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLVSTimeouts checks global_defs lvs_timeouts as keepalived reads it: any of tcp, tcpfin
// and udp, in any order, in seconds up to 31 days.
func TestLVSTimeouts(t *testing.T) {
	tests := []struct {
		name string
		line string
		want LVSTimeouts
	}{
		{"all three", "lvs_timeouts tcp 7200 tcpfin 120 udp 300",
			LVSTimeouts{TCP: 2 * time.Hour, TCPFin: 2 * time.Minute, UDP: 5 * time.Minute}},
		{"udp alone", "lvs_timeouts udp 30", LVSTimeouts{UDP: 30 * time.Second}},
		{"any order", "lvs_timeouts udp 1 tcp 2", LVSTimeouts{TCP: 2 * time.Second, UDP: time.Second}},
		{"zero keeps the default", "lvs_timeouts tcp 0", LVSTimeouts{}},
		{"largest", "lvs_timeouts tcpfin 2678400", LVSTimeouts{TCPFin: 31 * 24 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseOK(t, "global_defs {\n"+tt.line+"\n}\n")
			if diff := cmp.Diff(tt.want, cfg.Global.LVSTimeouts); diff != "" {
				t.Errorf("LVSTimeouts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLVSTimeoutsErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []string
	}{
		{"no value", "lvs_timeouts", []string{"t.conf:2:1: lvs_timeouts needs a value: expected tcp N, tcpfin N or udp N"}},
		{"option without value", "lvs_timeouts tcp 5 udp", []string{"t.conf:2:20: lvs_timeouts udp needs a value: expected seconds in 0..2678400"}},
		{"unknown option", "lvs_timeouts sctp 5", []string{
			`t.conf:2:14: invalid lvs_timeouts option "sctp": expected tcp, tcpfin or udp`,
		}},
		{"unknown option, then a good one", "lvs_timeouts sctp 5 udp 7", []string{
			`t.conf:2:14: invalid lvs_timeouts option "sctp": expected tcp, tcpfin or udp`,
		}},
		{"too long", "lvs_timeouts udp 2678401", []string{`t.conf:2:18: invalid lvs_timeouts udp "2678401": out of range, expected an integer in 0..2678400`}},
		{"negative", "lvs_timeouts tcp -1", []string{`t.conf:2:18: invalid lvs_timeouts tcp "-1": negative number, expected an integer in 0..2678400`}},
		{"block", "lvs_timeouts {\n}", []string{"t.conf:2:14: lvs_timeouts takes values, not a block: expected tcp N, tcpfin N or udp N"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(mapFS{}, "t.conf", []byte("global_defs {\n"+tt.line+"\n}\n"), Options{ConfigID: "testhost"})
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSchedFlagsAndPortZero checks the virtual_server keywords of persistence and hashing:
// sh-port / mh-port / flag-2, sh-fallback / mh-fallback / flag-1, persistence_granularity, and
// the all-ports service (port 0) persistence allows, without "not supported" warnings.
func TestSchedFlagsAndPortZero(t *testing.T) {
	tests := []struct {
		name               string
		body               string
		wantPort, wantFall bool
	}{
		{"sh-port", "lb_algo sh\nsh-port", true, false},
		{"mh-port", "lb_algo mh\nmh-port", true, false},
		{"flag-2", "lb_algo mh\nflag-2", true, false},
		{"sh-fallback", "lb_algo sh\nsh-fallback", false, true},
		{"mh-fallback and port", "lb_algo mh\nmh-fallback\nmh-port", true, true},
		{"flag-1", "lb_algo sh\nflag-1", false, true},
		{"none", "lb_algo sh", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "virtual_server 10.0.0.1 0 {\nprotocol TCP\npersistence_timeout 600\npersistence_granularity 255.255.255.0\n" +
				tt.body + "\nreal_server 10.0.1.1 0 {\n}\n}\n"
			cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			for _, w := range cfg.Warnings {
				t.Errorf("unexpected warning: %s", w)
			}
			v := cfg.VirtualServers[0]
			if v.Port != 0 || v.Persistence != 600*time.Second || v.PersistenceGranularity != 24 || v.RealServers[0].Port != 0 {
				t.Errorf("port %d persistence %v /%d real server port %d; want 0, 10m0s, /24, 0",
					v.Port, v.Persistence, v.PersistenceGranularity, v.RealServers[0].Port)
			}
			if v.SchedPort != tt.wantPort || v.SchedFallback != tt.wantFall {
				t.Errorf("SchedPort %v SchedFallback %v, want %v %v", v.SchedPort, v.SchedFallback, tt.wantPort, tt.wantFall)
			}
		})
	}
}
