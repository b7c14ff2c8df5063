package ipvsfallback

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/director"
)

// TestTunnelTypes checks that IPIP tunnels are accepted and GUE and GRE refused as unsupported:
// moby/ipvs cannot set IPVS's tunnel type, so the kernel would send them as IPIP.
func TestTunnelTypes(t *testing.T) {
	for _, tc := range []struct {
		tun         director.Tunnel
		unsupported bool
	}{
		{director.Tunnel{}, false},
		{director.Tunnel{Type: director.TunnelGUE, Port: 6080}, true},
		{director.Tunnel{Type: director.TunnelGRE}, true},
	} {
		t.Run(tc.tun.Type.String(), func(t *testing.T) {
			svc := director.Service{
				Key: director.ServiceKey{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Proto: director.TCP},
				Backends: []director.Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1,
					Method: director.MethodTUN, Tunnel: tc.tun, Up: true}},
			}
			_, err := desired(svc)
			if got := errors.Is(err, ErrUnsupported); got != tc.unsupported {
				t.Errorf("desired: %v, want unsupported %v", err, tc.unsupported)
			}
		})
	}
}
