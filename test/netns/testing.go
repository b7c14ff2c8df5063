package netns

import (
	"os"
	"testing"
)

// SkipPrivileged skips a test that needs what this machine does not give it (root, a kernel
// feature). Under CI (the CI variable set, as .ci/run runs) it fails instead: CI runs as root on
// a kernel with every feature the tests need, so a skip there would hide a broken setup.
func SkipPrivileged(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("privileged test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// ForTest returns an Env closed at the end of the test. It skips the test when not running as
// root, and fails it when namespaces cannot be created or cleaned up.
func ForTest(t testing.TB) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipPrivileged(t, "needs root: creates network namespaces")
	}
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("clean up network namespaces: %v", err)
		}
	})
	return e
}
