// Package bfd implements Bidirectional Forwarding Detection as keepalived's bfd_instance uses
// it: RFC 5880 asynchronous mode without authentication or echo, over UDP as RFC 5881
// describes (port 3784, TTL 255 sent and, less max_hops, required). RFC 5883's multihop port
// 4784 is available (Instance.Multihop), but keepalived uses 3784 whatever its max_hops.
//
// Packet is the control packet codec, Session the state machine (driven by the caller's
// clock), and Manager runs sessions over real sockets.
package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a session state as carried in control packets.
type State uint8

// The session states of RFC 5880 section 4.1.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code: why the sender's session last left Up.
type Diag uint8

// The diagnostic codes Sluice sends (RFC 5880 section 4.1).
const (
	DiagNone             Diag = 0
	DiagDetectionExpired Diag = 1
	DiagNeighborDown     Diag = 3
	DiagAdminDown        Diag = 7
)

// HeaderLen is the length of a control packet without authentication.
const HeaderLen = 24

// Packet is a BFD control packet. Intervals are carried in microseconds on the wire.
type Packet struct {
	Diag                    Diag
	State                   State
	Poll                    bool
	Final                   bool
	ControlPlaneIndependent bool
	Demand                  bool
	DetectMult              uint8
	MyDiscriminator         uint32
	YourDiscriminator       uint32
	DesiredMinTx            time.Duration
	RequiredMinRx           time.Duration
	RequiredMinEchoRx       time.Duration
}

// Append appends p's wire form (version 1, no authentication) to b.
func (p *Packet) Append(b []byte) []byte {
	flags := byte(p.State) << 6
	if p.Poll {
		flags |= 0x20
	}
	if p.Final {
		flags |= 0x10
	}
	if p.ControlPlaneIndependent {
		flags |= 0x08
	}
	if p.Demand {
		flags |= 0x02
	}
	b = append(b, 1<<5|byte(p.Diag&0x1f), flags, p.DetectMult, HeaderLen)
	b = binary.BigEndian.AppendUint32(b, p.MyDiscriminator)
	b = binary.BigEndian.AppendUint32(b, p.YourDiscriminator)
	b = binary.BigEndian.AppendUint32(b, micros(p.DesiredMinTx))
	b = binary.BigEndian.AppendUint32(b, micros(p.RequiredMinRx))
	return binary.BigEndian.AppendUint32(b, micros(p.RequiredMinEchoRx))
}

func micros(d time.Duration) uint32 {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}

// Errors of Parse; the RFC has a receiver discard such packets.
var (
	ErrTruncated   = errors.New("bfd packet truncated")
	ErrVersion     = errors.New("bfd packet version is not 1")
	ErrAuth        = errors.New("bfd authentication is not supported")
	ErrMalformed   = errors.New("bfd packet malformed")
	ErrMultipoint  = errors.New("bfd multipoint bit set")
	ErrZeroMult    = errors.New("bfd detect multiplier is zero")
	ErrZeroMyDiscr = errors.New("bfd my discriminator is zero")
)

// Parse decodes a control packet and applies the checks of RFC 5880 section 6.8.6 that need
// no session: version, length, detect multiplier, multipoint, discriminators. Packets with the
// authentication bit are refused, as Sluice (like keepalived) has no BFD authentication.
func Parse(b []byte) (Packet, error) {
	if len(b) < HeaderLen {
		return Packet{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrTruncated, len(b), HeaderLen)
	}
	if v := b[0] >> 5; v != 1 {
		return Packet{}, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	flags := b[1]
	if flags&0x04 != 0 {
		return Packet{}, ErrAuth
	}
	length := int(b[3])
	switch {
	case length < HeaderLen:
		return Packet{}, fmt.Errorf("%w: length field %d is below %d", ErrMalformed, length, HeaderLen)
	case length > len(b):
		return Packet{}, fmt.Errorf("%w: length field %d, %d bytes received", ErrTruncated, length, len(b))
	}
	p := Packet{
		Diag:                    Diag(b[0] & 0x1f),
		State:                   State(flags >> 6),
		Poll:                    flags&0x20 != 0,
		Final:                   flags&0x10 != 0,
		ControlPlaneIndependent: flags&0x08 != 0,
		Demand:                  flags&0x02 != 0,
		DetectMult:              b[2],
		MyDiscriminator:         binary.BigEndian.Uint32(b[4:]),
		YourDiscriminator:       binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:            time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		RequiredMinRx:           time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond,
		RequiredMinEchoRx:       time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond,
	}
	switch {
	case flags&0x01 != 0:
		return Packet{}, ErrMultipoint
	case p.DetectMult == 0:
		return Packet{}, ErrZeroMult
	case p.MyDiscriminator == 0:
		return Packet{}, ErrZeroMyDiscr
	case p.YourDiscriminator == 0 && p.State != Down && p.State != AdminDown:
		return Packet{}, fmt.Errorf("%w: your discriminator is zero in state %s", ErrMalformed, p.State)
	case p.Poll && p.Final:
		return Packet{}, fmt.Errorf("%w: poll and final both set", ErrMalformed)
	}
	return p, nil
}
