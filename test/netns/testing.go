package netns

import (
	"os"
	"testing"
)

// ForTest returns an Env closed at the end of the test. It skips the test when not running as
// root, and fails it when namespaces cannot be created or cleaned up.
func ForTest(t testing.TB) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
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
