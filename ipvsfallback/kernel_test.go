package ipvsfallback

import (
	"errors"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sluice-lb/sluice/test/netns"
)

// On the running kernel, New either works or, where the kernel has no IPVS (as on this
// project's CI VM), fails with ErrUnavailable: what `--dataplane auto` will branch on. The
// kernel with IPVS is tested by test/vm.
func TestNewOnThisKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: opens IPVS's netlink interface")
	}
	_, famErr := netlink.GenlFamilyGet("IPVS")
	d, err := New(Options{})
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("New error = %v, want one wrapping ErrUnavailable", err)
		}
		t.Logf("no IPVS here, as expected from New: %v", err)
		return
	}
	if famErr != nil {
		t.Logf("New loaded ip_vs itself")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
