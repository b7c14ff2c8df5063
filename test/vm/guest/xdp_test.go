package guest

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/loader"
)

// TestXDPLoadsOnStockKernel loads the XDP program into Debian's stock kernel: the verifiers of
// older kernels (Linux 6.1 in Debian 12) are stricter than this machine's, and a program they
// refuse would leave those users on the IPVS fallback. The verifier's log is shown on failure.
func TestXDPLoadsOnStockKernel(t *testing.T) {
	l, err := loader.New(loader.Options{NoAttach: true})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("the kernel's verifier refuses the XDP program: %+v", ve)
		}
		t.Fatalf("load the XDP program: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
