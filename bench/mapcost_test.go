package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluice-lb/sluice/director"
)

// BenchmarkMapOp breaks the new-flow path down into the map operations it is made of, each
// timed alone the way the new-flow path is (a test run of one packet per b.N iteration, a
// distinct flow each, net of a run of a program that only returns): a tiny program copies the
// packet's first 40 bytes after the Ethernet header (addresses and ports: a distinct key per
// flow, the size of struct flow_key) to its stack and does one map operation with it. The maps
// have the sizes and key and value sizes of Sluice's flow tables (bpf/maps.h).
//
// Together with BenchmarkPath in loader/, this says where a new flow's time goes; see
// BENCHMARKS.md, "Where a new flow's time goes".
func BenchmarkMapOp(b *testing.B) {
	needRoot(b)
	const (
		flowTable   = 262144 // FLOW_TABLE_SIZE
		unconfirmed = 65536  // UNCONFIRMED_TABLE_SIZE
		keySize     = 40     // struct flow_key
		valueSize   = 16     // struct flow_value
		noCommonLRU = 1 << 1 // BPF_F_NO_COMMON_LRU
	)
	// Sluice's own paths, in the same run for comparison.
	b.Run("sluice/new-flow", func(b *testing.B) {
		prog := benchLoader(b)
		benchOnce(b, prog, func(i int) []byte { return flowPacket(uint32(i), director.TCP, true, vip) }, freshFlows(1<<20))
	})
	b.Run("sluice/established-run-once", func(b *testing.B) {
		prog := benchLoader(b)
		base := freshFlows(1 << 15)
		for i := range min(b.N, 1<<15) {
			f := flowPacket(base+uint32(i), director.TCP, false, vip)
			for range 2 {
				if _, err := runForwarded(prog, f, 1); err != nil {
					b.Fatal(err)
				}
			}
		}
		benchOnce(b, prog, func(i int) []byte { return flowPacket(uint32(i%(1<<15)), director.TCP, false, vip) }, base)
	})
	for _, bc := range []struct {
		name    string
		typ     ebpf.MapType
		flags   uint32
		entries uint32
		op      asm.BuiltinFunc
		// prefill fills the map to capacity from user space first (with keys no flow
		// uses), so that every insert evicts, as in a flood's steady state.
		prefill bool
		// hits pre-inserts the keys of the flows the benchmark sends.
		hits bool
	}{
		{name: "lookup-miss/lru-hash-256k", typ: ebpf.LRUHash, entries: flowTable, op: asm.FnMapLookupElem},
		{name: "lookup-hit/lru-hash-256k", typ: ebpf.LRUHash, entries: flowTable, op: asm.FnMapLookupElem, hits: true},
		{name: "insert/lru-hash-64k-empty", typ: ebpf.LRUHash, entries: unconfirmed, op: asm.FnMapUpdateElem},
		{name: "insert/lru-hash-64k-full", typ: ebpf.LRUHash, entries: unconfirmed, op: asm.FnMapUpdateElem, prefill: true},
		{name: "insert/lru-hash-64k-full-no-common-lru", typ: ebpf.LRUHash, flags: noCommonLRU, entries: unconfirmed, op: asm.FnMapUpdateElem, prefill: true},
		{name: "insert/hash-64k-empty", typ: ebpf.Hash, entries: unconfirmed, op: asm.FnMapUpdateElem},
		{name: "delete-hit/lru-hash-64k", typ: ebpf.LRUHash, entries: unconfirmed, op: asm.FnMapDeleteElem, hits: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_flows", Type: bc.typ, Flags: bc.flags,
				KeySize: keySize, ValueSize: valueSize, MaxEntries: bc.entries})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			prog, err := mapOpProg(m, bc.op)
			if err != nil {
				b.Fatal(err)
			}
			defer prog.Close()
			var val [valueSize]byte
			if bc.prefill {
				var k [keySize]byte
				for i := range bc.entries {
					k[0], k[1], k[2], k[3], k[39] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24), 0xff
					if err := m.Put(k[:], val[:]); err != nil {
						b.Fatal(err)
					}
				}
			}
			// Flows cycle over 32k distinct ones when they must be present (hits), else
			// each iteration sends a flow never sent before.
			base := freshFlows(1 << 20)
			if bc.hits {
				for i := range min(b.N, 1<<15) {
					if err := m.Put(flowPacket(base+uint32(i), director.TCP, true, vip)[14:14+keySize], val[:]); err != nil {
						b.Fatal(err)
					}
				}
			}
			if bc.hits && bc.op == asm.FnMapDeleteElem && b.N > 1<<15 {
				b.Fatal("delete benchmark has 32768 keys: use -benchtime at most 32768x")
			}
			benchOnce(b, prog, func(i int) []byte {
				if bc.hits {
					i %= 1 << 15
				}
				return flowPacket(uint32(i), director.TCP, true, vip)
			}, base)
		})
	}
}

// benchOnce runs prog once on frame(base+i) for i in 0..b.N-1, each run followed by a run of
// a program that only returns on the same frame, and reports the kernel-timed mean per packet,
// raw and net of the null program's.
func benchOnce(b *testing.B, prog *ebpf.Program, frame func(i int) []byte, base uint32) {
	b.Helper()
	null, err := newNull(xdpPass)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	var total, over time.Duration
	i := 0
	for b.Loop() {
		f := frame(int(base) + i)
		d, err := runOnce(prog, f, 1)
		if err != nil {
			b.Fatal(err)
		}
		o, err := runOnce(null, f, 1)
		if err != nil {
			b.Fatal(err)
		}
		total, over = total+d, over+o
		i++
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "raw-ns/packet")
	b.ReportMetric(float64((total-over).Nanoseconds())/float64(b.N), "ns/packet")
}

// mapOpProg assembles an XDP program that copies the 40 bytes after the Ethernet header to a key
// on its stack and calls op (lookup, update with a zero value, or delete) on m with it.
func mapOpProg(m *ebpf.Map, op asm.BuiltinFunc) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14+40),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
	}
	for i := range int16(5) {
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, 14+8*i, asm.DWord),
			asm.StoreMem(asm.RFP, -40+8*i, asm.R5, asm.DWord),
		)
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R5, 0),
		asm.StoreMem(asm.RFP, -56, asm.R5, asm.DWord),
		asm.StoreMem(asm.RFP, -48, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -40),
	)
	switch op {
	case asm.FnMapUpdateElem:
		insns = append(insns,
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -56),
			asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		)
	case asm.FnMapLookupElem, asm.FnMapDeleteElem:
	default:
		return nil, fmt.Errorf("map op %v: want lookup, update or delete", op)
	}
	insns = append(insns,
		op.Call(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_mapop", Type: ebpf.XDP, AttachType: ebpf.AttachXDP, Instructions: insns, License: "GPL"})
	if err != nil {
		return nil, fmt.Errorf("load map op program: %w", err)
	}
	return prog, nil
}
