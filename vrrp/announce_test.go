package vrrp

import (
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMarshalNA(t *testing.T) {
	hw, _ := net.ParseMAC("9a:37:bf:79:81:b7")
	got, err := MarshalNA(netip.MustParseAddr("fd00::100"), hw)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 4861 section 4.4, by hand: type 136, code 0, checksum left to the kernel, flags
	// R=0 S=0 O=1, target, option 2 (target link-layer address) of length 1 (8 bytes).
	want := "88 00 0000" + "20000000" + "fd000000000000000000000000000100" + "02 01 9a37bf7981b7"
	if diff := cmp.Diff(hex.EncodeToString(unhex(t, want)), hex.EncodeToString(got)); diff != "" {
		t.Errorf("MarshalNA (-want +got):\n%s", diff)
	}
	if _, err := MarshalNA(netip.MustParseAddr("10.0.0.1"), hw); err == nil {
		t.Errorf("MarshalNA accepted an IPv4 target")
	}
	if _, err := MarshalNA(netip.MustParseAddr("fd00::1"), net.HardwareAddr{1, 2}); err == nil {
		t.Errorf("MarshalNA accepted a 2-byte link-layer address")
	}
}
