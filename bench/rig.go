package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/test/netns"
)

// Addresses of the rig. The generator sends from srcBase/16 to vip:vipPort (IPv6: from
// srcBase6/112 to vip6:vipPort); real server i sits behind dir(i+1) - rs0 at 10.77.(i+1).2 and
// fd77:(i+1)::2.
var (
	vip      = netip.MustParseAddr("192.0.2.100")
	vip6     = netip.MustParseAddr("2001:db8:100::100")
	vipPort  = uint16(80)
	srcBase  = netip.MustParseAddr("10.99.0.0")
	srcBase6 = netip.MustParseAddr("fd99::")
)

// family is the address family a scenario sends over.
type family struct {
	name         string
	vip, srcBase netip.Addr
}

var (
	ipv4 = family{name: "ipv4", vip: vip, srcBase: srcBase}
	ipv6 = family{name: "ipv6", vip: vip6, srcBase: srcBase6}
)

const (
	sinkIf    = "rs0"
	realCount = 3
)

// realAddr is the address of real server i.
func realAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, byte(i + 1), 2}) }

// realAddr6 is the IPv6 address of real server i.
func realAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x77, 0, byte(i + 1), 15: 2})
}

// oneArmAddr is the address of real server i of the one-armed scenarios, on the generator's
// segment (gen0 holds it): 10.77.0.11-13 or fd77::11-13.
func oneArmAddr(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0x77, 15: byte(0x11 + i)})
	}
	return netip.AddrFrom4([4]byte{10, 77, 0, byte(11 + i)})
}

// dirAddr6 is the director's IPv6 address toward real server i.
func dirAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x77, 0, byte(i + 1), 15: 1})
}

// noDAD turns off IPv6 duplicate address detection for links created in ns from now on, so
// their addresses are usable at once.
func noDAD(ns *netns.NS) error {
	return errors.Join(ns.Sysctl("net.ipv6.conf.default.accept_dad", "0"), ns.Sysctl("net.ipv6.conf.all.accept_dad", "0"))
}

// path is one veth from the generator into the director. Each forwarder under test has its
// own, so that all three stay installed and the measurements can alternate.
type path struct {
	genIf, dirIf   string
	genIfindex     int
	genMAC, dirMAC net.HardwareAddr
}

// The paths: Sluice on dir0 (which carries the VIPs), the ceiling on dirc, nftables on dirn,
// IPVS (when the kernel has it) on dirv.
const (
	pathSluice = iota
	pathCeiling
	pathNft
	pathIPVS
	numPaths
)

// rig is the benchmark topology: a generator namespace, a director namespace and one namespace
// per real server, each real server a sink counting what reaches it.
type rig struct {
	env   *netns.Env
	gen   *netns.NS
	dir   *netns.NS
	reals []*netns.NS
	paths [numPaths]path

	sinks    []*ebpf.Map // per real server
	bounced  *ebpf.Map   // frames the ceiling program sent back to the generator
	returned *ebpf.Map   // frames Sluice sent back to the generator's segment (one-armed)
	haveNft  bool
	ipvs     *ipvsfallback.Dataplane // the IPVS baseline; nil: this kernel has no IPVS
	pktgen   bool                    // the generator namespace has kernel pktgen (usePktgen)
	quietLog *slog.Logger
}

// newRig builds the topology with the ceiling, the nftables baseline (when nft(8) is installed)
// and the IPVS baseline (when the kernel has IPVS) in place; with usePktgen it also readies the
// generator's veths for kernel pktgen when the kernel has it (rig.pktgen). Close undoes all of it.
func newRig(usePktgen bool) (_ *rig, err error) {
	env, err := netns.New()
	if err != nil {
		return nil, err
	}
	r := &rig{env: env, quietLog: slog.New(slog.NewTextHandler(io.Discard, nil))}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	if r.gen, err = env.NewNS("gen"); err != nil {
		return nil, err
	}
	if r.dir, err = env.NewNS("dir"); err != nil {
		return nil, err
	}
	if err := errors.Join(noDAD(r.gen), noDAD(r.dir)); err != nil {
		return nil, err
	}
	r.paths[pathSluice] = path{genIf: "gen0", dirIf: "dir0"}
	r.paths[pathCeiling] = path{genIf: "gen1", dirIf: "dirc"}
	r.paths[pathNft] = path{genIf: "gen2", dirIf: "dirn"}
	if r.ipvs, err = r.openIPVS(); err != nil {
		return nil, err
	}
	if r.ipvs != nil {
		r.env.Defer(r.ipvs.Close)
		r.paths[pathIPVS] = path{genIf: "gen3", dirIf: "dirv"}
	}
	for i := range r.paths {
		p := &r.paths[i]
		if p.genIf == "" {
			continue
		}
		if err := veth(r.gen, p.genIf, r.dir, p.dirIf); err != nil {
			return nil, err
		}
		gl, err := r.gen.Link(p.genIf)
		if err != nil {
			return nil, err
		}
		dl, err := r.dir.Link(p.dirIf)
		if err != nil {
			return nil, err
		}
		p.genIfindex, p.genMAC, p.dirMAC = gl.Attrs().Index, gl.Attrs().HardwareAddr, dl.Attrs().HardwareAddr
	}
	for _, step := range []error{
		r.gen.AddAddr("gen0", netip.MustParsePrefix("10.77.0.2/24")),
		r.dir.AddAddr("dir0", netip.MustParsePrefix("10.77.0.1/24")),
		r.dir.AddAddr("dir0", netip.PrefixFrom(vip, 32)),
		r.gen.AddAddr("gen2", netip.MustParsePrefix("10.78.0.2/24")),
		r.dir.AddAddr("dirn", netip.MustParsePrefix("10.78.0.1/24")),
		r.dir.Sysctl("net.ipv4.ip_forward", "1"),
		r.dir.Sysctl("net.ipv4.conf.all.rp_filter", "0"),
		r.dir.Sysctl("net.ipv4.conf.dirn.rp_filter", "0"),
		r.gen.AddAddr("gen0", netip.MustParsePrefix("fd77::2/64")),
		r.dir.AddAddr("dir0", netip.MustParsePrefix("fd77::1/64")),
		r.dir.AddAddr("dir0", netip.PrefixFrom(vip6, 128)),
		r.gen.AddAddr("gen2", netip.MustParsePrefix("fd78::2/64")),
		r.dir.AddAddr("dirn", netip.MustParsePrefix("fd78::1/64")),
		r.dir.Sysctl("net.ipv6.conf.all.forwarding", "1"),
	} {
		if step != nil {
			return nil, step
		}
	}
	if err := r.dir.Netlink().RouteAdd(routeVia(srcBase, 16, netip.MustParseAddr("10.78.0.2"))); err != nil {
		return nil, fmt.Errorf("route generator sources in director: %w", err)
	}
	if err := r.dir.Netlink().RouteAdd(routeVia(srcBase6, 64, netip.MustParseAddr("fd78::2"))); err != nil {
		return nil, fmt.Errorf("route generator IPv6 sources in director: %w", err)
	}
	for i := range realCount {
		rs, err := env.NewNS(fmt.Sprintf("rs%d", i))
		if err != nil {
			return nil, err
		}
		if err := noDAD(rs); err != nil {
			return nil, err
		}
		r.reals = append(r.reals, rs)
		dif := fmt.Sprintf("dir%d", i+1)
		if err := veth(r.dir, dif, rs, sinkIf); err != nil {
			return nil, err
		}
		da := realAddr(i).As4()
		da[3] = 1
		if err := r.dir.AddAddr(dif, netip.PrefixFrom(netip.AddrFrom4(da), 24)); err != nil {
			return nil, err
		}
		if err := rs.AddAddr(sinkIf, netip.PrefixFrom(realAddr(i), 24)); err != nil {
			return nil, err
		}
		if err := errors.Join(r.dir.AddAddr(dif, netip.PrefixFrom(dirAddr6(i), 64)),
			rs.AddAddr(sinkIf, netip.PrefixFrom(realAddr6(i), 64))); err != nil {
			return nil, err
		}
		m, err := r.attachSink(rs, sinkIf)
		if err != nil {
			return nil, err
		}
		r.sinks = append(r.sinks, m)
	}
	if r.bounced, err = r.attachSink(r.gen, r.paths[pathCeiling].genIf); err != nil {
		return nil, err
	}
	// The one-armed scenarios' real servers live on the generator's segment, as in the classic
	// LVS-DR layout (clients, director and real servers on one LAN): gen0 answers for them, and
	// its sink counts what Sluice sends back out of dir0.
	for i := range realCount {
		if err := errors.Join(r.gen.AddAddr("gen0", netip.PrefixFrom(oneArmAddr(i, false), 24)),
			r.gen.AddAddr("gen0", netip.PrefixFrom(oneArmAddr(i, true), 64))); err != nil {
			return nil, err
		}
	}
	if r.returned, err = r.attachSink(r.gen, r.paths[pathSluice].genIf); err != nil {
		return nil, err
	}
	if err := r.installCeiling(); err != nil {
		return nil, err
	}
	_, lerr := r.dir.Command("nft", "--version").CombinedOutput()
	r.haveNft = lerr == nil
	if r.haveNft {
		if err := r.installNft(); err != nil {
			return nil, err
		}
	}
	if r.ipvs != nil {
		if err := r.installIPVS(); err != nil {
			return nil, err
		}
	}
	if usePktgen && r.pktgenAvailable() {
		// pktgen's packets leave through the stack's transmit path: checksummed in software,
		// or XDP forwarding would pass on partial checksums.
		for _, p := range r.paths {
			if p.genIf == "" {
				continue
			}
			if err := r.gen.TxOffloadOff(p.genIf); err != nil {
				return nil, err
			}
		}
		r.pktgen = true
	}
	return r, nil
}

// veth creates a veth pair with end aName in a and bName in b, with one queue per CPU at both
// ends, and sets both up. A veth hands a frame to the peer's queue of the sending CPU, whose NAPI
// runs on that CPU, so with a queue per CPU every CPU forwards its own traffic; with the default
// single queue all CPUs would feed one NAPI. Deleting either namespace deletes the pair.
func veth(a *netns.NS, aName string, b *netns.NS, bName string) error {
	q := strconv.Itoa(runtime.NumCPU())
	out, err := a.Command("ip", "link", "add", aName, "numtxqueues", q, "numrxqueues", q,
		"type", "veth", "peer", "name", bName, "netns", b.Name, "numtxqueues", q, "numrxqueues", q).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create veth %s/%s - %s/%s: %w: %s", a.Short, aName, b.Short, bName, err, strings.TrimSpace(string(out)))
	}
	return errors.Join(a.LinkUp(aName), b.LinkUp(bName))
}

// routeVia is a route to addr/bits through gw.
func routeVia(addr netip.Addr, bits int, gw netip.Addr) *netlink.Route {
	return &netlink.Route{
		Dst: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, addr.BitLen())},
		Gw:  gw.AsSlice(),
	}
}

// Close removes every namespace, link and program of the rig.
func (r *rig) Close() error { return r.env.Close() }

// attachSink loads a sink counter and attaches it natively to ifName in ns.
func (r *rig) attachSink(ns *netns.NS, ifName string) (*ebpf.Map, error) {
	prog, counters, err := newSink()
	if err != nil {
		return nil, err
	}
	r.env.Defer(func() error { return errors.Join(prog.Close(), counters.Close()) })
	closeLink, err := attach(ns, ifName, prog)
	if err != nil {
		return nil, err
	}
	r.env.Defer(closeLink)
	return counters, nil
}

// attach attaches prog to ifName in ns in native (driver) mode; veths support it.
func attach(ns *netns.NS, ifName string, prog *ebpf.Program) (func() error, error) {
	var l link.Link
	err := ns.Do(func() error {
		iface, err := ns.Link(ifName)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Attrs().Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s in %s: %w", prog, ifName, ns.Short, err)
	}
	return l.Close, nil
}

// snapshot is the director's configuration: a TCP and a UDP service on the IPv4 VIP and on the
// IPv6 VIP, each forwarding to the three real servers' addresses of its family by method (DR:
// new MACs; TUN: IPIP or IPv6-in-IPv6 to the real server; NAT: destination rewritten to it).
func snapshot(scheduler string, method director.Method) director.Snapshot {
	return snapshotTo(scheduler, method, false)
}

// snapshotTo is snapshot, with the real servers of the one-armed scenarios (oneArmAddr) when
// oneArm is set.
func snapshotTo(scheduler string, method director.Method, oneArm bool) director.Snapshot {
	var snap director.Snapshot
	for _, fam := range []family{ipv4, ipv6} {
		for _, proto := range []director.Proto{director.TCP, director.UDP} {
			svc := director.Service{
				Key:       director.ServiceKey{VIP: fam.vip, Port: vipPort, Proto: proto},
				Scheduler: scheduler,
			}
			for i := range realCount {
				a := realAddr(i)
				switch {
				case oneArm:
					a = oneArmAddr(i, fam.vip.Is6())
				case fam.vip.Is6():
					a = realAddr6(i)
				}
				svc.Backends = append(svc.Backends, director.Backend{Addr: a, Port: vipPort, Weight: 1, Method: method, Up: true})
			}
			snap.Services = append(snap.Services, svc)
		}
	}
	return snap
}

// startSluice loads Sluice's XDP program through the production API (loader.New, then Apply of
// a director.Snapshot, which attaches it to the VIP's interface and resolves the real servers
// by ARP) inside the director namespace.
func (r *rig) startSluice(ctx context.Context, method director.Method, flowTable uint32, oneArm bool) (*loader.Loader, error) {
	var l *loader.Loader
	err := r.dir.Do(func() error {
		var err error
		l, err = loader.New(loader.Options{Logger: r.quietLog, FlowTableSize: flowTable})
		if err != nil {
			return err
		}
		return l.Apply(ctx, snapshotTo("rr", method, oneArm))
	})
	if err != nil {
		if l != nil {
			err = errors.Join(err, l.Close())
		}
		return nil, fmt.Errorf("start sluice in the director: %w", err)
	}
	return l, nil
}

// installCeiling attaches the MAC-swap-and-bounce program to the ceiling path's director end.
func (r *rig) installCeiling() error {
	prog, err := newBounce()
	if err != nil {
		return err
	}
	r.env.Defer(prog.Close)
	closeLink, err := attach(r.dir, r.paths[pathCeiling].dirIf, prog)
	if err != nil {
		return err
	}
	r.env.Defer(closeLink)
	return nil
}

// nftRules DNATs the VIP, arriving on the nftables path, to the real servers in turn, in the
// kernel's stack.
func (r *rig) nftRules() string {
	var m4, m6 []string
	for i := range realCount {
		m4 = append(m4, fmt.Sprintf("%d : %s", i, realAddr(i)))
		m6 = append(m6, fmt.Sprintf("%d : %s", i, realAddr6(i)))
	}
	return fmt.Sprintf(`table ip sluice_bench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "%[1]s" ip daddr %[2]s meta l4proto { tcp, udp } th dport %[3]d dnat to numgen inc mod %[4]d map { %[5]s }
	}
}
table ip6 sluice_bench6 {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "%[1]s" ip6 daddr %[6]s meta l4proto { tcp, udp } th dport %[3]d dnat to numgen inc mod %[4]d map { %[7]s }
	}
}
`, r.paths[pathNft].dirIf, vip, vipPort, realCount, strings.Join(m4, ", "), vip6, strings.Join(m6, ", "))
}

// attachPass attaches an XDP_PASS program to the director's end ifName of a baseline's path, so
// that it receives the generator's XDP_TX frames at all (a veth hands them only to an end with
// an XDP program); they then take the kernel's path.
func (r *rig) attachPass(ifName string) error {
	pass, err := newNull(xdpPass)
	if err != nil {
		return err
	}
	r.env.Defer(pass.Close)
	closeLink, err := attach(r.dir, ifName, pass)
	if err != nil {
		return err
	}
	r.env.Defer(closeLink)
	return nil
}

// installNft installs the nftables DNAT baseline on its path. The director's end gets an
// XDP_PASS program so that it receives the generator's XDP_TX frames at all; they then take
// the kernel's path. The rules go with the namespace.
func (r *rig) installNft() error {
	if err := r.attachPass(r.paths[pathNft].dirIf); err != nil {
		return err
	}
	cmd := r.dir.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(r.nftRules())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install nftables rules: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// xdpMd is struct xdp_md, the context of a test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// genChunk is the frames one live-frames run sends: enough to amortise the syscall, few
// enough that a run ends soon after the deadline.
const genChunk = 1 << 16

// generate runs the generator program in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on each
// CPU of cpus at once, from the generator namespace, until total frames are sent or dur passes.
// Each frame the program returns XDP_TX for leaves through path p's veth. It returns the frames
// sent and the time taken.
func (r *rig) generate(prog *ebpf.Program, frame []byte, p path, cpus []int, total uint64, dur time.Duration) (uint64, time.Duration, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent uint64
		errs []error
	)
	per := total / uint64(len(cpus))
	start := time.Now()
	deadline := start.Add(dur)
	for _, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := r.generateOn(prog, frame, p.genIfindex, cpu, per, deadline)
			mu.Lock()
			defer mu.Unlock()
			sent += n
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return sent, time.Since(start), errors.Join(errs...)
}

// generateOn sends up to limit frames on one CPU until deadline. The thread is pinned to cpu for
// the duration and its affinity restored afterwards.
func (r *rig) generateOn(prog *ebpf.Program, frame []byte, ifindex, cpu int, limit uint64, deadline time.Time) (uint64, error) {
	var sent uint64
	err := r.gen.Do(func() error {
		var orig, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			return fmt.Errorf("read cpu affinity: %w", err)
		}
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pin generator to cpu %d: %w", cpu, err)
		}
		defer func() { _ = unix.SchedSetaffinity(0, &orig) }()
		ctx := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
		for sent < limit && time.Now().Before(deadline) {
			n := min(limit-sent, genChunk)
			if _, err := prog.Run(&ebpf.RunOptions{
				Data:    frame,
				Repeat:  uint32(n),
				Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
				Context: ctx,
			}); err != nil {
				return fmt.Errorf("generate on cpu %d: %w", cpu, err)
			}
			sent += n
		}
		return nil
	})
	return sent, err
}

// delivered sums the sinks' counters: packets per real server, and every counter (packets,
// SYNs, encapsulated, to a VIP) over all of them.
func (r *rig) delivered() (perReal []uint64, totals [sinkKeys]uint64, err error) {
	for i, m := range r.sinks {
		c, err := readCounters(m, sinkKeys)
		if err != nil {
			return nil, totals, fmt.Errorf("real server %d: %w", i, err)
		}
		perReal = append(perReal, c[sinkPackets])
		for k := range totals {
			totals[k] += c[k]
		}
	}
	return perReal, totals, nil
}
