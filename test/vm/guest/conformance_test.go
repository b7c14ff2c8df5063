package guest

import (
	"testing"

	"github.com/sluice-lb/sluice/test/conformance"
)

// TestConformance runs the conformance suite (test/conformance) against kernel IPVS with the
// real `sluice run --dataplane ipvs`: the same cases the host runs against XDP.
func TestConformance(t *testing.T) {
	// The TUN and DR6 beds (test/lab.BuildTUN) cannot be built in the VM yet: the lab's kernel
	// tunnel endpoints are added with the parameters of the fallback devices tunl0/ip6tnl0 that
	// loading ipip and ip6_tunnel creates (most likely refused as existing), and its user-space
	// fallback needs /dev/net/tun, which the guest lacks. The host runs these cases against XDP.
	why := "issue #8: test/lab.BuildTUN cannot set up decapsulation in the VM (kernel endpoints clash with tunl0/ip6tnl0; no /dev/net/tun)"
	skip := map[string]string{}
	for _, c := range conformance.Cases() {
		if c.Kind == conformance.TUN || c.Kind == conformance.DR6 {
			skip[c.Name] = why
		}
	}
	conformance.Run(t, conformance.Target{Dataplane: "ipvs", Bin: sluiceBin(), Skip: skip})
}
