package vrrp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The golden packets are VRRP payloads captured with tcpdump from keepalived 2.2.7 (Debian)
// running in a network namespace, so they prove the encoding of the real peer, not ours.
var (
	kaSrc4 = netip.MustParseAddr("10.5.0.1")
	kaSrc6 = netip.MustParseAddr("fe80::9837:bfff:fe79:81b7")
	vip1   = netip.MustParseAddr("10.5.0.100")
	vip2   = netip.MustParseAddr("10.5.0.101")
	vip6   = netip.MustParseAddr("fd00::100")
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pass(s string) (a [AuthDataLen]byte) {
	copy(a[:], s)
	return a
}

var golden = []struct {
	name     string
	src, dst netip.Addr
	hex      string
	pkt      Packet
}{
	{
		name: "v2 PASS auth, two VIPs (keepalived auth_pass secret123, sent as secret12)",
		src:  kaSrc4, dst: GroupIPv4,
		hex: "2133 6402 0101 f777 0a05 0064 0a05 0065 7365 6372 6574 3132",
		pkt: Packet{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip1, vip2},
			AuthType: AuthPass, AuthData: pass("secret12")},
	},
	{
		name: "v2 priority 0 release on shutdown",
		src:  kaSrc4, dst: GroupIPv4,
		hex: "2133 0002 0101 5b78 0a05 0064 0a05 0065 7365 6372 6574 3132",
		pkt: Packet{Version: 2, VRID: 51, Priority: 0, Interval: time.Second, Addrs: []netip.Addr{vip1, vip2},
			AuthType: AuthPass, AuthData: pass("secret12")},
	},
	{
		name: "v3 IPv4 with pseudo-header checksum",
		src:  kaSrc4, dst: GroupIPv4,
		hex: "3133 6402 0064 6afa 0a05 0064 0a05 0065",
		pkt: Packet{Version: 3, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip1, vip2}},
	},
	{
		name: "v3 IPv4 priority 0",
		src:  kaSrc4, dst: GroupIPv4,
		hex: "3133 0002 0064 cefa 0a05 0064 0a05 0065",
		pkt: Packet{Version: 3, VRID: 51, Priority: 0, Interval: time.Second, Addrs: []netip.Addr{vip1, vip2}},
	},
	{
		name: "v3 IPv6 advert_int 0.5 with pseudo-header checksum",
		src:  kaSrc6, dst: GroupIPv6,
		hex: "3134 9601 0032 6410 fd00 0000 0000 0000 0000 0000 0000 0100",
		pkt: Packet{Version: 3, VRID: 52, Priority: 150, Interval: 500 * time.Millisecond, Addrs: []netip.Addr{vip6}},
	},
	{
		name: "v3 IPv6 priority 0",
		src:  kaSrc6, dst: GroupIPv6,
		hex: "3134 0001 0032 fa10 fd00 0000 0000 0000 0000 0000 0000 0100",
		pkt: Packet{Version: 3, VRID: 52, Priority: 0, Interval: 500 * time.Millisecond, Addrs: []netip.Addr{vip6}},
	},
}

func TestGolden(t *testing.T) {
	for _, tt := range golden {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.hex)
			got, err := tt.pkt.Marshal(tt.src, tt.dst)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(hex.EncodeToString(want), hex.EncodeToString(got)); diff != "" {
				t.Errorf("Marshal (-want +got):\n%s", diff)
			}
			p, err := Unmarshal(want, tt.src, tt.dst)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if diff := cmp.Diff(&tt.pkt, p, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Unmarshal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalTruncatedAtEveryByte(t *testing.T) {
	for _, tt := range golden {
		b := unhex(t, tt.hex)
		for n := range len(b) {
			if _, err := Unmarshal(b[:n], tt.src, tt.dst); !errors.Is(err, ErrTruncated) {
				t.Errorf("%s cut to %d bytes: got %v, want ErrTruncated", tt.name, n, err)
			}
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	v2 := unhex(t, golden[0].hex)
	v3 := unhex(t, golden[2].hex)
	v36 := unhex(t, golden[4].hex)
	mod := func(b []byte, i int, v byte) []byte {
		c := append([]byte(nil), b...)
		c[i] = v
		return c
	}
	tests := []struct {
		name     string
		b        []byte
		src, dst netip.Addr
		want     error
	}{
		{"flipped checksum bit", mod(v2, 7, 0x76), kaSrc4, GroupIPv4, ErrChecksum},
		{"flipped payload bit", mod(v2, 23, '3'), kaSrc4, GroupIPv4, ErrChecksum},
		{"v3 wrong pseudo-header source", v3, netip.MustParseAddr("10.5.0.2"), GroupIPv4, ErrChecksum},
		{"v3 unicast destination differs from checksummed one", v3, kaSrc4, netip.MustParseAddr("10.5.0.2"), ErrChecksum},
		{"v3 IPv6 wrong source", v36, netip.MustParseAddr("fe80::1"), GroupIPv6, ErrChecksum},
		{"version 1", mod(v2, 0, 0x11), kaSrc4, GroupIPv4, ErrVersion},
		{"version 4", mod(v3, 0, 0x41), kaSrc4, GroupIPv4, ErrVersion},
		{"version 2 over IPv6", mod(v36, 0, 0x21), kaSrc6, GroupIPv6, ErrVersion},
		{"type 2", mod(v2, 0, 0x22), kaSrc4, GroupIPv4, ErrType},
		{"trailing byte", append(append([]byte(nil), v3...), 0), kaSrc4, GroupIPv4, ErrLength},
		{"count larger than packet", mod(v3, 3, 3), kaSrc4, GroupIPv4, ErrTruncated},
		{"count smaller than packet", mod(v3, 3, 1), kaSrc4, GroupIPv4, ErrLength},
		{"mixed families", v3, kaSrc4, GroupIPv6, ErrFamily},
		{"no addresses", v3, netip.Addr{}, netip.Addr{}, ErrFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Unmarshal(tt.b, tt.src, tt.dst); !errors.Is(err, tt.want) {
				t.Errorf("Unmarshal = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		src  netip.Addr
		want error
	}{
		{"v2 fractional interval", Packet{Version: 2, Interval: 1500 * time.Millisecond}, kaSrc4, ErrInterval},
		{"v2 interval 256s", Packet{Version: 2, Interval: 256 * time.Second}, kaSrc4, ErrInterval},
		{"v2 over IPv6", Packet{Version: 2, Interval: time.Second}, kaSrc6, ErrFamily},
		{"v3 interval below 10ms", Packet{Version: 3, Interval: 5 * time.Millisecond}, kaSrc4, ErrInterval},
		{"v3 interval above 40.95s", Packet{Version: 3, Interval: 41 * time.Second}, kaSrc4, ErrInterval},
		{"v3 IPv6 VIP in IPv4 advert", Packet{Version: 3, Interval: time.Second, Addrs: []netip.Addr{vip6}}, kaSrc4, ErrFamily},
		{"version 4", Packet{Version: 4, Interval: time.Second}, kaSrc4, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := GroupIPv4
			if tt.src.Is6() {
				dst = GroupIPv6
			}
			if _, err := tt.p.Marshal(tt.src, dst); !errors.Is(err, tt.want) {
				t.Errorf("Marshal = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, tt := range golden {
		f.Add(unhex(f, tt.hex), tt.src.Is4(), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, v4, fixSum bool) {
		src, dst := kaSrc6, GroupIPv6
		if v4 {
			src, dst = kaSrc4, GroupIPv4
		}
		if fixSum && len(b) >= headerLen {
			// Get past the checksum check so the rest of the parser is explored too.
			b[6], b[7] = 0, 0
			binary.BigEndian.PutUint16(b[6:], checksum(int(b[0]>>4), src, dst, b))
		}
		p, err := Unmarshal(b, src, dst)
		if err != nil {
			return
		}
		// Whatever parses and is sendable must encode back to the same bytes.
		out, err := p.Marshal(src, dst)
		if errors.Is(err, ErrInterval) || errors.Is(err, ErrFamily) {
			return // interval 0 or an IPv4-mapped address: parsed (and dropped later), never sent
		}
		if err != nil {
			t.Fatalf("Marshal of parsed %+v: %v", p, err)
		}
		if p.Version == 3 && b[4]&0xf0 != 0 {
			return // reserved bits are not kept
		}
		if hex.EncodeToString(out) != hex.EncodeToString(b) {
			t.Fatalf("round trip:\n in %x\nout %x", b, out)
		}
	})
}
