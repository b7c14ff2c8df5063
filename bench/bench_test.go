package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
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
			name: "new", mode: genNew, flags: packets.SYN,
			want: func(k, cpu uint32) (uint32, bool) { return newFlowBase + (k<<6 | cpu), true },
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
			tmpl := template(packets.DefaultSrcMAC, packets.DefaultDstMAC, srcBase, vip, vipPort, tt.proto, tt.flags)
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
				in := flowFrame(12345, k%2 == 0, vip.Next())
				in[22] = 3 // TTL
				copy(in, "\x02\x00\x00\x00\x00\x99\x02\x00\x00\x00\x00\x98")
				out := make([]byte, len(tmpl))
				ret, err := prog.Run(&ebpf.RunOptions{Data: in, DataOut: out})
				if err != nil {
					t.Fatal(err)
				}
				if ret != xdpTx {
					t.Fatalf("run %d: verdict %d, want XDP_TX", k, ret)
				}
				sport := uint32(binary.BigEndian.Uint16(out[offSport:]))
				cpu := (sport - portBase) & 63
				idx, syn := tt.want(k, cpu)
				want := flowPacket(idx, tt.proto, syn, vip)
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

// TestSinkCounts checks that the sink counts IPv4 packets and SYNs, drops them, and passes ARP.
func TestSinkCounts(t *testing.T) {
	needRoot(t)
	prog, counters, err := newSink()
	if err != nil {
		t.Fatal(err)
	}
	defer counters.Close()
	defer prog.Close()
	tests := []struct {
		name    string
		frame   []byte
		verdict uint32
	}{
		{"arp passes", packets.ARPRequest(packets.Options{}), xdpPass},
		{"ack counted", flowFrame(1, false, vip), xdpDrop},
		{"syn counted", flowFrame(2, true, vip), xdpDrop},
		{"udp counted", packets.UDP(packets.Options{SrcPort: 1, DstPort: 2}), xdpDrop},
		{"runt passes", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, xdpPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ret, _, err := prog.Test(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if ret != tt.verdict {
				t.Errorf("verdict %d, want %d", ret, tt.verdict)
			}
		})
	}
	got, err := readCounters(counters, sinkKeys)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{3, 1}, got); diff != "" {
		t.Errorf("counters (packets, syn) (-want +got):\n%s", diff)
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
	kinds := map[string]int{}
	for _, r := range results {
		kinds[r.Kind]++
		switch r.Kind {
		case "throughput":
			if r.Delivered == 0 || deref(r.Mpps) <= 0 || deref(r.CeilingMpps) <= 0 {
				t.Errorf("%s: delivered %d, mpps %v, ceiling %v: want traffic through Sluice and the ceiling", r.Scenario, r.Delivered, deref(r.Mpps), deref(r.CeilingMpps))
			}
			_, nftErr := exec.LookPath("nft")
			switch {
			case nftErr == nil && deref(r.NftMpps) <= 0:
				t.Errorf("%s: nft baseline %v, want traffic through nftables DNAT", r.Scenario, r.NftMpps)
			case nftErr != nil && os.Getenv("CI") != "":
				t.Errorf("nft(8) missing under CI: scripts/install-deps installs it")
			}
			if len(r.PerReal) != realCount {
				t.Fatalf("%s: %d real servers counted, want %d", r.Scenario, len(r.PerReal), realCount)
			}
			for i, n := range r.PerReal {
				if n == 0 {
					t.Errorf("%s: real server %d received nothing (per real %v)", r.Scenario, i, r.PerReal)
				}
			}
			if r.EstablishedKept == nil || *r.EstablishedKept != 1 {
				t.Errorf("%s: established flows kept %v, want all", r.Scenario, r.EstablishedKept)
			}
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
	if diff := cmp.Diff(map[string]int{"throughput": 1, "testrun": 4, "control": 3}, kinds); diff != "" {
		t.Errorf("result kinds (-want +got):\n%s", diff)
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
