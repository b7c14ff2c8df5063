// Package packets builds Ethernet frames carrying IPv4 (RFC 791) or IPv6 (RFC 8200, with
// extension headers) with TCP (RFC 793) or UDP (RFC 768), with correct checksums, for golden
// packet tests. Every field a test may vary is an
// option; nothing is validated, so tests can build malformed packets on purpose.
package packets

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// TCP flag bits for Options.TCPFlags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// EtherTypes used by the builders.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeIPv6 = 0x86dd
)

// Default addresses used when Options leaves them unset.
var (
	DefaultSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	DefaultDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	DefaultSrc    = netip.MustParseAddr("192.0.2.1")
	DefaultDst    = netip.MustParseAddr("198.51.100.1")
)

// Options are the fields of a frame; zero values get the defaults noted.
type Options struct {
	SrcMAC, DstMAC net.HardwareAddr // default DefaultSrcMAC, DefaultDstMAC
	Src, Dst       netip.Addr       // IPv4 (IPv6 for UDP6); default DefaultSrc, DefaultDst
	SrcPort        uint16
	DstPort        uint16
	TTL            uint8  // default 64
	ID             uint16 // IPv4 identification
	DF             bool   // don't fragment
	MF             bool   // more fragments
	FragOffset     uint16 // fragment offset in 8-byte units
	IPOptions      []byte // zero-padded to a multiple of 4 bytes
	ExtHeaders     []Ext  // IPv6 extension headers, in order, before the transport header
	FlowLabel      uint32 // IPv6 flow label (20 bits)
	TCPFlags       uint8  // default ACK
	Seq, Ack       uint32
	Payload        []byte
}

func (o *Options) defaults() {
	if o.SrcMAC == nil {
		o.SrcMAC = DefaultSrcMAC
	}
	if o.DstMAC == nil {
		o.DstMAC = DefaultDstMAC
	}
	if !o.Src.IsValid() {
		o.Src = DefaultSrc
	}
	if !o.Dst.IsValid() {
		o.Dst = DefaultDst
	}
	if o.TTL == 0 {
		o.TTL = 64
	}
}

// Ext is an IPv6 extension header: its type (0 hop-by-hop, 43 routing, 44 fragment, 60
// destination options) and the bytes after its next-header and length fields. Options headers
// are zero-padded to a multiple of 8 bytes; a fragment header's body is its 6 bytes.
type Ext struct {
	Type uint8
	Body []byte
}

// FragmentExt is an IPv6 fragment header at offset (in 8-byte units) with the M flag and id.
func FragmentExt(offset uint16, more bool, id uint32) Ext {
	b := make([]byte, 6)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[0:], v)
	binary.BigEndian.PutUint32(b[2:], id)
	return Ext{Type: 44, Body: b}
}

// TCP returns an Ethernet/IPv4/TCP frame.
func TCP(o Options) []byte {
	o.defaults()
	return ethernet(o, EtherTypeIPv4, ipv4(o, 6, tcp(o)))
}

// TCP6 returns an Ethernet/IPv6/TCP frame; Src and Dst must be IPv6.
func TCP6(o Options) []byte {
	o.defaults6()
	return ethernet(o, EtherTypeIPv6, ipv6(o, 6, tcp(o)))
}

func tcp(o Options) []byte {
	flags := o.TCPFlags
	if flags == 0 {
		flags = ACK
	}
	seg := make([]byte, 20, 20+len(o.Payload))
	binary.BigEndian.PutUint16(seg[0:], o.SrcPort)
	binary.BigEndian.PutUint16(seg[2:], o.DstPort)
	binary.BigEndian.PutUint32(seg[4:], o.Seq)
	binary.BigEndian.PutUint32(seg[8:], o.Ack)
	seg[12] = 5 << 4 // data offset: 5 words, no options
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535) // window
	seg = append(seg, o.Payload...)
	binary.BigEndian.PutUint16(seg[16:], L4Checksum(o.Src, o.Dst, 6, seg))
	return seg
}

// UDP returns an Ethernet/IPv4/UDP frame.
func UDP(o Options) []byte {
	o.defaults()
	return ethernet(o, EtherTypeIPv4, ipv4(o, 17, udp(o)))
}

// UDP6 returns an Ethernet/IPv6/UDP frame; Src and Dst must be IPv6.
func UDP6(o Options) []byte {
	o.defaults6()
	return ethernet(o, EtherTypeIPv6, ipv6(o, 17, udp(o)))
}

// Default IPv6 addresses used when Options leaves them unset in IPv6 builders.
var (
	DefaultSrc6 = netip.MustParseAddr("2001:db8::1")
	DefaultDst6 = netip.MustParseAddr("2001:db8:1::1")
)

func (o *Options) defaults6() {
	if !o.Src.IsValid() {
		o.Src = DefaultSrc6
	}
	if !o.Dst.IsValid() {
		o.Dst = DefaultDst6
	}
	o.defaults()
}

// ipv6 is the IPv6 header and extension headers of o before payload, an upper-layer proto segment.
func ipv6(o Options, proto uint8, payload []byte) []byte {
	var ext []byte
	for i, e := range o.ExtHeaders {
		next := proto
		if i+1 < len(o.ExtHeaders) {
			next = o.ExtHeaders[i+1].Type
		}
		body := e.Body
		if e.Type != 44 {
			if pad := (len(body) + 2) % 8; pad != 0 {
				body = append(append([]byte{}, body...), make([]byte, 8-pad)...)
			}
		}
		hlen := byte(0)
		if e.Type != 44 {
			hlen = byte((len(body)+2)/8 - 1)
		}
		ext = append(ext, next, hlen)
		ext = append(ext, body...)
	}
	ip := make([]byte, 40, 40+len(ext)+len(payload))
	binary.BigEndian.PutUint32(ip[0:], 6<<28|o.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(payload)))
	ip[6] = proto
	if len(o.ExtHeaders) > 0 {
		ip[6] = o.ExtHeaders[0].Type
	}
	ip[7] = o.TTL
	src, dst := o.Src.As16(), o.Dst.As16()
	copy(ip[8:], src[:])
	copy(ip[24:], dst[:])
	return append(append(ip, ext...), payload...)
}

// IPIP returns an Ethernet/IPv4 frame from Src to Dst carrying inner, an IP datagram without
// its Ethernet header, as IP protocol 4 (RFC 2003): what an ipip tunnel sends.
func IPIP(o Options, inner []byte) []byte {
	o.defaults()
	return ethernet(o, EtherTypeIPv4, ipv4(o, 4, inner))
}

// IP6IP6 returns an Ethernet/IPv6 frame from Src to Dst carrying inner, an IPv6 datagram without
// its Ethernet header, as next header 41 (RFC 2473): what an ip6tnl tunnel sends.
func IP6IP6(o Options, inner []byte) []byte {
	o.defaults6()
	return ethernet(o, EtherTypeIPv6, ipv6(o, 41, inner))
}

// ICMPFragNeeded returns an Ethernet/IPv4 ICMP "fragmentation needed" error (RFC 792, RFC 1191)
// from Src to Dst announcing mtu and quoting quoted, the start of the IP datagram that was too big.
func ICMPFragNeeded(o Options, mtu uint16, quoted []byte) []byte {
	o.defaults()
	msg := make([]byte, 8, 8+len(quoted))
	msg[0], msg[1] = 3, 4
	binary.BigEndian.PutUint16(msg[6:], mtu)
	msg = append(msg, quoted...)
	binary.BigEndian.PutUint16(msg[2:], Checksum(msg))
	return ethernet(o, EtherTypeIPv4, ipv4(o, 1, msg))
}

// ICMPv6TooBig returns an Ethernet/IPv6 ICMPv6 "packet too big" error (RFC 4443) from Src to Dst
// announcing mtu and quoting quoted, the start of the IPv6 packet that was too big.
func ICMPv6TooBig(o Options, mtu uint32, quoted []byte) []byte {
	o.defaults6()
	msg := make([]byte, 8, 8+len(quoted))
	msg[0] = 2
	binary.BigEndian.PutUint32(msg[4:], mtu)
	msg = append(msg, quoted...)
	binary.BigEndian.PutUint16(msg[2:], L4Checksum(o.Src, o.Dst, 58, msg))
	return ethernet(o, EtherTypeIPv6, ipv6(o, 58, msg))
}

// ARPRequest returns an Ethernet ARP request from Src/SrcMAC asking for Dst (RFC 826).
func ARPRequest(o Options) []byte {
	o.defaults()
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:], o.SrcMAC)
	src, dst := o.Src.As4(), o.Dst.As4()
	copy(b[14:], src[:])
	copy(b[24:], dst[:])
	o.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	return ethernet(o, EtherTypeARP, b)
}

// VLAN returns frame with an 802.1Q tag carrying vid inserted after the MAC addresses.
func VLAN(frame []byte, vid uint16) []byte {
	out := make([]byte, 0, len(frame)+4)
	out = append(out, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, EtherTypeVLAN)
	out = binary.BigEndian.AppendUint16(out, vid&0x0fff)
	return append(out, frame[12:]...)
}

func ethernet(o Options, etherType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:], o.DstMAC)
	copy(b[6:], o.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, payload...)
}

func ipv4(o Options, proto uint8, payload []byte) []byte {
	opts := o.IPOptions
	if pad := len(opts) % 4; pad != 0 {
		opts = append(append([]byte{}, opts...), make([]byte, 4-pad)...)
	}
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 4<<4 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], o.ID)
	frag := o.FragOffset & 0x1fff
	if o.DF {
		frag |= 0x4000
	}
	if o.MF {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = o.TTL
	b[9] = proto
	src, dst := o.Src.As4(), o.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], Checksum(b))
	return append(b, payload...)
}

func udp(o Options) []byte {
	seg := make([]byte, 8, 8+len(o.Payload))
	binary.BigEndian.PutUint16(seg[0:], o.SrcPort)
	binary.BigEndian.PutUint16(seg[2:], o.DstPort)
	binary.BigEndian.PutUint16(seg[4:], uint16(8+len(o.Payload)))
	seg = append(seg, o.Payload...)
	sum := L4Checksum(o.Src, o.Dst, 17, seg)
	if sum == 0 {
		sum = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(seg[6:], sum)
	return seg
}

// Checksum is the Internet checksum (RFC 1071) of b: the one's complement of the one's
// complement sum of its 16-bit words. A header holding its correct checksum sums to 0.
func Checksum(b []byte) uint16 {
	return ^fold(sum(0, b))
}

// L4Checksum is the TCP or UDP checksum of seg (its checksum field zero) sent from src to dst,
// covering the pseudo-header of RFC 793 (IPv4) or RFC 8200 (IPv6).
func L4Checksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	var s uint32
	s = sum(s, src.AsSlice())
	s = sum(s, dst.AsSlice())
	s += uint32(proto)
	s += uint32(len(seg) >> 16)
	s += uint32(len(seg) & 0xffff)
	return ^fold(sum(s, seg))
}

func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
