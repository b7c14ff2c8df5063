package loader

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/director"
)

// TestApplyRefusesFWMarkAndSCTP checks that firewall-mark and SCTP services are reported as
// unsupported, with the reason an operator needs, while the rest of the snapshot is forwarded.
func TestApplyRefusesFWMarkAndSCTP(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	sctp := director.ServiceKey{VIP: tcp80.VIP, Port: 3868, Proto: director.SCTP}
	err := l.Apply(context.Background(), *snap(
		svc(tcp80, "rr", be(beA, 1, true)),
		svc(director.FWMarkKey(5, false), "rr", be(beA, 1, true)),
		svc(sctp, "rr", be(beA, 1, true)),
	))
	if !errors.Is(err, ErrUnsupported) || !director.OnlyUnsupported(err) {
		t.Fatalf("Apply = %v, want only ErrUnsupported", err)
	}
	for _, want := range []string{
		"service FWM 5: fwmark services need the IPVS data plane (--dataplane ipvs): XDP runs before netfilter marks packets",
		"service SCTP 198.51.100.10:3868: SCTP services need the IPVS data plane (--dataplane ipvs)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Apply = %v, want it to say %q", err, want)
		}
	}
	if _, ok := l.services[tcp80]; !ok {
		t.Errorf("service %s not programmed next to the refused ones", tcp80)
	}
	pinCPU(t)
	if got := backendOf(t, l, client, 1); got != beA {
		t.Errorf("flow went to %s, want %s", got, beA)
	}
}
