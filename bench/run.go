// Package bench measures Sluice's data path (issue 9): `sluice bench` builds a rig of network
// namespaces — a generator, the director running Sluice's XDP program configured through the
// production API (loader.New, then Apply of a director.Snapshot), and sinks standing in for
// the real servers — over veth pairs with native XDP, and reports packets per second for each
// scenario next to two baselines that take turns with it in the same run: the ceiling (an XDP
// program that only swaps MACs and bounces the frame) and nftables DNAT in the kernel's stack. It also times the
// per-packet cost of each path with BPF_PROG_TEST_RUN and the control plane's Apply.
//
// The generator is BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, the technique
// of xdp-trafficgen): the kernel runs a small XDP program over a template frame, the program
// writes a flow's source address and port derived from a per-CPU counter, and its XDP_TX sends
// the frame out of the generator's veth. Sinks are XDP programs counting what each real server
// receives.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/test/packets"
)

// Options configures Run.
type Options struct {
	// Quick runs fewer scenarios for less time (make bench: under two minutes).
	Quick bool
	// Smoke runs one tiny scenario, only to check that the harness works (CI).
	Smoke bool
	// Duration is how long each forwarder is measured per scenario, split over Rounds; 0
	// means the mode's default.
	Duration time.Duration
	// Rounds is how many times Sluice and the baselines take turns per scenario; 0 means the
	// mode's default. Each rate reported is the best round: other load on the machine only
	// ever lowers a rate.
	Rounds int
	// Generator sends the UDP scenarios' traffic: GeneratorLiveFrames (the default when
	// empty), GeneratorPktgen (kernel pktgen; an error when the kernel has none) or
	// GeneratorAuto (pktgen when the kernel has it). pktgen sends UDP only: TCP and mixed
	// scenarios always use live frames. With pktgen, Quick and Smoke add UDP scenarios it
	// drives (established UDP flows, IPv6).
	Generator string
	// Filter, a regular expression, keeps the throughput scenarios whose name matches it: the
	// scenario, mode, family and protocol as the progress shows them ("established dr ipv4
	// TCP"). Empty keeps them all.
	Filter string
	// ThroughputOnly skips the test-run costs and the control-plane timings.
	ThroughputOnly bool
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

// Result is one row of the report: a throughput scenario, a per-packet test-run cost or a
// control-plane timing (Kind). Fields that were not measured are nil (null in JSON).
type Result struct {
	Kind     string `json:"kind"` // "throughput", "testrun" or "control"
	Scenario string `json:"scenario"`
	Mode     string `json:"mode"`             // forwarding method: "dr", "tun" or "nat"
	Family   string `json:"family"`           // "ipv4" or "ipv6"
	Proto    string `json:"proto,omitempty"`  // TCP or UDP (throughput)
	Flows    int    `json:"flows"`            // established flows the scenario cycles over
	Cores    int    `json:"cores"`            // CPUs generating (and forwarding) at once
	Rounds   int    `json:"rounds,omitempty"` // turns Sluice and the baselines took; rates are the best

	Mpps        *float64 `json:"mpps"`         // Sluice, packets delivered to the real servers
	CeilingMpps *float64 `json:"ceiling_mpps"` // MAC swap and XDP_TX, same run
	NftMpps     *float64 `json:"nft_mpps"`     // nftables DNAT in the kernel's stack, same run
	IPVSMpps    *float64 `json:"ipvs_mpps"`    // kernel IPVS, same run; null: this kernel has no IPVS
	NsPerPacket *float64 `json:"ns_per_packet"`
	// Generator is what sent the scenario's traffic: "live-frames" or "pktgen" (throughput).
	Generator string `json:"generator,omitempty"`
	// RawNsPerPacket is NsPerPacket before subtracting a test run's fixed cost (testrun rows).
	RawNsPerPacket *float64 `json:"raw_ns_per_packet,omitempty"`

	Sent      uint64   `json:"sent,omitempty"`      // frames the generator sent
	Delivered uint64   `json:"delivered,omitempty"` // frames the real servers received
	PerReal   []uint64 `json:"per_real,omitempty"`  // frames per real server
	// Encapsulated is how many of the delivered frames were encapsulated (TUN: IPIP or IPv6 in
	// IPv6), ToVIP how many were still addressed to the VIP (DR; NAT rewrites the destination).
	Encapsulated uint64 `json:"encapsulated,omitempty"`
	ToVIP        uint64 `json:"to_vip,omitempty"`
	// IPVSPerReal, IPVSEncapsulated and IPVSToVIP are PerReal, Encapsulated and ToVIP of the
	// IPVS baseline's best round.
	IPVSPerReal      []uint64 `json:"ipvs_per_real,omitempty"`
	IPVSEncapsulated uint64   `json:"ipvs_encapsulated,omitempty"`
	IPVSToVIP        uint64   `json:"ipvs_to_vip,omitempty"`
	// EstablishedMpps is the established flows' share of Mpps (mixed scenario).
	EstablishedMpps *float64 `json:"established_mpps,omitempty"`
	// EstablishedKept is the fraction of established flows still pinned in the flow table
	// after the scenario (mixed: did the SYN flood evict them?).
	EstablishedKept *float64 `json:"established_kept,omitempty"`
	// Seconds is a control-plane timing.
	Seconds *float64 `json:"seconds,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// scenario is one throughput measurement.
type scenario struct {
	name   string
	method director.Method // forwarding method; DR unless set
	v6     bool            // IPv6 (else IPv4)
	proto  director.Proto  // TCP unless set
	mode   genMode
	flows  uint32
	nft    bool // also measure the nftables baseline
	// oneArm puts the real servers on the generator's segment: Sluice sends back out of the
	// interface the packet came in on (XDP_TX), as the ceiling does, and the frames are counted
	// back at the generator. DR only.
	oneArm bool
}

func scenarios(o Options) []scenario {
	out := baseScenarios(o)
	if o.Generator == GeneratorPktgen || o.Generator == GeneratorAuto {
		// Quick and smoke runs have no UDP scenario besides the IPv4 flood: give pktgen
		// established flows and IPv6 to drive.
		flows := uint32(1000)
		if o.Smoke {
			flows = 16
		}
		switch {
		case o.Smoke, o.Quick:
			out = append(out,
				scenario{name: "established-udp", mode: genEstablished, flows: flows, proto: director.UDP, nft: true},
				scenario{name: "udp-flood", mode: genNew, v6: true, proto: director.UDP})
		default:
			out = append(out, scenario{name: "udp-flood", mode: genNew, v6: true, proto: director.UDP, nft: true})
		}
	}
	return out
}

func baseScenarios(o Options) []scenario {
	switch {
	case o.Smoke:
		// Every method and family once, and a flood: the smoke test checks that each reaches
		// every real server in the form its method promises.
		return []scenario{
			{name: "established", mode: genEstablished, flows: 16, nft: true},
			{name: "established", mode: genEstablished, flows: 16, v6: true, nft: true},
			{name: "established", method: director.MethodTUN, mode: genEstablished, flows: 16},
			{name: "established", method: director.MethodTUN, mode: genEstablished, flows: 16, v6: true},
			{name: "established", method: director.MethodNAT, mode: genEstablished, flows: 16},
			{name: "established", method: director.MethodNAT, mode: genEstablished, flows: 16, v6: true},
			{name: "udp-flood", mode: genNew, proto: director.UDP},
			{name: "established-one-armed", mode: genEstablished, flows: 16, oneArm: true},
		}
	case o.Quick:
		return []scenario{
			{name: "established", mode: genEstablished, flows: 1000, nft: true},
			{name: "established", mode: genEstablished, flows: 65536},
			{name: "established", mode: genEstablished, flows: 1000, v6: true, nft: true},
			{name: "established", method: director.MethodTUN, mode: genEstablished, flows: 1000},
			{name: "established", method: director.MethodNAT, mode: genEstablished, flows: 1000},
			{name: "syn-flood", mode: genNew},
			{name: "udp-flood", mode: genNew, proto: director.UDP},
			{name: "mixed", mode: genMixed, flows: 1000},
			{name: "established-one-armed", mode: genEstablished, flows: 1000, oneArm: true},
			{name: "syn-flood-one-armed", mode: genNew, oneArm: true},
		}
	}
	out := []scenario{
		{name: "established", mode: genEstablished, flows: 1, nft: true},
		{name: "established", mode: genEstablished, flows: 1000, nft: true},
		{name: "established", mode: genEstablished, flows: 65536, nft: true},
		{name: "established", mode: genEstablished, flows: 1 << 20},
	}
	// Every method over both families, 1k established flows.
	for _, m := range []director.Method{director.MethodDR, director.MethodTUN, director.MethodNAT} {
		for _, v6 := range []bool{false, true} {
			if m == director.MethodDR && !v6 {
				continue // above
			}
			out = append(out, scenario{name: "established", method: m, v6: v6, mode: genEstablished, flows: 1000, nft: true})
		}
	}
	return append(out,
		scenario{name: "established-udp", mode: genEstablished, flows: 1000, proto: director.UDP, nft: true},
		scenario{name: "syn-flood", mode: genNew, nft: true},
		scenario{name: "syn-flood", mode: genNew, v6: true, nft: true},
		scenario{name: "udp-flood", mode: genNew, proto: director.UDP, nft: true},
		scenario{name: "mixed", mode: genMixed, flows: 1000, nft: true},
		scenario{name: "established-one-armed", mode: genEstablished, flows: 1000, oneArm: true},
		scenario{name: "established-one-armed", mode: genEstablished, flows: 1000, v6: true, oneArm: true},
		scenario{name: "syn-flood-one-armed", mode: genNew, oneArm: true},
		scenario{name: "mixed-one-armed", mode: genMixed, flows: 1000, oneArm: true},
	)
}

// String is the scenario's name as Options.Filter matches it: "established dr ipv4 TCP".
func (sc scenario) String() string {
	return fmt.Sprintf("%s %s %s %s", sc.name, strings.ToLower(sc.method.String()), sc.family().name, sc.l4())
}

// family is the scenario's address family.
func (sc scenario) family() family {
	if sc.v6 {
		return ipv6
	}
	return ipv4
}

// l4 is the scenario's transport protocol.
func (sc scenario) l4() director.Proto {
	if sc.proto == 0 {
		return director.TCP
	}
	return sc.proto
}

// flowTableFor sizes Sluice's flow table so a scenario's established flows fit with room for
// the LRU's per-CPU lists.
func flowTableFor(flows uint32) uint32 {
	if flows > loader.DefaultFlowTableSize/2 {
		return flows * 2
	}
	return 0
}

// Run builds the rig, runs the scenarios, the test-run costs and the control-plane timings,
// and tears everything down. It needs root and a kernel with BPF_F_TEST_XDP_LIVE_FRAMES (5.18).
func Run(ctx context.Context, o Options) (results []Result, err error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	dur := o.Duration
	if dur == 0 {
		switch {
		case o.Smoke:
			dur = 200 * time.Millisecond
		case o.Quick:
			dur = time.Second
		default:
			dur = 5 * time.Second
		}
	}
	rounds := o.Rounds
	if rounds <= 0 {
		rounds = 5
		if o.Smoke {
			rounds = 1
		}
	}
	ncpu := runtime.NumCPU()
	coreSets := [][]int{{0}}
	if ncpu > 1 && !o.Smoke {
		all := make([]int, ncpu)
		for i := range all {
			all[i] = i
		}
		coreSets = append(coreSets, all)
	}

	switch o.Generator {
	case "", GeneratorLiveFrames, GeneratorPktgen, GeneratorAuto:
	default:
		return nil, fmt.Errorf("generator %q: want %s, %s or %s", o.Generator, GeneratorLiveFrames, GeneratorPktgen, GeneratorAuto)
	}
	var filter *regexp.Regexp
	if o.Filter != "" {
		if filter, err = regexp.Compile(o.Filter); err != nil {
			return nil, fmt.Errorf("scenario filter: %w", err)
		}
	}
	havePktgen := (o.Generator == GeneratorPktgen || o.Generator == GeneratorAuto) && PktgenLoaded()
	if o.Generator == GeneratorPktgen && !havePktgen {
		return nil, errors.New("generator pktgen: this kernel has no pktgen (no /proc/net/pktgen, and modprobe pktgen failed)")
	}
	r, err := newRig(havePktgen)
	if err != nil {
		return nil, fmt.Errorf("build rig: %w", err)
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	switch {
	case o.Generator == GeneratorPktgen && !r.pktgen:
		return nil, errors.New("generator pktgen: the generator namespace has no /proc/net/pktgen")
	case r.pktgen:
		fmt.Fprintln(progress, "generator: kernel pktgen for the UDP scenarios; TCP and mixed scenarios use live frames (pktgen sends UDP only)")
	}
	if r.ipvs != nil {
		note := ""
		if !r.haveNft {
			note = " (without nft(8), no rule keeps packets Sluice would pass to the stack from IPVS)"
		}
		fmt.Fprintln(progress, "baseline: kernel IPVS takes turns with the others"+note)
	} else {
		fmt.Fprintln(progress, "baseline: no IPVS in this kernel (ipvs_mpps null)")
	}

	if !r.pktgen {
		o.Generator = GeneratorLiveFrames // auto without pktgen: no scenarios added for it
	}
	var scs []scenario
	for _, sc := range scenarios(o) {
		if filter == nil || filter.MatchString(sc.String()) {
			scs = append(scs, sc)
		}
	}
	steps := len(scs) * len(coreSets)
	step := 0
	for _, sc := range scs {
		for _, cpus := range coreSets {
			if err := ctx.Err(); err != nil {
				return results, err
			}
			res, err := r.measure(ctx, sc, cpus, dur, rounds)
			if err != nil {
				return results, fmt.Errorf("scenario %s flows=%d cores=%d: %w", sc.name, sc.flows, len(cpus), err)
			}
			results = append(results, res)
			step++
			fmt.Fprintf(progress, "[%d/%d] %s\n", step, steps, res.progressLine())
		}
	}

	if o.ThroughputOnly {
		return results, nil
	}
	methods := []director.Method{director.MethodDR, director.MethodTUN, director.MethodNAT}
	n := 10000
	if o.Smoke {
		n = 100
	}
	costs, err := r.rigCosts(ctx, methods, n)
	if err != nil {
		return results, fmt.Errorf("test-run costs: %w", err)
	}
	for _, c := range costResults(costs) {
		fmt.Fprintf(progress, "test run %s %s %s: %.1f ns/packet (%.1f raw)\n", c.Scenario, c.Mode, c.Family, *c.NsPerPacket, *c.RawNsPerPacket)
		results = append(results, c)
	}

	cp, err := controlPlane(ctx, o)
	if err != nil {
		return results, err
	}
	for _, c := range cp {
		fmt.Fprintf(progress, "control plane %s: %.3f s\n", c.Scenario, *c.Seconds)
	}
	return append(results, cp...), nil
}

func (res Result) progressLine() string {
	s := fmt.Sprintf("%s %s %s %s flows=%d cores=%d (%s): sluice %.3f Mpps, ceiling %.3f Mpps", res.Scenario, res.Mode, res.Family, res.Proto, res.Flows, res.Cores, res.Generator, deref(res.Mpps), deref(res.CeilingMpps))
	if res.NftMpps != nil {
		s += fmt.Sprintf(", nft %.3f Mpps", *res.NftMpps)
	}
	if res.IPVSMpps != nil {
		s += fmt.Sprintf(", ipvs %.3f Mpps", *res.IPVSMpps)
	}
	return s
}

// genFor returns the generator of a scenario sent from cpus CPUs into path p.
func (r *rig) genFor(sc scenario, cpus int, p path) (*generator, error) {
	flags := uint8(packets.ACK)
	if sc.mode == genNew {
		flags = packets.SYN
	}
	fam := sc.family()
	frame := template(p.genMAC, p.dirMAC, fam.srcBase, fam.vip, vipPort, sc.l4(), flags)
	prog, counter, err := newGenerator(genSpec{mode: sc.mode, flows: sc.flows, cpus: uint32(cpus), template: frame})
	if err != nil {
		return nil, err
	}
	return &generator{prog: prog, counter: counter, frame: frame}, nil
}

// warm establishes a scenario's flows on path p: two packets per flow (the second confirms it
// in Sluice), so that the measurement that follows finds every flow established.
func (r *rig) warm(sc scenario, p path) error {
	if sc.flows == 0 {
		return nil
	}
	fam := sc.family()
	frame := template(p.genMAC, p.dirMAC, fam.srcBase, fam.vip, vipPort, sc.l4(), packets.ACK)
	prog, counter, err := newGenerator(genSpec{mode: genEstablished, flows: sc.flows, pairs: true, template: frame})
	if err != nil {
		return err
	}
	defer prog.Close()
	defer counter.Close()
	_, _, err = r.generate(prog, frame, p, []int{0}, 2*uint64(sc.flows), time.Minute)
	return err
}

// sample is one measurement of one forwarder.
type sample struct {
	mpps    float64
	sent    uint64
	perReal []uint64         // delivered per real server (Sluice, nftables)
	counts  [sinkKeys]uint64 // every sink counter over the real servers: SYNs, encapsulated, to a VIP
	elapsed time.Duration
}

// send runs g (or, with pktgen, kernel pktgen for sc) into path p for dur and reads what
// arrived: at the real servers, or, for the ceiling, back at the generator.
func (r *rig) send(sc scenario, g *generator, pktgen bool, p int, cpus []int, dur time.Duration) (sample, error) {
	read := func() ([]uint64, [sinkKeys]uint64, error) {
		// The ceiling, and Sluice one-armed, send back to the generator's segment.
		var back *ebpf.Map
		switch {
		case p == pathCeiling:
			back = r.bounced
		case p == pathSluice && sc.oneArm:
			back = r.returned
		}
		if back != nil {
			var totals [sinkKeys]uint64
			c, err := readCounters(back, sinkKeys)
			if err != nil {
				return nil, totals, err
			}
			copy(totals[:], c)
			return c[:1], totals, nil
		}
		return r.delivered()
	}
	before, cBefore, err := read()
	if err != nil {
		return sample{}, err
	}
	var (
		sent    uint64
		elapsed time.Duration
	)
	if pktgen {
		devs, derr := pktgenDevs(sc, r.paths[p], cpus, dur)
		if derr != nil {
			return sample{}, derr
		}
		sent, elapsed, err = r.pktgenSend(devs, dur)
	} else {
		sent, elapsed, err = r.generate(g.prog, g.frame, r.paths[p], cpus, ^uint64(0), dur)
	}
	if err != nil {
		return sample{}, err
	}
	after, cAfter, err := read()
	if err != nil {
		return sample{}, err
	}
	s := sample{sent: sent, elapsed: elapsed}
	for k := range s.counts {
		s.counts[k] = cAfter[k] - cBefore[k]
	}
	var total uint64
	for i := range after {
		s.perReal = append(s.perReal, after[i]-before[i])
		total += after[i] - before[i]
	}
	s.mpps = mpps(total, elapsed)
	return s, nil
}

// measure runs one scenario: Sluice (configured through the production API, on a fresh flow
// table), the ceiling, nftables and IPVS take turns for rounds rounds of dur/rounds each, so
// that all see the same load on a shared machine; each keeps its best round.
func (r *rig) measure(ctx context.Context, sc scenario, cpus []int, dur time.Duration, rounds int) (Result, error) {
	usePktgen := r.pktgen && pktgenUsable(sc, len(cpus))
	res := Result{
		Kind: "throughput", Scenario: sc.name, Mode: strings.ToLower(sc.method.String()), Family: sc.family().name,
		Proto: sc.l4().String(), Flows: int(sc.flows), Cores: len(cpus), Rounds: rounds, Generator: GeneratorLiveFrames,
	}
	if usePktgen {
		res.Generator = GeneratorPktgen
	}
	if sc.oneArm {
		res.Note = "one-armed: the real servers share the ingress segment; Sluice sends with XDP_TX, as the ceiling does, and the frames are counted back at the generator"
	}
	l, err := r.startSluice(ctx, sc.method, flowTableFor(sc.flows), sc.oneArm)
	if err != nil {
		return res, err
	}
	defer l.Close()
	paths := []int{pathSluice, pathCeiling}
	if sc.nft && r.haveNft {
		paths = append(paths, pathNft)
	}
	if r.ipvs != nil {
		if err := r.applyIPVS(ctx, sc.method); err != nil {
			return res, err
		}
		paths = append(paths, pathIPVS)
	}
	var best [numPaths]sample
	for _, p := range paths {
		if p == pathCeiling {
			continue
		}
		if err := r.warm(sc, r.paths[p]); err != nil {
			return res, fmt.Errorf("establish flows: %w", err)
		}
	}
	for range rounds {
		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var g *generator
			if !usePktgen {
				if g, err = r.genFor(sc, len(cpus), r.paths[p]); err != nil {
					return res, err
				}
			}
			s, err := r.send(sc, g, usePktgen, p, cpus, dur/time.Duration(rounds))
			if g != nil {
				g.Close()
			}
			if err != nil {
				return res, err
			}
			if s.mpps >= best[p].mpps {
				best[p] = s
			}
		}
	}

	b := best[pathSluice]
	res.Mpps, res.CeilingMpps = ptr(b.mpps), ptr(best[pathCeiling].mpps)
	if sc.nft && r.haveNft {
		res.NftMpps = ptr(best[pathNft].mpps)
	}
	if r.ipvs != nil {
		v := best[pathIPVS]
		res.IPVSMpps, res.IPVSPerReal = ptr(v.mpps), v.perReal
		res.IPVSEncapsulated, res.IPVSToVIP = v.counts[sinkEncap], v.counts[sinkToVIP]
	}
	res.Sent, res.PerReal = b.sent, b.perReal
	for _, n := range b.perReal {
		res.Delivered += n
	}
	if sc.mode == genMixed {
		res.EstablishedMpps = ptr(mpps(res.Delivered-b.counts[sinkSYN], b.elapsed))
	}
	res.Encapsulated, res.ToVIP = b.counts[sinkEncap], b.counts[sinkToVIP]
	if sc.flows > 0 {
		kept, err := establishedKept(l, sc.family(), sc.flows, sc.l4())
		if err != nil {
			return res, err
		}
		res.EstablishedKept = &kept
	}
	var ns float64
	err = r.dir.Do(func() error {
		var err error
		ns, err = scenarioCost(l, sc)
		return err
	})
	if err != nil {
		return res, err
	}
	res.NsPerPacket = &ns
	return res, nil
}

func mpps(packets uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(packets) / d.Seconds() / 1e6
}

func ptr[T any](v T) *T { return &v }

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
