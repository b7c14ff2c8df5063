package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/test/netns"
)

// TestXDP runs the suite against the XDP data plane on this machine's kernel with the real
// `sluice run --dataplane xdp` (SLUICE_BIN, or built from ./cmd/sluice). test/vm/guest runs the
// same cases against kernel IPVS.
func TestXDP(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: creates network namespaces and attaches XDP programs")
	}
	bin := os.Getenv("SLUICE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "sluice")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/sluice-lb/sluice/cmd/sluice").CombinedOutput(); err != nil {
			t.Fatalf("build sluice: %v\n%s", err, out)
		}
	}
	Run(t, Target{Dataplane: "xdp", Bin: bin, Skip: map[string]string{}})
}

// TestCases checks the suite itself: every case has steps, each step something to check.
func TestCases(t *testing.T) {
	names := map[string]bool{}
	for _, c := range Cases() {
		if names[c.Name] {
			t.Errorf("case %q twice", c.Name)
		}
		names[c.Name] = true
		if len(c.Steps) == 0 {
			t.Errorf("case %q has no steps", c.Name)
		}
		for _, st := range c.Steps {
			if st.Connections <= 0 || (!st.Sticky && len(st.Share) == 0) {
				t.Errorf("case %q step %q checks nothing", c.Name, st.Name)
			}
		}
	}
}
