package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validConf = `virtual_server 192.0.2.100 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.11 80 {
        TCP_CHECK { connect_timeout 2 }
    }
}
`

const badConf = `virtual_server 192.0.2.100 80 {
    lb_algo roundrobin
    real_server 10.0.0.300 80 {
    }
}
`

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandLine(t *testing.T) {
	good, bad := writeConf(t, validConf), writeConf(t, badConf)
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string   // substring of stdout
		wantErrAll []string // substrings of stderr
	}{
		{name: "no command", args: nil, wantCode: 2, wantErrAll: []string{"usage: sluice"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantErrAll: []string{`unknown command "frobnicate"`}},
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: "sluice "},
		{name: "check valid", args: []string{"check", "-f", good}, wantCode: 0, wantOut: "configuration is valid (1 virtual servers, 0 vrrp instances)"},
		{name: "check invalid lists every error with file:line:col", args: []string{"check", "-f", bad}, wantCode: 5,
			wantErrAll: []string{bad + ":2:13: ", `"roundrobin"`, bad + ":3:17: ", `"10.0.0.300"`}},
		{name: "check missing file", args: []string{"check", "-f", filepath.Join(t.TempDir(), "nope.conf")}, wantCode: 7,
			wantErrAll: []string{"nope.conf"}},
		{name: "run -t valid, keepalived's config test", args: []string{"run", "-t", "-f", good}, wantCode: 0},
		{name: "leading flag means run, like keepalived -t -f", args: []string{"-t", "-f", bad}, wantCode: 5,
			wantErrAll: []string{bad + ":2:13: "}},
		{name: "unknown data plane", args: []string{"run", "-f", good, "--dataplane", "dpdk"}, wantCode: 2,
			wantErrAll: []string{`--dataplane "dpdk": want auto, xdp, xdp-generic or ipvs`}},
		{name: "flow table too small", args: []string{"run", "-f", good, "--flow-table-size", "10"}, wantCode: 2,
			wantErrAll: []string{"--flow-table-size 10: want 1024 to"}},
		{name: "no services", args: []string{"run", "-f", good, "--max-services", "0"}, wantCode: 2,
			wantErrAll: []string{"--max-services 0: want 1 to 1048576"}},
		{name: "too many real servers", args: []string{"run", "-f", good, "--max-real-servers", "16777217"}, wantCode: 2,
			wantErrAll: []string{"--max-real-servers 16777217: want 1 to 16777216"}},
		{name: "-P and -C exclude each other", args: []string{"run", "-f", good, "-P", "-C"}, wantCode: 2,
			wantErrAll: []string{"-P (VRRP only) and -C (checks only) exclude each other"}},
		{name: "stray argument", args: []string{"run", "-f", good, "extra"}, wantCode: 2, wantErrAll: []string{`unexpected argument "extra"`}},
		{name: "bad config is refused before anything is loaded", args: []string{"run", "-n", "-l", "-f", bad}, wantCode: 1,
			wantErrAll: []string{bad + ":3:17: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out.String(), tc.wantOut)
			}
			for _, w := range tc.wantErrAll {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr %q does not contain %q", errb.String(), w)
				}
			}
		})
	}
}
