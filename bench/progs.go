package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// The rig's own XDP programs (generator, sink counter, ceiling, null) are a few dozen
// instructions each, so they are assembled here with cilium/ebpf's asm package rather than
// compiled from C: no second bpf2go pipeline, and nothing to regenerate.

// XDP verdicts.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTx   = 3
)

// Offsets in the generator's IPv4 frame: Ethernet, IPv4 without options, TCP without options.
const (
	offEtherType = 12
	offIPCsum    = 14 + 10
	offSrcLow    = 14 + 12 + 2 // low 16 bits of the source address
	offIPProto   = 14 + 9
	offSport     = 14 + 20
	offTCPFlags  = 14 + 20 + 13
	offTCPCsum   = 14 + 20 + 16
	offUDPCsum   = 14 + 20 + 6
	frameMin     = 14 + 20 + 20
)

// layout is where the generator's fields sit in a frame of one address family.
type layout struct {
	ipCsum   int // IPv4 header checksum; -1 for IPv6, which has none
	srcLow   int // low 16 bits of the source address
	ipProto  int // IPv4 protocol or IPv6 next header
	sport    int
	tcpFlags int
	tcpCsum  int
	udpCsum  int
	hdrEnd   int // Ethernet, IP and TCP headers: the bytes the generator restores
}

var (
	layout4 = layout{ipCsum: offIPCsum, srcLow: offSrcLow, ipProto: offIPProto, sport: offSport,
		tcpFlags: offTCPFlags, tcpCsum: offTCPCsum, udpCsum: offUDPCsum, hdrEnd: frameMin}
	layout6 = layout{ipCsum: -1, srcLow: 14 + 8 + 14, ipProto: 14 + 6, sport: 14 + 40,
		tcpFlags: 14 + 40 + 13, tcpCsum: 14 + 40 + 16, udpCsum: 14 + 40 + 6, hdrEnd: 14 + 40 + 20}
)

// layoutOf returns the layout of frame by its EtherType.
func layoutOf(frame []byte) (layout, error) {
	if len(frame) < 14 {
		return layout{}, fmt.Errorf("frame of %d bytes has no Ethernet header", len(frame))
	}
	switch et := binary.BigEndian.Uint16(frame[offEtherType:]); et {
	case 0x0800:
		return layout4, nil
	case 0x86dd:
		return layout6, nil
	default:
		return layout{}, fmt.Errorf("frame has EtherType %#04x, want IPv4 or IPv6", et)
	}
}

// Sink counter keys.
const (
	sinkPackets = 0 // IPv4 and IPv6 packets received
	sinkSYN     = 1 // of which TCP with SYN set (not encapsulated)
	sinkEncap   = 2 // of which encapsulated: IPIP or IPv6 in IPv6 (TUN)
	sinkToVIP   = 3 // of which addressed to a VIP (DR; NAT rewrites it, TUN wraps it)
	sinkKeys    = 4
)

// Bits of the sink's r9: what to count besides the packet.
const (
	sinkBitSYN   = 1
	sinkBitEncap = 2
	sinkBitToVIP = 4
)

// flowSpace is how a flow index becomes a source: the low 16 bits of the source address are
// index>>15 and the source port is 1024+index&0x7fff, so 2^31 flows are distinct.
const (
	portBits = 15
	portBase = 1024
)

// flowSource returns the source address and port of flow idx under base (a /16).
func flowSource(base netip.Addr, idx uint32) (netip.Addr, uint16) {
	port := uint16(portBase + idx&(1<<portBits-1))
	if base.Is6() {
		a := base.As16()
		a[14], a[15] = byte(idx>>(portBits+8)), byte(idx>>portBits)
		return netip.AddrFrom16(a), port
	}
	a := base.As4()
	a[2], a[3] = byte(idx>>(portBits+8)), byte(idx>>portBits)
	return netip.AddrFrom4(a), port
}

// genMode is what the generator sends.
type genMode int

const (
	// genEstablished cycles over flows established flows (ACK packets).
	genEstablished genMode = iota
	// genNew sends a new flow (a SYN from a fresh source, or a UDP datagram) with every packet.
	genNew
	// genMixed alternates: even packets cycle over the established flows, odd ones are SYNs of
	// new flows.
	genMixed
)

// genSpec describes a generator program.
type genSpec struct {
	mode  genMode
	flows uint32 // established flows; > 0 unless mode is genNew
	// pairs sends each established flow two packets in a row (genEstablished): the data path
	// pins a flow at its first packet and confirms it at its second, so a warm-up in pairs
	// leaves every flow confirmed even when there are more flows than unconfirmed slots.
	pairs bool
	// cpus is how many CPUs send at once (numbered from 0). Each sends its own share of the
	// established flows, flow i from CPU i%cpus, as a NIC's RSS keeps a flow on one CPU.
	cpus uint32
	// tailCall, when set, makes the program tail-call the program at index 0 of this program
	// array instead of returning XDP_TX (XDP_ABORTED if the call fails): a repeated test run
	// then hands that program a new packet every repeat (BenchmarkHot).
	tailCall *ebpf.Map
	// template is the frame the kernel hands the program; its source port and the low 16
	// bits of its source address are zero, its TCP flags ACK (genEstablished, genMixed) or
	// SYN (genNew).
	template []byte
}

// newFlowBase keeps new flows' indices clear of the established ones.
const newFlowBase = 1 << 24

// template builds the generator's frame to vip:port from srcBase (a /16), with zeroed source
// port and low source address bits so the program can add them to the checksums.
func template(srcMAC, dstMAC net.HardwareAddr, srcBase, vip netip.Addr, port uint16, proto director.Proto, flags uint8) []byte {
	src, _ := flowSource(srcBase, 0)
	return l4Frame(packets.Options{SrcMAC: srcMAC, DstMAC: dstMAC, Src: src, Dst: vip, DstPort: port}, proto, flags)
}

// l4Frame fills in o as a TCP segment with flags or a UDP datagram, padded to a 60-byte frame
// (64 bytes on the wire with the FCS, the minimum) over IPv4; over IPv6 (o.Dst) both are
// 74-byte frames (a TCP header and no payload).
func l4Frame(o packets.Options, proto director.Proto, flags uint8) []byte {
	if o.Dst.Is6() {
		if proto == director.UDP {
			o.Payload = make([]byte, 12)
			return packets.UDP6(o)
		}
		o.TCPFlags, o.Seq, o.Ack = flags, 1, 1
		return packets.TCP6(o)
	}
	if proto == director.UDP {
		o.Payload = make([]byte, 60-14-20-8)
		return packets.UDP(o)
	}
	o.TCPFlags, o.Seq, o.Ack = flags, 1, 1
	o.Payload = make([]byte, 60-14-20-20)
	return packets.TCP(o)
}

// csumBase is the one's-complement sum a checksum field's value c stands for (~c).
func csumBase(c uint16) int32 { return int32(^c) }

// newGenerator assembles the generator: it derives a flow index from a per-CPU packet counter,
// rewrites the headers from the template, writes the flow's source address and port (and TCP
// flags in mixed mode), patches both checksums incrementally, and returns XDP_TX. With
// BPF_F_TEST_XDP_LIVE_FRAMES the kernel recycles frame pages between runs without restoring
// them, so the program writes every header byte on every run.
func newGenerator(s genSpec) (*ebpf.Program, *ebpf.Map, error) {
	lay, err := layoutOf(s.template)
	if err != nil {
		return nil, nil, fmt.Errorf("generator template: %w", err)
	}
	if len(s.template) < lay.hdrEnd {
		return nil, nil, fmt.Errorf("generator template: %d bytes, want at least %d", len(s.template), lay.hdrEnd)
	}
	if s.mode != genNew && s.flows == 0 {
		return nil, nil, fmt.Errorf("generator: established flows must be at least 1")
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Name: "gen_counter", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("create generator counter: %w", err)
	}
	offL4Csum := lay.tcpCsum
	switch s.template[lay.ipProto] {
	case 6:
	case 17:
		// UDP has no flags to turn a packet into a SYN: mixed traffic is TCP only.
		if s.mode == genMixed {
			counter.Close()
			return nil, nil, fmt.Errorf("generator: mixed traffic is TCP only")
		}
		offL4Csum = lay.udpCsum
	default:
		counter.Close()
		return nil, nil, fmt.Errorf("generator template: IP protocol %d, want TCP or UDP", s.template[lay.ipProto])
	}
	var ipBase int32
	if lay.ipCsum >= 0 {
		ipBase = csumBase(binary.BigEndian.Uint16(s.template[lay.ipCsum:]))
	}
	l4Base := csumBase(binary.BigEndian.Uint16(s.template[offL4Csum:]))
	// Turning the flags word from ACK into SYN adds ~old + new to the TCP sum.
	ackWord := uint16(5<<12 | packets.ACK)
	synWord := uint16(5<<12 | packets.SYN)
	synDelta := int32(^ackWord) + int32(synWord)

	// Registers: r6 ctx, r7 data, r8 counter value, r9 flow index; r2-r5 scratch.
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, int32(lay.hdrEnd)),
		asm.JGT.Reg(asm.R4, asm.R3, "drop"),

		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, counter.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Add.Imm(asm.R2, 1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),
	}
	// Restore the headers from the template: a recycled page holds whatever the path it took
	// left there (a DR rewrite changes the MACs; the kernel's forwarding decrements the TTL and
	// DNAT rewrites the destination), and the checksum patches below assume the template.
	for off := 0; off+4 <= lay.hdrEnd; off += 4 {
		insns = append(insns, asm.StoreImm(asm.R7, int16(off), int64(int32(binary.LittleEndian.Uint32(s.template[off:]))), asm.Word))
	}
	if lay.hdrEnd%4 != 0 {
		off := lay.hdrEnd &^ 3
		insns = append(insns, asm.StoreImm(asm.R7, int16(off), int64(binary.LittleEndian.Uint16(s.template[off:])), asm.Half))
	}
	// Each mode leaves the flow index in r9 and, in r5, what its TCP flags add to the TCP
	// checksum (set after helper calls, which clobber r1-r5).
	switch s.mode {
	case genEstablished:
		insns = append(insns, asm.Mov.Reg(asm.R9, asm.R8))
		if s.pairs {
			insns = append(insns, asm.RSh.Imm(asm.R9, 1))
		}
		insns = append(insns, s.shareOfFlows()...)
		insns = append(insns, asm.Mov.Imm(asm.R5, 0))
	case genNew:
		// Counters are per CPU: interleave CPUs so no two send the same flow.
		insns = append(insns,
			asm.FnGetSmpProcessorId.Call(),
			asm.And.Imm(asm.R0, 63),
			asm.Mov.Reg(asm.R9, asm.R8),
			asm.LSh.Imm(asm.R9, 6),
			asm.Or.Reg(asm.R9, asm.R0),
			asm.Add.Imm(asm.R9, newFlowBase),
			asm.Mov.Imm(asm.R5, 0),
		)
	case genMixed:
		insns = append(insns,
			asm.StoreImm(asm.R7, int16(lay.tcpFlags), packets.ACK, asm.Byte),
			asm.Mov.Reg(asm.R9, asm.R8),
			asm.RSh.Imm(asm.R9, 1),
			asm.Mov.Reg(asm.R2, asm.R8),
			asm.And.Imm(asm.R2, 1),
			asm.JNE.Imm(asm.R2, 0, "syn"),
		)
		insns = append(insns, s.shareOfFlows()...)
		insns = append(insns,
			asm.Mov.Imm(asm.R5, 0),
			asm.Ja.Label("write"),
			asm.FnGetSmpProcessorId.Call().WithSymbol("syn"),
			asm.And.Imm(asm.R0, 63),
			asm.LSh.Imm(asm.R9, 6),
			asm.Or.Reg(asm.R9, asm.R0),
			asm.Add.Imm(asm.R9, newFlowBase),
			asm.StoreImm(asm.R7, int16(lay.tcpFlags), packets.SYN, asm.Byte),
			asm.Mov.Imm(asm.R5, synDelta),
		)
	default:
		counter.Close()
		return nil, nil, fmt.Errorf("generator: unknown mode %d", s.mode)
	}
	insns = append(insns,
		// r2 = low source address bits, r3 = source port.
		asm.Mov.Reg(asm.R2, asm.R9).WithSymbol("write"),
		asm.RSh.Imm(asm.R2, portBits),
		asm.And.Imm(asm.R2, 0xffff),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.And.Imm(asm.R3, 1<<portBits-1),
		asm.Add.Imm(asm.R3, portBase),

		asm.Mov.Reg(asm.R4, asm.R2),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.StoreMem(asm.R7, int16(lay.srcLow), asm.R4, asm.Half),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.StoreMem(asm.R7, int16(lay.sport), asm.R4, asm.Half),
	)
	if lay.ipCsum >= 0 {
		// IPv4 header checksum: ~(base + low source bits), folded.
		insns = append(insns,
			asm.Mov.Imm(asm.R4, ipBase),
			asm.Add.Reg(asm.R4, asm.R2),
		)
		insns = append(insns, fold(asm.R4)...)
		insns = append(insns, asm.StoreMem(asm.R7, int16(lay.ipCsum), asm.R4, asm.Half))
	}
	insns = append(insns,
		// TCP or UDP checksum: the pseudo-header holds the source address, the header the port.
		asm.Mov.Imm(asm.R4, l4Base),
		asm.Add.Reg(asm.R4, asm.R2),
		asm.Add.Reg(asm.R4, asm.R3),
		asm.Add.Reg(asm.R4, asm.R5),
	)
	insns = append(insns, fold(asm.R4)...)
	insns = append(insns, asm.StoreMem(asm.R7, int16(offL4Csum), asm.R4, asm.Half))
	if s.tailCall != nil {
		insns = append(insns,
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, s.tailCall.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, 0), // XDP_ABORTED: the tail call failed
			asm.Return(),
		)
	} else {
		insns = append(insns,
			asm.Mov.Imm(asm.R0, xdpTx),
			asm.Return(),
		)
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_gen", Type: ebpf.XDP, AttachType: ebpf.AttachXDP, Instructions: insns, License: "GPL"})
	if err != nil {
		counter.Close()
		return nil, nil, fmt.Errorf("load generator: %w", err)
	}
	return prog, counter, nil
}

// shareOfFlows turns the count in r9 into this CPU's next established flow:
// ((count % share) * cpus + cpu) % flows, where share = ceil(flows / cpus). It clobbers r0-r5.
func (s genSpec) shareOfFlows() asm.Instructions {
	cpus := max(s.cpus, 1)
	share := (s.flows + cpus - 1) / cpus
	return asm.Instructions{
		asm.FnGetSmpProcessorId.Call(),
		asm.Mod.Imm(asm.R9, int32(share)),
		asm.Mul.Imm(asm.R9, int32(cpus)),
		asm.Add.Reg(asm.R9, asm.R0),
		asm.Mod.Imm(asm.R9, int32(s.flows)),
	}
}

// fold turns the one's-complement sum in r (at most 2^20) into a checksum in network order.
func fold(r asm.Register) asm.Instructions {
	var out asm.Instructions
	for range 2 {
		out = append(out,
			asm.Mov.Reg(asm.R0, r),
			asm.RSh.Imm(asm.R0, 16),
			asm.And.Imm(r, 0xffff),
			asm.Add.Reg(r, asm.R0),
		)
	}
	return append(out,
		asm.Xor.Imm(r, 0xffff),
		asm.HostTo(asm.BE, r, asm.Half),
	)
}

// newSink assembles the counter that stands in for a real server: it counts IPv4 and IPv6
// packets in a per-CPU array, and among them TCP SYNs, encapsulated packets (TUN: IPIP, IPv6
// in IPv6, counted by their outer header) and packets still addressed to the rig's VIPs (DR),
// and drops them; everything else (ARP) and ICMPv6 (neighbour discovery) pass, so the namespace
// behind it still answers neighbour requests (and the kernel's MLD reports, which start with a
// hop-by-hop header, are not counted).
func newSink() (*ebpf.Program, *ebpf.Map, error) {
	counters, err := ebpf.NewMap(&ebpf.MapSpec{Name: "sink_counts", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: sinkKeys})
	if err != nil {
		return nil, nil, fmt.Errorf("create sink counters: %w", err)
	}
	inc := func(key int32, label string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, -4, int64(key), asm.Word).WithSymbol(label),
			asm.LoadMapPtr(asm.R1, counters.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		}
	}
	// word is the 32-bit word of b at off as a little-endian load reads it.
	word := func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }
	v4, v6 := vip.As4(), vip6.As16()
	// r7 data, r8 data_end, r9 the sinkBit* flags; r2, r4 scratch.
	insns := asm.Instructions{
		asm.LoadMem(asm.R7, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R8, asm.R1, 4, asm.Word),
		asm.Mov.Imm(asm.R9, 0),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R8, "pass"),
		asm.LoadMem(asm.R2, asm.R7, offEtherType, asm.Half),
		asm.JEq.Imm(asm.R2, 0xdd86, "ipv6"), // 0x86dd read little-endian
		asm.JNE.Imm(asm.R2, 0x0008, "pass"), // 0x0800

		// IPv4 (without options, as the rig sends).
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, 14+20),
		asm.JGT.Reg(asm.R4, asm.R8, "count"),
		asm.LoadMem(asm.R2, asm.R7, 14+16, asm.Word),
		asm.JNE.Imm32(asm.R2, word(v4[:]), "v4proto"),
		asm.Or.Imm(asm.R9, sinkBitToVIP),
		asm.LoadMem(asm.R2, asm.R7, offIPProto, asm.Byte).WithSymbol("v4proto"),
		asm.JNE.Imm(asm.R2, 4, "v4tcp"),
		asm.Or.Imm(asm.R9, sinkBitEncap),
		asm.Ja.Label("count"),
		asm.JNE.Imm(asm.R2, 6, "count").WithSymbol("v4tcp"),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, int32(layout4.hdrEnd)),
		asm.JGT.Reg(asm.R4, asm.R8, "count"),
		asm.LoadMem(asm.R2, asm.R7, int16(layout4.tcpFlags), asm.Byte),
		asm.Ja.Label("syn"),

		// IPv6 (without extension headers): neighbour discovery passes.
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, 14+40),
		asm.JGT.Reg(asm.R4, asm.R8, "count"),
		asm.LoadMem(asm.R2, asm.R7, int16(layout6.ipProto), asm.Byte),
		asm.JEq.Imm(asm.R2, 58, "pass"),
		asm.JEq.Imm(asm.R2, 0, "pass"), // hop-by-hop options first: the kernel's MLD reports
	}
	for i := range 4 {
		insns = append(insns,
			asm.LoadMem(asm.R4, asm.R7, int16(14+24+4*i), asm.Word),
			asm.JNE.Imm32(asm.R4, word(v6[4*i:]), "v6proto"),
		)
	}
	insns = append(insns,
		asm.Or.Imm(asm.R9, sinkBitToVIP),
		asm.JEq.Imm(asm.R2, 41, "encap").WithSymbol("v6proto"),
		asm.JEq.Imm(asm.R2, 4, "encap"),
		asm.JNE.Imm(asm.R2, 6, "count"),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, int32(layout6.hdrEnd)),
		asm.JGT.Reg(asm.R4, asm.R8, "count"),
		asm.LoadMem(asm.R2, asm.R7, int16(layout6.tcpFlags), asm.Byte),

		// r2 holds TCP flags.
		asm.And.Imm(asm.R2, packets.SYN).WithSymbol("syn"),
		asm.JEq.Imm(asm.R2, 0, "count"),
		asm.Or.Imm(asm.R9, sinkBitSYN),
		asm.Ja.Label("count"),
		asm.Or.Imm(asm.R9, sinkBitEncap).WithSymbol("encap"),
	)
	insns = append(insns, inc(sinkPackets, "count")...)
	for _, c := range []struct {
		bit int32
		key int32
	}{{sinkBitSYN, sinkSYN}, {sinkBitEncap, sinkEncap}, {sinkBitToVIP, sinkToVIP}} {
		skip := fmt.Sprintf("skip%d", c.key)
		insns = append(insns,
			asm.Mov.Reg(asm.R2, asm.R9),
			asm.And.Imm(asm.R2, c.bit),
			asm.JEq.Imm(asm.R2, 0, skip),
		)
		insns = append(insns, inc(c.key, fmt.Sprintf("inc%d", c.key))...)
		insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol(skip))
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_sink", Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		counters.Close()
		return nil, nil, fmt.Errorf("load sink: %w", err)
	}
	return prog, counters, nil
}

// newBounce assembles the ceiling: swap the Ethernet addresses and send the frame back out
// (XDP_TX). Nothing forwards for less, so it bounds what any XDP load balancer reaches here.
func newBounce() (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.LoadMem(asm.R7, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R8, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R8, "pass"),
		asm.LoadMem(asm.R2, asm.R7, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R7, 4, asm.Half),
		asm.LoadMem(asm.R4, asm.R7, 6, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 10, asm.Half),
		asm.StoreMem(asm.R7, 0, asm.R4, asm.Word),
		asm.StoreMem(asm.R7, 4, asm.R5, asm.Half),
		asm.StoreMem(asm.R7, 6, asm.R2, asm.Word),
		asm.StoreMem(asm.R7, 10, asm.R3, asm.Half),
		asm.Mov.Imm(asm.R0, xdpTx),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_bounce", Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		return nil, fmt.Errorf("load ceiling program: %w", err)
	}
	return prog, nil
}

// newNull assembles a program that only returns verdict: the fixed cost of a test run, and
// the XDP program that lets a veth receive frames its peer sent with XDP_TX.
func newNull(verdict int32) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bench_null", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load null program: %w", err)
	}
	return prog, nil
}

// readCounters sums a per-CPU u64 array over CPUs.
func readCounters(m *ebpf.Map, keys int) ([]uint64, error) {
	out := make([]uint64, keys)
	var perCPU []uint64
	for k := range keys {
		if err := m.Lookup(uint32(k), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %d: %w", k, err)
		}
		for _, v := range perCPU {
			out[k] += v
		}
	}
	return out, nil
}

// generator is a loaded generator program with its counter and template frame.
type generator struct {
	prog    *ebpf.Program
	counter *ebpf.Map
	frame   []byte
}

// Close releases the program and its counter.
func (g *generator) Close() error { return errors.Join(g.prog.Close(), g.counter.Close()) }
