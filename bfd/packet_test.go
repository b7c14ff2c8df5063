package bfd

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// golden is a packet as keepalived sends it once Up: version 1, diag 0, state Up, Final,
// multiplier 5, discriminators 0x11223344 and 0x55667788, 10 ms both ways, no echo.
const golden = "20d0051811223344556677880000271000002710" + "00000000"

func TestPacketGolden(t *testing.T) {
	p := Packet{State: Up, Final: true, DetectMult: 5, MyDiscriminator: 0x11223344, YourDiscriminator: 0x55667788,
		DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond}
	if got := hex.EncodeToString(p.Append(nil)); got != golden {
		t.Errorf("Append = %s, want %s", got, golden)
	}
	b, _ := hex.DecodeString(golden)
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseFlags(t *testing.T) {
	p := Packet{Diag: DiagNeighborDown, State: Down, Poll: true, ControlPlaneIndependent: true, Demand: true,
		DetectMult: 3, MyDiscriminator: 7, DesiredMinTx: time.Second, RequiredMinRx: 300 * time.Millisecond,
		RequiredMinEchoRx: 50 * time.Millisecond}
	got, err := Parse(p.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseRejects(t *testing.T) {
	valid := func() []byte {
		b, _ := hex.DecodeString(golden)
		return b
	}
	tests := []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"empty", func([]byte) []byte { return nil }, ErrTruncated},
		{"truncated header", func(b []byte) []byte { return b[:23] }, ErrTruncated},
		{"length beyond data", func(b []byte) []byte { b[3] = 48; return b }, ErrTruncated},
		{"length below header", func(b []byte) []byte { b[3] = 20; return b }, ErrMalformed},
		{"version 0", func(b []byte) []byte { b[0] &^= 0xe0; return b }, ErrVersion},
		{"version 2", func(b []byte) []byte { b[0] = 2<<5 | b[0]&0x1f; return b }, ErrVersion},
		{"authentication", func(b []byte) []byte { b[1] |= 0x04; return b }, ErrAuth},
		{"multipoint", func(b []byte) []byte { b[1] |= 0x01; return b }, ErrMultipoint},
		{"zero multiplier", func(b []byte) []byte { b[2] = 0; return b }, ErrZeroMult},
		{"zero my discriminator", func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }, ErrZeroMyDiscr},
		{"up without your discriminator", func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b }, ErrMalformed},
		{"poll and final", func(b []byte) []byte { b[1] |= 0x20; return b }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.edit(valid()))
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseLongerLengthAccepted(t *testing.T) {
	// Trailing bytes past the length field are ignored, as UDP padding.
	b, _ := hex.DecodeString(golden + "0000")
	if _, err := Parse(b); err != nil {
		t.Errorf("Parse with trailing bytes: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := hex.DecodeString(golden)
	f.Add(b)
	f.Add(b[:10])
	f.Add([]byte{0x20, 0x40, 0x03, 0x18})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		// A packet Parse accepts survives a round trip, except for sub-microsecond values.
		again, err := Parse(p.Append(nil))
		if err != nil {
			t.Fatalf("re-parse of %x: %v", b, err)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
