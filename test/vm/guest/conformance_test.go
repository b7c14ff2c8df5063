package guest

import (
	"testing"

	"github.com/sluice-lb/sluice/test/conformance"
)

// TestConformance runs the conformance suite (test/conformance) against kernel IPVS with the
// real `sluice run --dataplane ipvs`: the same cases the host runs against XDP.
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Target{Dataplane: "ipvs", Bin: sluiceBin()})
}
