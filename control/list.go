package control

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/sluice-lb/sluice/director"
)

// ListOptions selects the variant of WriteList.
type ListOptions struct {
	Stats bool // --stats: traffic counters instead of weights and connections
	// Rate (--rate) prints per-second rates, from the Rates of a CmdRates status.
	Rate bool
	// Names turns a protocol's address and port into what ipvsadm prints without -n; nil
	// means numeric (-n).
	Names func(proto string, ap netip.AddrPort) string
}

// WriteList prints the services in the layout of `ipvsadm -L` (with Stats, `ipvsadm -L --stats`),
// column for column, so scripts written against ipvsadm keep working.
//
// ActiveConn and InActConn are the data plane's live flow counts (docs/dataplane.md, "Schedulers",
// says how the XDP data path infers TCP states); 0 when it keeps none.
func WriteList(w io.Writer, st Status, o ListOptions) error {
	name := func(proto string, a netip.Addr, p uint16) string {
		ap := netip.AddrPortFrom(a, p)
		if o.Names != nil {
			return o.Names(proto, ap)
		}
		return ap.String()
	}
	// The version ipvsadm prints is the kernel's IPVS version; 1.2.1 is what every kernel since
	// 2.6 reports, and scripts match on it. The size is the connection table's.
	fmt.Fprintf(w, "IP Virtual Server version 1.2.1 (size=4096)\n")
	if o.Rate {
		fmt.Fprintf(w, "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n")
		fmt.Fprintf(w, "  -> RemoteAddress:Port\n")
	} else if o.Stats {
		fmt.Fprintf(w, "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n")
		fmt.Fprintf(w, "  -> RemoteAddress:Port\n")
	} else {
		fmt.Fprintf(w, "Prot LocalAddress:Port Scheduler Flags\n")
		fmt.Fprintf(w, "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for _, s := range st.Services {
		svc := s.Protocol + "  " + name(s.Protocol, s.VIP, s.Port)
		if s.FWMark != 0 {
			// ipvsadm: "FWM  5", and "FWM  5 IPv6" for an IPv6 mark.
			svc = "FWM  " + strconv.FormatUint(uint64(s.FWMark), 10)
			if s.VIP.Is6() {
				svc += " IPv6"
			}
		}
		if o.Rate {
			fmt.Fprintf(w, "%-33s%s\n", svc, rateColumns(s.Rates))
		} else if o.Stats {
			fmt.Fprintf(w, "%-33s%s\n", svc, counters(s.Stats))
		} else {
			flags := ""
			if s.Persistence > 0 {
				flags = " persistent " + strconv.Itoa(s.Persistence)
			}
			fmt.Fprintf(w, "%s %s%s\n", svc, s.Scheduler, flags)
		}
		for _, r := range s.RealServers {
			if !r.Healthy {
				continue // keepalived removes a failed real server from IPVS
			}
			dest := name(s.Protocol, r.Address, r.Port)
			if len(dest) > 28 {
				dest = dest[:28]
			}
			if o.Rate {
				fmt.Fprintf(w, "  -> %-28s%s\n", dest, rateColumns(r.Rates))
			} else if o.Stats {
				fmt.Fprintf(w, "  -> %-28s%s\n", dest, counters(r.Stats))
			} else {
				var active, inactive uint64
				if r.Stats != nil {
					active, inactive = r.Stats.ActiveConns, r.Stats.InactConns
				}
				fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", dest, r.Forward, r.Weight, active, inactive)
			}
		}
	}
	return nil
}

// protocolName is a service's protocol as ipvsadm names it: TCP, UDP, SCTP, or FWM for a
// firewall mark.
func protocolName(k director.ServiceKey) string {
	if k.FWMark != 0 {
		return "FWM"
	}
	return k.Proto.String()
}

func counters(c *Counters) string {
	if c == nil {
		c = &Counters{}
	}
	return largenum(c.Conns) + largenum(c.InPkts) + largenum(c.OutPkts) + largenum(c.InBytes) + largenum(c.OutBytes)
}

// rateColumns prints rates as ipvsadm --rate does: CPS InPPS OutPPS InBPS OutBPS, each with
// print_largenum. Out* are 0 for DR and TUN, whose replies bypass the director.
func rateColumns(r *Rates) string {
	if r == nil {
		r = &Rates{}
	}
	return largenum(r.CPS) + largenum(r.InPPS) + largenum(r.OutPPS) + largenum(r.InBPS) + largenum(r.OutBPS)
}

// largenum formats a counter in a 9-character column the way ipvsadm does: exact below 10^8,
// then in K, M, G or T.
func largenum(i uint64) string {
	switch {
	case i < 100_000_000:
		return fmt.Sprintf("%9d", i)
	case i < 1_000_000_000:
		return fmt.Sprintf("%8dK", i/1_000)
	case i < 100_000_000_000:
		return fmt.Sprintf("%8dM", i/1_000_000)
	case i < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", i/1_000_000_000)
	}
	return fmt.Sprintf("%8dT", i/1_000_000_000_000)
}
