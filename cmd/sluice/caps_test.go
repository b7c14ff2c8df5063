package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestCapNames: the log line names capabilities as setpriv and capsh do, lowest bit first, and
// numbers those it has no name for.
func TestCapNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		mask uint64
		want string
	}{
		{"none", 0, "none"},
		{"kept", keptMask(), "cap_kill,cap_setgid,cap_setuid,cap_net_admin,cap_net_raw,cap_bpf"},
		{"unnamed", 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_SYS_PTRACE | 1<<unix.CAP_PERFMON, "cap_19,cap_sys_admin,cap_perfmon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := capNames(tc.mask); got != tc.want {
				t.Errorf("capNames(%#x) = %q, want %q", tc.mask, got, tc.want)
			}
		})
	}
}
