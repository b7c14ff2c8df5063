package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/config"
)

func TestConvertCommand(t *testing.T) {
	rules := writeConf(t, "-A -t 192.0.2.1:80 -s rr\n-a -t 192.0.2.1:80 -r 10.0.0.1:80 -g -w 2\n")
	ld := writeConf(t, "virtual=192.0.2.2:80\n\treal=10.0.0.2:80 gate\n\tchecktype=connect\n")
	broken := writeConf(t, "-A -t nonsense\n")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"ipvsadm", []string{"convert", "--from", "ipvsadm", rules}, 0, "virtual_server 192.0.2.1 80 {", ""},
		{"ldirectord", []string{"convert", "--from", "ldirectord", ld}, 0, "TCP_CHECK {", ""},
		{"broken input", []string{"convert", "--from", "ipvsadm", broken}, 5, "", broken + ":1: "},
		{"unknown format", []string{"convert", "--from", "haproxy", rules}, 2, "", `--from "haproxy": want ldirectord or ipvsadm`},
		{"no file", []string{"convert", "--from", "ipvsadm"}, 2, "", "usage: sluice convert"},
		{"missing file", []string{"convert", "--from", "ipvsadm", rules + ".nope"}, 7, "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stdout %q / stderr %q, want %q / %q", out.String(), errb.String(), tc.wantOut, tc.wantErr)
			}
			if code == 0 {
				// What convert prints is a configuration sluice runs.
				if _, err := config.Parse("converted", out.Bytes()); err != nil {
					t.Errorf("output does not parse: %v", err)
				}
			}
		})
	}
}
