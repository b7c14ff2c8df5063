package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplainCommandLine(t *testing.T) {
	// A socket path where no daemon listens: argument errors must be caught before any call.
	socket := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"too few arguments", []string{"tcp", "10.0.0.5:40000"}, 2, "usage: sluice explain"},
		{"bad protocol", []string{"sctp", "10.0.0.5:40000", "10.0.0.100:80"}, 2, `protocol "sctp": want tcp or udp`},
		{"source without port", []string{"tcp", "10.0.0.5", "10.0.0.100:80"}, 2, `source "10.0.0.5": want ADDRESS:PORT`},
		{"ipv6 without brackets", []string{"udp", "[2001:db8::5]:53", "2001:db8::1:53"}, 2, "destination"},
		{"no daemon", []string{"tcp", "10.0.0.5:40000", "10.0.0.100:80"}, 1, "sluice is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(append([]string{"explain", "--socket", socket}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}
