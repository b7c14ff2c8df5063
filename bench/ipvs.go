package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
)

// The IPVS baseline: kernel IPVS in the director namespace, programmed by Sluice's own IPVS
// data plane (ipvsfallback, over github.com/moby/ipvs) with the services Sluice forwards, fed by
// a generator veth of its own (gen3 - dirv). The VIPs are local addresses of the director (on
// dir0), so packets to them reach IPVS's LOCAL_IN hook from any interface. The other paths stay
// out of IPVS's way: Sluice's XDP program takes its path's packets before the stack sees them
// (and an input rule drops any it would pass, so IPVS could not forward them in Sluice's name),
// nftables DNATs its path's in prerouting, before the local delivery decision, and the ceiling
// bounces its frames in XDP.

// ipvsSysctls are what the IPVS baseline needs of the director namespace, beyond forwarding.
var ipvsSysctls = [][2]string{
	// The generator's established flows are ACKs of connections IPVS never saw open: sloppy
	// TCP lets IPVS schedule a connection on any packet, as it does after a director failover.
	{"net.ipv4.vs.sloppy_tcp", "1"},
	// A connection whose real server was removed is expired at its next packet and that packet
	// scheduled anew (see ipvsSnapshot); it is the default since Linux 5.9.
	{"net.ipv4.vs.expire_nodest_conn", "1"},
	// The baseline's generator veth: its sources route back through the nftables path.
	{"net/ipv4/conf/dirv/rp_filter", "0"},
}

// ipvsDestPort is the real servers' port for method m in the IPVS baseline. IPVS keeps a
// connection's forwarding method for the connection's life, and a real server removed and
// added again revives with its old connections; the same flows then sent with another method
// would still go by the old one. A port per method makes a method's real servers other IPVS
// destinations, so changing method leaves the old connections without a server and they are
// rescheduled. DR and TUN leave the port alone; NAT rewrites it, which the sinks do not look at.
func ipvsDestPort(m director.Method) uint16 {
	switch m {
	case director.MethodTUN:
		return vipPort + 1
	case director.MethodNAT:
		return vipPort + 2
	}
	return vipPort
}

// ipvsSnapshot is the IPVS baseline's configuration for method: snapshot's services (TCP and
// UDP on both VIPs, rr over the three real servers) with the method's port (ipvsDestPort).
func ipvsSnapshot(method director.Method) director.Snapshot {
	s := snapshot("rr", method)
	for i := range s.Services {
		for j := range s.Services[i].Backends {
			s.Services[i].Backends[j].Port = ipvsDestPort(method)
		}
	}
	return s
}

// openIPVS returns the IPVS data plane of the director namespace, or nil without error when
// the kernel has no IPVS (ipvsfallback.New tries modprobe ip_vs first): the baseline is then
// not measured.
func (r *rig) openIPVS() (*ipvsfallback.Dataplane, error) {
	have := r.dir.Do(func() error {
		_, err := os.Stat("/proc/thread-self/net/ip_vs")
		return err
	}) == nil
	dp, err := ipvsfallback.New(ipvsfallback.Options{Logger: r.quietLog, NetnsPath: filepath.Join("/run/netns", r.dir.Name)})
	switch {
	case errors.Is(err, ipvsfallback.ErrUnavailable) && !have:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("open ipvs in the director: %w", err)
	}
	return dp, nil
}

// installIPVS sets up the IPVS baseline's path: an XDP_PASS program on the director's end so
// that it receives the generator's XDP_TX frames, and the sysctls IPVS needs. Its services
// are applied per scenario (applyIPVS).
func (r *rig) installIPVS() error {
	if err := r.attachPass(r.paths[pathIPVS].dirIf); err != nil {
		return err
	}
	for _, s := range ipvsSysctls {
		if err := r.dir.Sysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	if r.haveNft {
		cmd := r.dir.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ipvsNftRules(r.paths[pathIPVS].dirIf, r.paths[pathSluice].dirIf))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("install nftables rules of the ipvs path: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ipvsNftRules keeps the IPVS path's packets (arriving on ifName) out of connection tracking,
// which the nftables baseline's NAT turns on for the whole namespace. Both paths send the same
// flows: tracked, the first path's conntrack entry would decide for the other (nftables' DNAT
// applied to IPVS's packets, or a connection without NAT sending nftables' packets to the local
// VIP), and IPVS alone does not track connections. It also drops, before IPVS's LOCAL_IN hook
// (filter runs at priority 0, IPVS at 98), service packets that Sluice's program on sluiceIf
// would pass to the stack: the sinks would count them as Sluice's.
func ipvsNftRules(ifName, sluiceIf string) string {
	return fmt.Sprintf(`table inet sluice_bench_ipvs {
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		iifname "%s" notrack
	}
	chain in {
		type filter hook input priority filter; policy accept;
		iifname "%s" meta l4proto { tcp, udp } th dport %d drop
	}
}
`, ifName, sluiceIf, vipPort)
}

// applyIPVS programs IPVS with the services forwarding by method.
func (r *rig) applyIPVS(ctx context.Context, method director.Method) error {
	if err := r.ipvs.Apply(ctx, ipvsSnapshot(method)); err != nil {
		return fmt.Errorf("apply ipvs services: %w", err)
	}
	return nil
}
