package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/netns"
	"github.com/sluice-lb/sluice/test/packets"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: loads BPF programs")
	}
}

// TestGeneratorFrames checks, packet by packet, that the generator writes the flow the scenario
// means with correct IPv4 and TCP checksums: packets.TCP builds the expected frame from scratch.
func TestGeneratorFrames(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		mode  genMode
		flows uint32
		pairs bool
		cpus  uint32
		proto director.Proto
		v6    bool
		flags uint8
		// want returns the flow index and SYN-ness of run k; cpu is read from the frame.
		want func(k, cpu uint32) (uint32, bool)
	}{
		{
			name: "established", mode: genEstablished, flows: 5, flags: packets.ACK,
			want: func(k, _ uint32) (uint32, bool) { return k % 5, false },
		},
		{
			name: "established udp", mode: genEstablished, flows: 4, proto: director.UDP,
			want: func(k, _ uint32) (uint32, bool) { return k % 4, false },
		},
		{
			name: "established in pairs", mode: genEstablished, flows: 3, pairs: true, flags: packets.ACK,
			want: func(k, _ uint32) (uint32, bool) { return (k / 2) % 3, false },
		},
		{
			// Pinned to CPU 0, which sends flows 0, 2 and 4 of 5.
			name: "established share of cpu 0 of 2", mode: genEstablished, flows: 5, cpus: 2, flags: packets.ACK,
			want: func(k, _ uint32) (uint32, bool) { return (k % 3) * 2, false },
		},
		{
			name: "established ipv6", mode: genEstablished, flows: 5, v6: true, flags: packets.ACK,
			want: func(k, _ uint32) (uint32, bool) { return k % 5, false },
		},
		{
			name: "established udp ipv6", mode: genEstablished, flows: 4, v6: true, proto: director.UDP,
			want: func(k, _ uint32) (uint32, bool) { return k % 4, false },
		},
		{
			name: "new", mode: genNew, flags: packets.SYN,
			want: func(k, cpu uint32) (uint32, bool) { return newFlowBase + (k<<6 | cpu), true },
		},
		{
			name: "new ipv6", mode: genNew, v6: true, flags: packets.SYN,
			want: func(k, cpu uint32) (uint32, bool) { return newFlowBase + (k<<6 | cpu), true },
		},
		{
			name: "udp flood", mode: genNew, proto: director.UDP,
			want: func(k, cpu uint32) (uint32, bool) { return newFlowBase + (k<<6 | cpu), true },
		},
		{
			name: "mixed ipv6", mode: genMixed, flows: 3, v6: true, flags: packets.ACK,
			want: func(k, cpu uint32) (uint32, bool) {
				if k%2 == 0 {
					return (k / 2) % 3, false
				}
				return newFlowBase + ((k/2)<<6 | cpu), true
			},
		},
		{
			name: "mixed", mode: genMixed, flows: 3, flags: packets.ACK,
			want: func(k, cpu uint32) (uint32, bool) {
				if k%2 == 0 {
					return (k / 2) % 3, false
				}
				return newFlowBase + ((k/2)<<6 | cpu), true
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fam := ipv4
			if tt.v6 {
				fam = ipv6
			}
			tmpl := template(packets.DefaultSrcMAC, packets.DefaultDstMAC, fam.srcBase, fam.vip, vipPort, tt.proto, tt.flags)
			lay, err := layoutOf(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			prog, counter, err := newGenerator(genSpec{mode: tt.mode, flows: tt.flows, pairs: tt.pairs, cpus: tt.cpus, template: tmpl})
			if err != nil {
				t.Fatal(err)
			}
			defer counter.Close()
			defer prog.Close()
			// The counter is per CPU: keep every run on one.
			pinCPU(t)
			for k := range uint32(8) {
				// Live frames arrive as the last path left them: start from a frame
				// some other path rewrote.
				in := flowFrame(12345, k%2 == 0, fam.vip.Next())
				if tt.v6 {
					in[14+7] = 3 // hop limit
				} else {
					in[22] = 3 // TTL
				}
				copy(in, "\x02\x00\x00\x00\x00\x99\x02\x00\x00\x00\x00\x98")
				out := make([]byte, len(tmpl))
				ret, err := prog.Run(&ebpf.RunOptions{Data: in, DataOut: out})
				if err != nil {
					t.Fatal(err)
				}
				if ret != xdpTx {
					t.Fatalf("run %d: verdict %d, want XDP_TX", k, ret)
				}
				sport := uint32(binary.BigEndian.Uint16(out[lay.sport:]))
				cpu := (sport - portBase) & 63
				idx, syn := tt.want(k, cpu)
				want := flowPacket(idx, tt.proto, syn, fam.vip)
				if diff := cmp.Diff(want, out); diff != "" {
					t.Errorf("run %d (flow %d): frame mismatch (-want +got):\n%s", k, idx, diff)
				}
			}
		})
	}
}

// pinCPU keeps the test's goroutine on one OS thread bound to CPU 0 until the test ends.
func pinCPU(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	var orig, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if unix.SchedSetaffinity(0, &orig) == nil {
			runtime.UnlockOSThread()
		}
	})
}

// TestSinkCounts checks that the sink counts IPv4 and IPv6 packets, SYNs, encapsulated packets
// and packets to a VIP, drops them, and passes ARP and neighbour discovery.
func TestSinkCounts(t *testing.T) {
	needRoot(t)
	prog, counters, err := newSink()
	if err != nil {
		t.Fatal(err)
	}
	defer counters.Close()
	defer prog.Close()
	real4, real6 := realAddr(0), realAddr6(0)
	ipip := packets.IPIP(packets.Options{Src: netip.MustParseAddr("10.77.1.1"), Dst: real4}, flowFrame(3, true, vip)[14:])
	ip6ip6 := packets.IP6IP6(packets.Options{Src: dirAddr6(0), Dst: real6}, flowFrame(3, true, vip6)[14:])
	nat := func(f []byte, off int, a netip.Addr) []byte {
		copy(f[off:], a.AsSlice()) // checksums do not matter to the sink
		return f
	}
	tests := []struct {
		name    string
		frame   []byte
		verdict uint32
		want    [sinkKeys]uint64 // packets, SYNs, encapsulated, to a VIP
	}{
		{"arp passes", packets.ARPRequest(packets.Options{}), xdpPass, [4]uint64{}},
		{"icmpv6 passes (neighbour discovery)", packets.ICMPv6TooBig(packets.Options{Src: dirAddr6(0), Dst: real6}, 1280, flowFrame(1, false, vip6)[14:]), xdpPass, [4]uint64{}},
		{"ipv6 hop-by-hop first (MLD) passes", func() []byte { f := flowFrame(1, false, vip6); f[14+6] = 0; return f }(), xdpPass, [4]uint64{}},
		{"ack to vip", flowFrame(1, false, vip), xdpDrop, [4]uint64{1, 0, 0, 1}},
		{"syn to vip", flowFrame(2, true, vip), xdpDrop, [4]uint64{1, 1, 0, 1}},
		{"udp elsewhere", packets.UDP(packets.Options{SrcPort: 1, DstPort: 2}), xdpDrop, [4]uint64{1, 0, 0, 0}},
		{"ipv6 ack to vip", flowFrame(1, false, vip6), xdpDrop, [4]uint64{1, 0, 0, 1}},
		{"ipv6 syn to vip", flowFrame(2, true, vip6), xdpDrop, [4]uint64{1, 1, 0, 1}},
		{"ipv6 udp to vip", flowPacket(2, director.UDP, false, vip6), xdpDrop, [4]uint64{1, 0, 0, 1}},
		{"ipip", ipip, xdpDrop, [4]uint64{1, 0, 1, 0}},
		{"ipv6 in ipv6", ip6ip6, xdpDrop, [4]uint64{1, 0, 1, 0}},
		{"nat syn", nat(flowFrame(4, true, vip), 30, real4), xdpDrop, [4]uint64{1, 1, 0, 0}},
		{"ipv6 nat syn", nat(flowFrame(4, true, vip6), 38, real6), xdpDrop, [4]uint64{1, 1, 0, 0}},
		{"runt passes", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, xdpPass, [4]uint64{}},
	}
	var prev []uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if prev == nil {
				prev = make([]uint64, sinkKeys)
			}
			ret, _, err := prog.Test(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if ret != tt.verdict {
				t.Errorf("verdict %d, want %d", ret, tt.verdict)
			}
			got, err := readCounters(counters, sinkKeys)
			if err != nil {
				t.Fatal(err)
			}
			var delta [sinkKeys]uint64
			for k := range delta {
				delta[k] = got[k] - prev[k]
			}
			prev = got
			if diff := cmp.Diff(tt.want, delta); diff != "" {
				t.Errorf("counted (packets, syn, encapsulated, to vip) (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBounceSwapsMACs checks the ceiling program.
func TestBounceSwapsMACs(t *testing.T) {
	needRoot(t)
	prog, err := newBounce()
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	in := flowFrame(1, false, vip)
	ret, out, err := prog.Test(in)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, in...)
	copy(want[0:6], in[6:12])
	copy(want[6:12], in[0:6])
	if ret != xdpTx {
		t.Errorf("verdict %d, want XDP_TX", ret)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("frame (-want +got):\n%s", diff)
	}
}

// TestSmoke runs the harness end to end on a tiny scenario: it proves traffic flows through
// Sluice's XDP program to every real server and that every report field is filled, never a
// timing threshold (timings belong to make bench).
func TestSmoke(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		netns.SkipPrivileged(t, "needs ip(8)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	results, err := Run(ctx, Options{Smoke: true, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	kinds, modes := map[string]int{}, map[string]int{}
	for _, r := range results {
		kinds[r.Kind]++
		name := fmt.Sprintf("%s %s %s %s", r.Scenario, r.Mode, r.Family, r.Proto)
		switch r.Kind {
		case "throughput":
			if r.Delivered == 0 || deref(r.Mpps) <= 0 || deref(r.CeilingMpps) <= 0 {
				t.Errorf("%s: delivered %d, mpps %v, ceiling %v: want traffic through Sluice and the ceiling", r.Scenario, r.Delivered, deref(r.Mpps), deref(r.CeilingMpps))
			}
			_, nftErr := exec.LookPath("nft")
			switch {
			case nftErr == nil && r.Mode == "dr" && r.Scenario == "established" && deref(r.NftMpps) <= 0:
				t.Errorf("%s: nft baseline %v, want traffic through nftables DNAT", name, r.NftMpps)
			case nftErr != nil && os.Getenv("CI") != "":
				t.Errorf("nft(8) missing under CI: scripts/install-deps installs it")
			}
			// One-armed, the frames come back to the generator's segment: one counter there.
			want := realCount
			if strings.HasSuffix(r.Scenario, "-one-armed") {
				want = 1
			}
			if len(r.PerReal) != want {
				t.Fatalf("%s: %d real servers counted, want %d", r.Scenario, len(r.PerReal), want)
			}
			for i, n := range r.PerReal {
				if n == 0 {
					t.Errorf("%s: real server %d received nothing (per real %v)", r.Scenario, i, r.PerReal)
				}
			}
			if r.Flows > 0 && (r.EstablishedKept == nil || *r.EstablishedKept != 1) {
				t.Errorf("%s: established flows kept %v, want all", name, r.EstablishedKept)
			}
			// What reached the real servers is what the method promises: DR leaves the VIP
			// as the destination, TUN encapsulates, NAT rewrites the destination.
			wantEncap, wantToVIP := uint64(0), uint64(0)
			switch r.Mode {
			case "dr":
				wantToVIP = r.Delivered
			case "tun":
				wantEncap = r.Delivered
			case "nat":
			default:
				t.Errorf("%s: mode %q", name, r.Mode)
			}
			if r.Encapsulated != wantEncap || r.ToVIP != wantToVIP {
				t.Errorf("%s: of %d delivered, %d encapsulated and %d to the VIP; want %d and %d", name, r.Delivered, r.Encapsulated, r.ToVIP, wantEncap, wantToVIP)
			}
			modes[r.Mode+" "+r.Family]++
			if r.NsPerPacket == nil || *r.NsPerPacket <= 0 {
				t.Errorf("%s: ns_per_packet %v, want a measurement", r.Scenario, r.NsPerPacket)
			}
		case "testrun":
			if r.NsPerPacket == nil {
				t.Errorf("%s: no ns_per_packet", r.Scenario)
			}
		case "control":
			if r.Seconds == nil || *r.Seconds <= 0 {
				t.Errorf("%s: no timing", r.Scenario)
			}
		}
	}
	// DR over each family, TUN and NAT over each family: 4 paths (repeated hit, new flow, hit
	// run once, miss) for DR, 3 for TUN and NAT.
	if diff := cmp.Diff(map[string]int{"throughput": 8, "testrun": 2*4 + 4*3, "control": 3}, kinds); diff != "" {
		t.Errorf("result kinds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"dr ipv4": 3, "dr ipv6": 1, "tun ipv4": 1, "tun ipv6": 1, "nat ipv4": 1, "nat ipv6": 1}, modes); diff != "" {
		t.Errorf("throughput scenarios by method and family (-want +got):\n%s", diff)
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, results); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(js.Bytes(), &objs); err != nil {
		t.Fatalf("json output does not parse: %v", err)
	}
	for _, key := range []string{"scenario", "mode", "family", "flows", "cores", "mpps", "ceiling_mpps", "nft_mpps", "ns_per_packet"} {
		if _, ok := objs[0][key]; !ok {
			t.Errorf("json object lacks %q: %v", key, objs[0])
		}
	}
	var table, svg bytes.Buffer
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "established") {
		t.Errorf("table lacks the scenario:\n%s", table.String())
	}
	if err := WriteSVG(&svg, results); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svg.String(), "<svg") || !strings.Contains(svg.String(), "</svg>") {
		t.Errorf("not an SVG document:\n%s", svg.String())
	}
}

// Per-packet costs of each path through Sluice's XDP program, with BPF_PROG_TEST_RUN. See the
// comment on hitRepeat for why each packet is processed as intended on every repeat.
func BenchmarkPathEstablishedHit(b *testing.B) {
	prog := benchLoader(b)
	f := flowFrame(7, false, vip)
	if _, err := runOnce(prog, f, 1); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		d, err := runOnce(prog, f, 1000)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkPathNewFlow(b *testing.B) {
	prog := benchLoader(b)
	null, err := newNull(xdpPass)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	var total, over time.Duration
	for b.Loop() {
		f := newFlowFrames(freshFlows(1), 1)[0]
		d, err := runOnce(prog, f, 1)
		if err != nil {
			b.Fatal(err)
		}
		o, err := runOnce(null, f, 1)
		if err != nil {
			b.Fatal(err)
		}
		total, over = total+d, over+o
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "raw-ns/packet")
	b.ReportMetric(float64((total-over).Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkPathMiss(b *testing.B) {
	prog := benchLoader(b)
	f := flowFrame(7, false, vip.Next())
	var total time.Duration
	for b.Loop() {
		d, err := runOnce(prog, f, 1000)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
}

func benchLoader(b *testing.B) *ebpf.Program {
	b.Helper()
	needRoot(b)
	l, err := newStandalone(context.Background(), snapshot("rr", director.MethodDR))
	if err != nil {
		b.Fatal(fmt.Errorf("load sluice: %w", err))
	}
	b.Cleanup(func() { l.Close() })
	return l.Program()
}
