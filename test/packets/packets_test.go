package packets

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksumKnownHeader(t *testing.T) {
	// The IPv4 header worked through in RFC 1071 style on Wikipedia's "IPv4 header checksum":
	// its checksum is b861.
	hdr := mustHex(t, "450000730000400040110000c0a80001c0a800c7")
	if got := Checksum(hdr); got != 0xb861 {
		t.Errorf("Checksum = %#04x, want 0xb861", got)
	}
	hdr[10], hdr[11] = 0xb8, 0x61
	if got := Checksum(hdr); got != 0 {
		t.Errorf("Checksum of a correct header = %#04x, want 0", got)
	}
}

func TestGoldenFrames(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	tests := []struct {
		name string
		got  []byte
		want string
	}{{
		// Checksums by hand: IPv4 sum of 4500 0028 0000 0000 4006 0a00 0001 0a00 0002 folds
		// to 9931 -> 66ce; TCP pseudo-header 0a00 0001 0a00 0002 0006 0014 plus segment
		// 3039 0050 0000 0001 0000 0000 5002 ffff folds to 94a9 -> 6b56.
		name: "tcp syn",
		got:  TCP(Options{Src: a, Dst: b, SrcPort: 12345, DstPort: 80, Seq: 1, TCPFlags: SYN, TTL: 64}),
		want: "020000000002" + "020000000001" + "0800" +
			"45000028000000004006" + "66ce" + "0a000001" + "0a000002" +
			"30390050" + "00000001" + "00000000" + "5002ffff" + "6b56" + "0000",
	}, {
		// By hand: IPv4 4500 001c 0000 0000 4011 c0a8 0001 c0a8 00c7 sums to 20745, folds to
		// 0747 -> f8b8; UDP c0a8 0001 c0a8 00c7 0011 0008 0001 0002 0008 sums to 1823c,
		// folds to 823d -> 7dc2.
		name: "udp empty",
		got: UDP(Options{Src: netip.MustParseAddr("192.168.0.1"), Dst: netip.MustParseAddr("192.168.0.199"),
			SrcPort: 1, DstPort: 2}),
		want: "020000000002" + "020000000001" + "0800" +
			"4500001c000000004011" + "f8b8" + "c0a80001" + "c0a800c7" +
			"000100020008" + "7dc2",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustHex(t, tt.want)
			if diff := cmp.Diff(hex.Dump(want), hex.Dump(tt.got)); diff != "" {
				t.Errorf("frame mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChecksumsVerify checks the receiver's view: a correct header or segment, pseudo-header
// included, sums to zero whatever the options, payload length or protocol.
func TestChecksumsVerify(t *testing.T) {
	frames := map[string]Options{
		"odd payload":  {SrcPort: 1000, DstPort: 53, Payload: []byte("abc")},
		"ip options":   {SrcPort: 1000, DstPort: 80, IPOptions: []byte{0x94, 0x04, 0, 0, 1}, Payload: []byte("hello")},
		"fragment":     {SrcPort: 1, DstPort: 2, MF: true, FragOffset: 185, ID: 7, DF: false},
		"large":        {SrcPort: 1, DstPort: 2, Payload: make([]byte, 1400)},
		"ttl and flag": {SrcPort: 9, DstPort: 8, TTL: 1, TCPFlags: SYN | ACK, DF: true},
	}
	for name, o := range frames {
		for proto, build := range map[uint8]func(Options) []byte{6: TCP, 17: UDP} {
			f := build(o)
			ihl := int(f[14]&0x0f) * 4
			ip := f[14 : 14+ihl]
			if got := Checksum(ip); got != 0 {
				t.Errorf("%s/%d: IPv4 header sums to %#04x, want 0", name, proto, got)
			}
			if ip[9] != proto {
				t.Errorf("%s/%d: protocol %d", name, proto, ip[9])
			}
			src, _ := netip.AddrFromSlice(ip[12:16])
			dst, _ := netip.AddrFromSlice(ip[16:20])
			if got := L4Checksum(src, dst, proto, f[14+ihl:]); got != 0 {
				t.Errorf("%s/%d: segment sums to %#04x, want 0", name, proto, got)
			}
		}
	}
}

func TestFields(t *testing.T) {
	f := UDP(Options{IPOptions: []byte{1, 1, 1}, MF: true, FragOffset: 3, TTL: 9, ID: 0x1234, Payload: []byte{0xaa}})
	if got, want := f[14], byte(0x46); got != want {
		t.Errorf("version/IHL = %#x, want %#x", got, want)
	}
	if got, want := hex.EncodeToString(f[18:23]), "1234200309"; got != want {
		t.Errorf("id, flags+offset, ttl = %s, want %s", got, want)
	}
	if got, want := len(f), 14+24+8+1; got != want {
		t.Errorf("len = %d, want %d", got, want)
	}
	v := VLAN(f, 100)
	if got, want := hex.EncodeToString(v[12:18]), "810000640800"; got != want {
		t.Errorf("VLAN tag = %s, want %s", got, want)
	}
	a := ARPRequest(Options{})
	if got, want := hex.EncodeToString(a[:14]), "ffffffffffff0200000000010806"; got != want {
		t.Errorf("ARP Ethernet header = %s, want %s", got, want)
	}
	u6 := UDP6(Options{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 5, DstPort: 6})
	if got := L4Checksum(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 17, u6[54:]); got != 0 {
		t.Errorf("UDP6 segment sums to %#04x, want 0", got)
	}
}

func TestIPv6ExtHeaders(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	f := TCP6(Options{Src: src, Dst: dst, SrcPort: 1, DstPort: 80, FlowLabel: 0xabcde,
		ExtHeaders: []Ext{{Type: 0, Body: []byte{1, 0}}, FragmentExt(0, false, 0x01020304), {Type: 60}}})
	ip := f[14:]
	want := "6" + "00abcde" + // version, traffic class 0, flow label
		"002c" + "00" + "40" + // payload 8+8+8+20, next: hop-by-hop, hop limit
		"20010db8000000000000000000000001" + "20010db8000000000000000000000002" +
		"2c00" + "010000000000" + // hop-by-hop: next fragment, 8 bytes, PadN body padded
		"3c00" + "000001020304" + // fragment: next destination options, offset 0, id
		"0600" + "000000000000" // destination options: next TCP, empty body padded
	if got := hex.EncodeToString(ip[:40+24]); got != want {
		t.Errorf("IPv6 and extension headers:\n got %s\nwant %s", got, want)
	}
	if got := L4Checksum(src, dst, 6, ip[40+24:]); got != 0 {
		t.Errorf("TCP segment after extension headers sums to %#04x, want 0", got)
	}
	if got := len(f); got != 14+40+24+20 {
		t.Errorf("len = %d, want %d", got, 14+40+24+20)
	}
	fr := FragmentExt(185, true, 7)
	if got, want := hex.EncodeToString(fr.Body), "05c900000007"; got != want {
		t.Errorf("FragmentExt body = %s, want %s", got, want)
	}
}

func TestTunnels(t *testing.T) {
	inner := TCP(Options{SrcPort: 1, DstPort: 80, DF: true})[14:]
	outer := netip.MustParseAddr("10.0.0.1")
	rs := netip.MustParseAddr("10.0.0.2")
	f := IPIP(Options{Src: outer, Dst: rs, DF: true, ID: 9}, inner)
	ip := f[14:34]
	if got, want := hex.EncodeToString(ip[:10]), "4500"+"003c"+"0009"+"4000"+"40"+"04"; got != want {
		t.Errorf("IPIP outer header = %s, want %s", got, want)
	}
	if got := Checksum(ip); got != 0 {
		t.Errorf("IPIP outer header sums to %#04x, want 0", got)
	}
	if diff := cmp.Diff(hex.Dump(inner), hex.Dump(f[34:])); diff != "" {
		t.Errorf("IPIP payload (-want +got):\n%s", diff)
	}

	inner6 := TCP6(Options{SrcPort: 1, DstPort: 80})[14:]
	f6 := IP6IP6(Options{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2")}, inner6)
	if got, want := hex.EncodeToString(f6[12:14+8]), "86dd"+"60000000"+"003c"+"29"+"40"; got != want {
		t.Errorf("IP6IP6 header = %s, want %s", got, want)
	}
	if diff := cmp.Diff(hex.Dump(inner6), hex.Dump(f6[14+40:])); diff != "" {
		t.Errorf("IP6IP6 payload (-want +got):\n%s", diff)
	}
}

func TestICMPErrors(t *testing.T) {
	quoted := TCP(Options{SrcPort: 80, DstPort: 1000})[14 : 14+28]
	f := ICMPFragNeeded(Options{}, 1400, quoted)
	icmp := f[14+20:]
	if got, want := hex.EncodeToString(icmp[:2]), "0304"; got != want {
		t.Errorf("type and code = %s, want %s", got, want)
	}
	if got := Checksum(icmp); got != 0 {
		t.Errorf("ICMP message sums to %#04x, want 0", got)
	}
	if got, want := hex.EncodeToString(icmp[6:8]), "0578"; got != want {
		t.Errorf("next-hop MTU = %s, want %s", got, want)
	}
	if f[14+9] != 1 {
		t.Errorf("IP protocol %d, want 1", f[14+9])
	}

	quoted6 := TCP6(Options{SrcPort: 80, DstPort: 1000})[14:]
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	f6 := ICMPv6TooBig(Options{Src: src, Dst: dst}, 1280, quoted6)
	if got := L4Checksum(src, dst, 58, f6[14+40:]); got != 0 {
		t.Errorf("ICMPv6 message sums to %#04x, want 0", got)
	}
	if got, want := hex.EncodeToString(f6[14+40:14+42])+hex.EncodeToString(f6[14+44:14+48]), "0200"+"00000500"; got != want {
		t.Errorf("ICMPv6 type, code and MTU = %s, want %s", got, want)
	}
	if f6[14+6] != 58 {
		t.Errorf("next header %d, want 58", f6[14+6])
	}
}
