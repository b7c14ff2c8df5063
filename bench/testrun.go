package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/test/packets"
)

// Per-packet costs come from BPF_PROG_TEST_RUN, which times the program in the kernel. With
// repeat > 1 the kernel runs the program again on the packet as the previous run left it, so
// each path is measured with a packet that run leaves as it found it:
//   - established hit: DR rewrites only the MAC addresses, to the same backend's each time, so
//     after the first run (which creates the flow and is not timed) every repeat is a hit on
//     the same flow; repeat is high.
//   - miss (not a VIP): the program passes the packet untouched; repeat is high.
//   - new flow: a repeat would be a hit, so every packet is a distinct flow run once
//     (repeat = 1), and the fixed cost of a run of one (timer reads around one program run),
//     measured with a program that only returns, is subtracted.

// hitRepeat is the repeat count for the idempotent paths.
const hitRepeat = 100000

// runOnce returns the kernel-timed duration of one run of prog on frame.
func runOnce(prog *ebpf.Program, frame []byte, repeat int) (time.Duration, error) {
	_, d, err := prog.Benchmark(frame, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("test run: %w", err)
	}
	return d, nil
}

// xdpRedirect is XDP_REDIRECT: DR, TUN and NAT to a real server behind another interface.
const xdpRedirect = 4

// runForwarded is runOnce for a packet Sluice must forward (XDP_TX or XDP_REDIRECT): a test run
// that passed or dropped it measured some other path, which is an error.
func runForwarded(prog *ebpf.Program, frame []byte, repeat int) (time.Duration, error) {
	ret, d, err := prog.Benchmark(frame, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("test run: %w", err)
	}
	if ret != xdpTx && ret != xdpRedirect {
		return 0, fmt.Errorf("test run: verdict %d, want the packet forwarded (XDP_TX or XDP_REDIRECT)", ret)
	}
	return d, nil
}

// meanOnce is the mean kernel-timed duration, in ns, of running prog once on each frame.
func meanOnce(prog *ebpf.Program, frames [][]byte) (float64, error) {
	return meanRuns(prog, frames, runOnce)
}

// meanForwarded is meanOnce for packets Sluice must forward.
func meanForwarded(prog *ebpf.Program, frames [][]byte) (float64, error) {
	return meanRuns(prog, frames, runForwarded)
}

func meanRuns(prog *ebpf.Program, frames [][]byte, run func(*ebpf.Program, []byte, int) (time.Duration, error)) (float64, error) {
	var total time.Duration
	for _, f := range frames {
		d, err := run(prog, f, 1)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return float64(total.Nanoseconds()) / float64(len(frames)), nil
}

// runOverhead is the mean duration of a run of one of a program that only returns.
func runOverhead(frames [][]byte) (float64, error) {
	null, err := newNull(xdpPass)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	return meanOnce(null, frames)
}

// flowFrame is the TCP packet of flow idx: an ACK, or a SYN when syn.
func flowFrame(idx uint32, syn bool, dst netip.Addr) []byte {
	return flowPacket(idx, director.TCP, syn, dst)
}

// flowPacket is the packet of flow idx over proto, as the generator sends it, to dst (IPv4 or
// IPv6: the source is then under srcBase6).
func flowPacket(idx uint32, proto director.Proto, syn bool, dst netip.Addr) []byte {
	base := srcBase
	if dst.Is6() {
		base = srcBase6
	}
	src, sport := flowSource(base, idx)
	flags := uint8(packets.ACK)
	if syn {
		flags = packets.SYN
	}
	return l4Frame(packets.Options{Src: src, Dst: dst, SrcPort: sport, DstPort: vipPort}, proto, flags)
}

// newFlowFrames returns n SYNs of flows no scenario has sent, starting at base.
func newFlowFrames(base uint32, n int) [][]byte {
	return newFlowPackets(ipv4, director.TCP, base, n)
}

// newFlowPackets returns the first packets (TCP: SYNs) of n flows of fam over proto, starting
// at flow index base.
func newFlowPackets(fam family, proto director.Proto, base uint32, n int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = flowPacket(base+uint32(i), proto, true, fam.vip)
	}
	return frames
}

// freshFlowBase hands out flow indices above any generator's, so every new-flow frame is new.
var freshFlowBase atomic.Uint32

func freshFlows(n int) uint32 {
	return 1<<30 + freshFlowBase.Add(uint32(n)) - uint32(n)
}

// hitCost is the ns per packet of an established flow's packets: flow idx is sent once to
// establish it (untimed), then timed over repeat runs.
func hitCost(prog *ebpf.Program, fam family, idx uint32, proto director.Proto, repeat int) (float64, error) {
	f := flowPacket(idx, proto, false, fam.vip)
	if _, err := runForwarded(prog, f, 1); err != nil {
		return 0, err
	}
	d, err := runForwarded(prog, f, repeat)
	return float64(d.Nanoseconds()), err
}

// newCost is the ns per packet of n new flows, net of the fixed cost of a run of one.
func newCost(prog *ebpf.Program, fam family, n int) (net, raw float64, err error) {
	return onceNet(prog, newFlowPackets(fam, director.TCP, freshFlows(n), n))
}

// coldHitCost establishes n fresh flows (two packets each: the second confirms the flow) and
// then times one more packet of each, run once, net of a run's fixed cost.
func coldHitCost(prog *ebpf.Program, fam family, n int) (net, raw float64, err error) {
	base := freshFlows(n)
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = flowPacket(base+uint32(i), director.TCP, false, fam.vip)
		for range 2 {
			if _, err := runForwarded(prog, frames[i], 1); err != nil {
				return 0, 0, err
			}
		}
	}
	return onceNet(prog, frames)
}

// onceNet is the mean cost of running prog once on each frame, net of a run's fixed cost, and
// the raw mean.
func onceNet(prog *ebpf.Program, frames [][]byte) (net, raw float64, err error) {
	raw, err = meanForwarded(prog, frames)
	if err != nil {
		return 0, 0, err
	}
	over, err := runOverhead(frames)
	if err != nil {
		return 0, 0, err
	}
	return raw - over, raw, nil
}

// scenarioCost is the test-run cost per packet of a scenario's traffic on l's program with
// l's tables as the scenario left them: established flows sampled over the scenario's flows,
// new flows, or the two alternating (mixed). DR established flows repeat each packet 1,000
// times (DR rewrites only MACs); TUN and NAT change the packet, so each sampled packet runs once,
// net of a run's fixed cost. Run it in the director's namespace: TUN and NAT look up the FIB.
func scenarioCost(l *loader.Loader, sc scenario) (float64, error) {
	prog := l.Program()
	fam := sc.family()
	est := func() (float64, error) {
		const samples = 64
		n := min(sc.flows, samples)
		if sc.method != director.MethodDR {
			frames := make([][]byte, n)
			for i := range frames {
				frames[i] = flowPacket(uint32(uint64(i)*uint64(sc.flows)/uint64(n)), sc.l4(), false, fam.vip)
			}
			c, _, err := onceNet(prog, frames)
			return c, err
		}
		var sum float64
		for i := range n {
			c, err := hitCost(prog, fam, uint32(uint64(i)*uint64(sc.flows)/uint64(n)), sc.l4(), 1000)
			if err != nil {
				return 0, err
			}
			sum += c
		}
		return sum / float64(n), nil
	}
	switch sc.mode {
	case genEstablished:
		return est()
	case genNew:
		c, _, err := onceNet(prog, newFlowPackets(fam, sc.l4(), freshFlows(1000), 1000))
		return c, err
	case genMixed:
		e, err := est()
		if err != nil {
			return 0, err
		}
		n, _, err := newCost(prog, fam, 1000)
		return (e + n) / 2, err
	}
	return 0, fmt.Errorf("scenario cost: unknown mode %d", sc.mode)
}

// staticResolver answers every next-hop lookup with one fixed interface and MAC addresses, so
// the test-run and control-plane measurements need no network (and time map writes, not ARP).
type staticResolver struct{}

func (staticResolver) VIPInterface(netip.Addr) (int, string, error) { return 1, "lo", nil }

func (staticResolver) NextHop(context.Context, netip.Addr) (loader.NextHop, error) {
	return loader.NextHop{
		Ifindex: 2,
		SrcMAC:  net.HardwareAddr{0x02, 0, 0, 0, 0, 0xd1},
		DstMAC:  net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb1},
	}, nil
}

// newUnattached loads Sluice's program unattached, with static next hops.
func newUnattached() (*loader.Loader, error) {
	return loader.New(loader.Options{
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Resolver: staticResolver{},
		NoAttach: true,
	})
}

// newStandalone loads Sluice's program unattached, configured with snap.
func newStandalone(ctx context.Context, snap director.Snapshot) (*loader.Loader, error) {
	l, err := newUnattached()
	if err != nil {
		return nil, err
	}
	if err := l.Apply(ctx, snap); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// PathCost is the test-run cost of one path through Sluice's program.
type PathCost struct {
	Path   string  // "established-hit", "new-flow", "established-hit-run-once" or "miss"
	Method string  // forwarding method: "dr", "tun" or "nat"
	Family string  // "ipv4" or "ipv6"
	Ns     float64 // per packet, net of a run's fixed cost where it was subtracted
	RawNs  float64 // as the kernel timed it
}

// PathCosts measures each path of Sluice's program with BPF_PROG_TEST_RUN on an unattached
// program configured with the rig's services, forwarding by DR, over IPv4 and IPv6. n scales
// the new-flow sample. (TUN and NAT look up the kernel's FIB, so sluice bench measures them in
// the rig's director namespace.)
func PathCosts(ctx context.Context, n int) ([]PathCost, error) {
	l, err := newStandalone(ctx, snapshot("rr", director.MethodDR))
	if err != nil {
		return nil, fmt.Errorf("load sluice for test runs: %w", err)
	}
	defer l.Close()
	var out []PathCost
	for _, fam := range []family{ipv4, ipv6} {
		c, err := methodCosts(l.Program(), director.MethodDR, fam, n)
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
	return out, nil
}

// methodCosts measures the paths of prog, configured to forward by method, for flows of fam.
// A repeated established hit is measured for DR only: TUN and NAT change the packet, so a
// repeat would not be the intended packet.
func methodCosts(prog *ebpf.Program, method director.Method, fam family, n int) ([]PathCost, error) {
	m := strings.ToLower(method.String())
	var out []PathCost
	if method == director.MethodDR {
		hit, err := hitCost(prog, fam, 7, director.TCP, hitRepeat)
		if err != nil {
			return nil, err
		}
		out = append(out, PathCost{Path: "established-hit", Ns: hit, RawNs: hit})
	}
	newNs, newRaw, err := newCost(prog, fam, n)
	if err != nil {
		return nil, err
	}
	// Established flows, each run once like the new flows above: the difference to new-flow
	// is the cost of creating a flow, measured the same way.
	coldNs, coldRaw, err := coldHitCost(prog, fam, n)
	if err != nil {
		return nil, err
	}
	missFrame := flowPacket(7, director.TCP, false, fam.vip.Next())
	ret, miss, err := prog.Benchmark(missFrame, hitRepeat, nil)
	if err != nil {
		return nil, fmt.Errorf("test run: %w", err)
	}
	if ret != xdpPass {
		return nil, fmt.Errorf("miss: verdict %d, want XDP_PASS", ret)
	}
	out = append(out,
		PathCost{Path: "new-flow", Ns: newNs, RawNs: newRaw},
		PathCost{Path: "established-hit-run-once", Ns: coldNs, RawNs: coldRaw},
		PathCost{Path: "miss", Ns: float64(miss.Nanoseconds()), RawNs: float64(miss.Nanoseconds())},
	)
	for i := range out {
		out[i].Method, out[i].Family = m, fam.name
	}
	return out, nil
}

// costResults turns path costs into report rows.
func costResults(costs []PathCost) []Result {
	var out []Result
	for _, c := range costs {
		out = append(out, Result{
			Kind: "testrun", Scenario: "testrun-" + c.Path, Mode: c.Method, Family: c.Family, Cores: 1,
			NsPerPacket: ptr(c.Ns), RawNsPerPacket: ptr(c.RawNs),
		})
	}
	return out
}

// rigCosts measures every path for each method and family on Sluice loaded in the rig's
// director namespace, whose FIB routes to the real servers (TUN and NAT look it up).
func (r *rig) rigCosts(ctx context.Context, methods []director.Method, n int) ([]PathCost, error) {
	var out []PathCost
	for _, method := range methods {
		l, err := r.startSluice(ctx, method, 0, false)
		if err != nil {
			return nil, err
		}
		err = r.dir.Do(func() error {
			for _, fam := range []family{ipv4, ipv6} {
				c, err := methodCosts(l.Program(), method, fam, n)
				if err != nil {
					return fmt.Errorf("%s %s: %w", method, fam.name, err)
				}
				out = append(out, c...)
			}
			return nil
		})
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// flowKey is struct flow_key of bpf/structs.h: src[16], dst[16], sport, dport (network
// order), proto, family, 2 bytes of padding.
func flowKey(fam family, idx uint32, proto director.Proto) [40]byte {
	var k [40]byte
	src, sport := flowSource(fam.srcBase, idx)
	k[37] = 2 // AF_INET
	if fam.vip.Is6() {
		s, d := src.As16(), fam.vip.As16()
		copy(k[0:], s[:])
		copy(k[16:], d[:])
		k[37] = 10 // AF_INET6
	} else {
		s4, d4 := src.As4(), fam.vip.As4()
		copy(k[0:], s4[:])
		copy(k[16:], d4[:])
	}
	k[32], k[33] = byte(sport>>8), byte(sport)
	k[34], k[35] = byte(vipPort>>8), byte(vipPort)
	k[36] = byte(proto)
	return k
}

// flowsMap finds the flow table among the maps l's program uses.
func flowsMap(l *loader.Loader) (*ebpf.Map, error) {
	info, err := l.Program().Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		if err == nil && mi.Name == "flows" {
			return m, nil
		}
		m.Close()
	}
	return nil, errors.New("program has no flows map")
}

// establishedKept is the fraction of a sample of the established flows 0..flows-1 over proto
// still in l's flow table.
func establishedKept(l *loader.Loader, fam family, flows uint32, proto director.Proto) (float64, error) {
	m, err := flowsMap(l)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	const samples = 4096
	n := min(flows, samples)
	var val [16]byte
	kept := 0
	for i := range n {
		k := flowKey(fam, uint32(uint64(i)*uint64(flows)/uint64(n)), proto)
		err := m.Lookup(k[:], val[:])
		switch {
		case err == nil:
			kept++
		case !errors.Is(err, ebpf.ErrKeyNotExist):
			return 0, fmt.Errorf("look up flow: %w", err)
		}
	}
	return float64(kept) / float64(n), nil
}
