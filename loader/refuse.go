package loader

import (
	"fmt"

	"github.com/sluice-lb/sluice/director"
)

// unservable reports why the XDP data path cannot serve service k, wrapping ErrUnsupported so
// the director logs it and serves the rest; nil when it can. Firewall marks are set by
// netfilter, after XDP has seen the packet; SCTP would need CRC32c checksums rewritten in XDP.
// The IPVS data plane serves both.
func unservable(k director.ServiceKey) error {
	switch {
	case k.FWMark != 0:
		return fmt.Errorf("service %s: fwmark services need the IPVS data plane (--dataplane ipvs): XDP runs before netfilter marks packets: %w", k, ErrUnsupported)
	case k.Proto == director.SCTP:
		return fmt.Errorf("service %s: SCTP services need the IPVS data plane (--dataplane ipvs): %w", k, ErrUnsupported)
	}
	return nil
}
