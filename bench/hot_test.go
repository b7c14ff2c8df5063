package bench

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/test/packets"
)

// BenchmarkHot times paths with caches as warm as in a forwarding loop, which a test run of one
// packet per syscall (BenchmarkPath in loader/, new-flow in sluice bench) cannot: the kernel does
// not restore the packet between the repeats of a test run, so each repeat runs the generator
// program first, which writes a flow's headers from its template (a new flow every repeat, or
// the next of N established flows) and tail-calls the program under test. ns/packet is the
// repeated run's mean minus that of the generator alone (returning instead of tail-calling),
// measured right after on the same template: the program's own cost per packet, hot.
//
// Sluice's DR paths come first; then single map operations of the new-flow path on maps of
// Sluice's sizes (mapOpProg), so their costs can be compared with the whole path's.
func BenchmarkHot(b *testing.B) {
	needRoot(b)
	const (
		keySize, valueSize = 40, 16
		noCommonLRU        = 1 << 1 // BPF_F_NO_COMMON_LRU
	)
	type target struct {
		name string
		// load returns the program to tail-call and, for established flows, how many.
		load  func(b *testing.B) *ebpf.Program
		mode  genMode
		flows uint32
		v6    bool
		// warm runs before timing: establish the flows, or fill the tables to their steady
		// state under a flood (every insert evicts).
		warm uint32
	}
	sluice := func(b *testing.B) *ebpf.Program { return benchLoader(b) }
	mapOp := func(typ ebpf.MapType, flags, entries uint32, op asm.BuiltinFunc) func(*testing.B) *ebpf.Program {
		return func(b *testing.B) *ebpf.Program {
			m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_flows", Type: typ, Flags: flags,
				KeySize: keySize, ValueSize: valueSize, MaxEntries: entries})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			prog, err := mapOpProg(m, op)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { prog.Close() })
			return prog
		}
	}
	for _, tc := range []target{
		{name: "sluice/established-1", load: sluice, mode: genEstablished, flows: 1, warm: 2},
		{name: "sluice/established-1k", load: sluice, mode: genEstablished, flows: 1000, warm: 2000},
		{name: "sluice/established-64k", load: sluice, mode: genEstablished, flows: 65536, warm: 2 * 65536},
		{name: "sluice/new-flow", load: sluice, mode: genNew, warm: loader.DefaultUnconfirmedTableSize + 70000},
		{name: "sluice/new-flow-ipv6", load: sluice, mode: genNew, v6: true, warm: loader.DefaultUnconfirmedTableSize + 70000},
		{name: "sluice/mixed-1k", load: sluice, mode: genMixed, flows: 1000, warm: 2*loader.DefaultUnconfirmedTableSize + 70000},
		{name: "map/lookup-miss-lru-256k", load: mapOp(ebpf.LRUHash, 0, 262144, asm.FnMapLookupElem), mode: genNew},
		{name: "map/insert-lru-64k-full", load: mapOp(ebpf.LRUHash, 0, 65536, asm.FnMapUpdateElem), mode: genNew, warm: 70000},
		{name: "map/insert-lru-64k-full-no-common-lru", load: mapOp(ebpf.LRUHash, noCommonLRU, 65536, asm.FnMapUpdateElem), mode: genNew, warm: 70000},
		{name: "map/insert-lru-1m-full", load: mapOp(ebpf.LRUHash, 0, 1<<20, asm.FnMapUpdateElem), mode: genNew, warm: 1<<20 + 70000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			target := tc.load(b)
			fam := ipv4
			if tc.v6 {
				fam = ipv6
			}
			flags := uint8(packets.ACK)
			if tc.mode == genNew {
				flags = packets.SYN
			}
			tmpl := template(packets.DefaultSrcMAC, packets.DefaultDstMAC, fam.srcBase, fam.vip, vipPort, director.TCP, flags)
			calls, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_tail", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer calls.Close()
			// gen loads a generator whose packet counter starts at start on every CPU, so
			// that the measured new flows are not the warm-up's again.
			gen := func(s genSpec, start uint64) (*ebpf.Program, func()) {
				s.template = tmpl
				prog, counter, err := newGenerator(s)
				if err != nil {
					b.Fatal(err)
				}
				perCPU := make([]uint64, ebpf.MustPossibleCPU())
				for i := range perCPU {
					perCPU[i] = start
				}
				if err := counter.Put(uint32(0), perCPU); err != nil {
					b.Fatal(err)
				}
				return prog, func() { prog.Close(); counter.Close() }
			}
			// Loaded before the program under test enters the array, the generator sets the
			// array's owner, and the error of an incompatible program is the insert's.
			withTarget, done := gen(genSpec{mode: tc.mode, flows: tc.flows, tailCall: calls}, uint64(tc.warm))
			defer done()
			if err := calls.Put(uint32(0), target); err != nil {
				b.Fatalf("put the program under test in the tail-call array: %v", err)
			}
			if tc.warm > 0 {
				// Established flows: two packets each, in pairs (the second confirms).
				ws := genSpec{mode: tc.mode, flows: tc.flows, tailCall: calls}
				if tc.mode == genEstablished {
					ws.pairs = true
				}
				warm, done := gen(ws, 0)
				ret, _, err := warm.Benchmark(tmpl, int(tc.warm), nil)
				done()
				if err != nil {
					b.Fatal(err)
				}
				if ret == 0 {
					b.Fatal("warm-up: the tail call failed (XDP_ABORTED)")
				}
			}
			alone, doneAlone := gen(genSpec{mode: tc.mode, flows: tc.flows}, 0)
			defer doneAlone()
			ret, per, err := withTarget.Benchmark(tmpl, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if ret == 0 {
				b.Fatal("the tail call failed (XDP_ABORTED)")
			}
			if strings.HasPrefix(tc.name, "sluice/") {
				if ret != xdpRedirect && ret != xdpTx {
					b.Fatalf("verdict %d: Sluice did not forward the generated packet", ret)
				}
			}
			b.StopTimer()
			_, base, err := alone.Benchmark(tmpl, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "raw-ns/packet")
			b.ReportMetric(float64(base.Nanoseconds()), "gen-ns/packet")
			b.ReportMetric(float64((per - base).Nanoseconds()), "ns/packet")
		})
	}
}
