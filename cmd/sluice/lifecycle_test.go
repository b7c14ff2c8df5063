package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/control"
)

// TestLifecycleFlags: keepalived's -I and --dont-release-ipvs and our --dont-release-dataplane
// set the same switch; --instance names the control socket unless --socket is given.
func TestLifecycleFlags(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		dontRelease bool
		instance    string
		socket      string
		wantErr     string
	}{
		{"defaults", nil, false, control.Instance(), control.SocketPath(control.Instance()), ""},
		{"keepalived -I", []string{"-I"}, true, control.Instance(), control.SocketPath(control.Instance()), ""},
		{"keepalived long", []string{"--dont-release-ipvs"}, true, control.Instance(), control.SocketPath(control.Instance()), ""},
		{"ours", []string{"--dont-release-dataplane"}, true, control.Instance(), control.SocketPath(control.Instance()), ""},
		{"instance", []string{"--instance", "edge1"}, false, "edge1", "/run/sluice/edge1.sock", ""},
		{"instance and socket", []string{"--instance", "edge1", "--socket", "/run/x.sock"}, false, "edge1", "/run/x.sock", ""},
		{"instance with slash", []string{"--instance", "../etc"}, false, "", "", "want a name without slashes"},
		{"instance dot dot", []string{"--instance", ".."}, false, "", "", "want a name without slashes"},
		{"empty instance", []string{"--instance", ""}, false, "", "", "want a name without slashes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			socket := fs.String("socket", "unset", "")
			lc := addLifecycleFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := lc.resolve(fs, socket)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("resolve: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if lc.dontRelease != tc.dontRelease || lc.instance != tc.instance || *socket != tc.socket {
				t.Errorf("dontRelease %v instance %q socket %q, want %v %q %q", lc.dontRelease, lc.instance, *socket, tc.dontRelease, tc.instance, tc.socket)
			}
		})
	}
}

// TestRunRejectsBadInstance: run refuses an instance name that would escape the pin and socket
// directories, before touching anything.
func TestRunRejectsBadInstance(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"run", "-l", "--instance", "a/b", "-f", writeConf(t, validConf)}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), `--instance "a/b"`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
