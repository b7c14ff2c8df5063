package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const condConf = `@lb1 $PORT=80
@^lb1 $PORT=8080
virtual_server 192.0.2.100 $PORT {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    ~SEQ(N, 11, 12) real_server 10.0.0.${N} $PORT { weight 2 }
}
`

func TestCheckAndConfigCommands(t *testing.T) {
	good, bad, cond := writeConf(t, validConf), writeConf(t, badConf), writeConf(t, condConf)
	missing := filepath.Join(t.TempDir(), "nope.conf")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"check valid", []string{"check", "-f", good}, 0, "configuration is valid", ""},
		{"check invalid is keepalived's config-test exit code", []string{"check", "-f", bad}, 5, "", bad + ":2:13: "},
		{"check missing file", []string{"check", "-f", missing}, 7, "", "does not exist"},
		{"check a directory", []string{"check", "-f", t.TempDir()}, 7, "", "not a regular file"},
		{"check stray argument", []string{"check", "-f", good, "x"}, 2, "", `unexpected argument "x"`},
		{"check bad flag", []string{"check", "-q"}, 2, "", "flag provided but not defined"},
		{"run -t invalid", []string{"run", "-t", "-f", bad}, 5, "", bad + ":2:13: "},
		{"config without --json", []string{"config", "-f", good}, 2, "", "--json is required"},
		{"config invalid", []string{"config", "-f", bad, "--json"}, 5, "", bad + ":3:17: "},
		{"config missing", []string{"config", "--json", "-f", missing}, 7, "", "does not exist"},
		{"config json", []string{"config", "-f", good, "--json"}, 0, `"schema": "sluice.config/v1"`, ""},
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
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.wantErr)
			}
		})
	}

	// The JSON is the resolved configuration: @ID lines selected by -i, ~SEQ expanded,
	// defaults applied, durations in seconds.
	for _, tc := range []struct {
		id       string
		wantPort float64
	}{{"lb1", 80}, {"lb2", 8080}} {
		t.Run("config json with -i "+tc.id, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := realMain([]string{"config", "-f", cond, "-i", tc.id, "--json"}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var doc struct {
				Schema string
				Config struct {
					VirtualServers []struct {
						Addr        string
						Port        float64
						DelayLoop   float64 `json:"delay_loop"`
						LBKind      string  `json:"lb_kind"`
						RealServers []struct {
							Addr   string
							Port   float64
							Weight float64
							Pos    string
						} `json:"real_servers"`
					} `json:"virtual_servers"`
					Warnings []struct{ Pos, Message string }
				}
			}
			if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out.String())
			}
			vs := doc.Config.VirtualServers
			if len(vs) != 1 {
				t.Fatalf("virtual_servers = %+v", vs)
			}
			if vs[0].Addr != "192.0.2.100" || vs[0].Port != tc.wantPort || vs[0].DelayLoop != 60 || vs[0].LBKind != "NAT" {
				t.Errorf("virtual server = %+v", vs[0])
			}
			var rs []string
			for _, r := range vs[0].RealServers {
				rs = append(rs, r.Addr+" "+r.Pos)
				if r.Port != tc.wantPort || r.Weight != 2 {
					t.Errorf("real server = %+v", r)
				}
			}
			if diff := cmp.Diff([]string{"10.0.0.11 " + cond + ":7:21", "10.0.0.12 " + cond + ":7:21"}, rs); diff != "" {
				t.Errorf("real servers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCheckExitCodesMatchKeepalived runs keepalived's own config test on the same files and
// compares exit codes: 0 for a valid file, 5 for one with errors.
func TestCheckExitCodesMatchKeepalived(t *testing.T) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		bin = "/usr/sbin/keepalived"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("keepalived is not installed: nothing to compare with (config's differential test fails under CI instead)")
	}
	for name, body := range map[string]string{"valid": validConf, "invalid": badConf} {
		t.Run(name, func(t *testing.T) {
			f := writeConf(t, body)
			ka := exec.Command(bin, "-t", "-f", f)
			kaCode := 0
			if err := ka.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatal(err)
				}
				kaCode = exit.ExitCode()
			}
			var out, errb bytes.Buffer
			if got := realMain([]string{"check", "-f", f}, &out, &errb); got != kaCode {
				t.Errorf("sluice check exit %d, keepalived -t exit %d\n%s", got, kaCode, errb.String())
			}
		})
	}
}
