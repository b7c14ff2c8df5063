// Package vrrp implements the Virtual Router Redundancy Protocol as keepalived speaks it:
// VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798, with the clarifications of RFC 9568) over IPv4
// and IPv6, multicast or unicast, with keepalived's PASS authentication.
//
// The package only decides and reports: an Instance elects a master, holds its virtual
// addresses while it is master and announces them with gratuitous ARP / unsolicited NA, and
// sends each state transition as an Event. Whoever runs it (the director) acts on them.
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// Multicast groups VRRP adverts are sent to when no unicast peers are configured.
var (
	GroupIPv4 = netip.MustParseAddr("224.0.0.18")
	GroupIPv6 = netip.MustParseAddr("ff02::12")
)

// TypeAdvertisement is the only VRRP packet type.
const TypeAdvertisement = 1

// Authentication types of VRRPv2 (RFC 3768 section 5.3.6; type 2 is the withdrawn IP AH).
const (
	AuthNone = 0
	AuthPass = 1
	AuthAH   = 2
)

// AuthDataLen is the length of the VRRPv2 authentication data: keepalived sends and checks
// the first 8 bytes of auth_pass, zero padded.
const AuthDataLen = 8

const headerLen = 8

// Sentinel errors of Unmarshal and Marshal; callers count drops by them.
var (
	ErrTruncated = errors.New("vrrp: packet truncated")
	ErrLength    = errors.New("vrrp: packet length does not match its address count")
	ErrVersion   = errors.New("vrrp: unsupported version")
	ErrType      = errors.New("vrrp: unknown packet type")
	ErrChecksum  = errors.New("vrrp: bad checksum")
	ErrFamily    = errors.New("vrrp: address family mismatch")
	ErrInterval  = errors.New("vrrp: advertisement interval out of range")
)

// Packet is one VRRP advertisement.
type Packet struct {
	// Version is 2 or 3.
	Version int
	// VRID is the virtual router identifier, 1-255.
	VRID uint8
	// Priority is 255 for the address owner, 0 for a master that is giving up, else 1-254.
	Priority uint8
	// Interval is the advertisement interval: whole seconds (1-255) in VRRPv2, centiseconds
	// (0.01 s - 40.95 s) in VRRPv3.
	Interval time.Duration
	// Addrs are the virtual addresses, all of the family of the carrying IP packet.
	Addrs []netip.Addr
	// AuthType and AuthData exist in VRRPv2 only.
	AuthType uint8
	AuthData [AuthDataLen]byte
}

// Marshal encodes p for sending from src to dst; both are needed because the VRRPv3
// checksum covers an IP pseudo-header.
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return nil, fmt.Errorf("marshal vrrp from %s to %s: %w", src, dst, ErrFamily)
	}
	if len(p.Addrs) > 255 {
		return nil, fmt.Errorf("marshal vrrp: %d addresses, at most 255", len(p.Addrs))
	}
	alen := 16
	if src.Is4() {
		alen = 4
	}
	n := headerLen + alen*len(p.Addrs)
	var intv uint16
	switch p.Version {
	case 2:
		if !src.Is4() {
			return nil, fmt.Errorf("marshal vrrp: version 2 is IPv4 only: %w", ErrFamily)
		}
		if p.Interval%time.Second != 0 || p.Interval < time.Second || p.Interval > 255*time.Second {
			return nil, fmt.Errorf("marshal vrrp: version 2 interval %s is not 1-255 whole seconds: %w", p.Interval, ErrInterval)
		}
		intv = uint16(p.Interval / time.Second)
		n += AuthDataLen
	case 3:
		cs := p.Interval / (10 * time.Millisecond)
		if p.Interval%(10*time.Millisecond) != 0 || cs < 1 || cs > 0xfff {
			return nil, fmt.Errorf("marshal vrrp: version 3 interval %s is not 1-4095 centiseconds: %w", p.Interval, ErrInterval)
		}
		intv = uint16(cs)
	default:
		return nil, fmt.Errorf("marshal vrrp version %d: %w", p.Version, ErrVersion)
	}
	b := make([]byte, n)
	b[0] = byte(p.Version)<<4 | TypeAdvertisement
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = byte(len(p.Addrs))
	if p.Version == 2 {
		b[4] = p.AuthType
		b[5] = byte(intv)
	} else {
		binary.BigEndian.PutUint16(b[4:], intv)
	}
	off := headerLen
	for _, a := range p.Addrs {
		if a.Is4() != src.Is4() || a.Is4In6() {
			return nil, fmt.Errorf("marshal vrrp: virtual address %s: %w", a, ErrFamily)
		}
		off += copy(b[off:], a.AsSlice())
	}
	if p.Version == 2 {
		copy(b[off:], p.AuthData[:])
	}
	binary.BigEndian.PutUint16(b[6:], checksum(p.Version, src, dst, b))
	return b, nil
}

// Unmarshal decodes the VRRP payload b of an IP packet from src to dst, checking its
// version, type, length against the address count and checksum. It does not check what
// depends on configuration (VRID, authentication, interval, addresses).
func Unmarshal(b []byte, src, dst netip.Addr) (*Packet, error) {
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return nil, ErrFamily
	}
	if len(b) < headerLen {
		return nil, ErrTruncated
	}
	p := &Packet{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if p.Version != 2 && p.Version != 3 || p.Version == 2 && !src.Is4() {
		return nil, ErrVersion
	}
	if b[0]&0x0f != TypeAdvertisement {
		return nil, ErrType
	}
	alen := 16
	if src.Is4() {
		alen = 4
	}
	count := int(b[3])
	want := headerLen + alen*count
	if p.Version == 2 {
		want += AuthDataLen
	}
	if len(b) < want {
		return nil, ErrTruncated
	}
	if len(b) > want {
		return nil, ErrLength
	}
	if checksum(p.Version, src, dst, b) != 0 {
		return nil, ErrChecksum
	}
	if p.Version == 2 {
		p.AuthType = b[4]
		p.Interval = time.Duration(b[5]) * time.Second
	} else {
		p.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0xfff) * 10 * time.Millisecond
	}
	p.Addrs = make([]netip.Addr, count)
	off := headerLen
	for i := range p.Addrs {
		if alen == 4 {
			p.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		} else {
			p.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		}
		off += alen
	}
	if p.Version == 2 {
		copy(p.AuthData[:], b[off:])
	}
	return p, nil
}

// checksum returns the Internet checksum of b (with its checksum field as it is), preceded
// in VRRPv3 by the IPv4 or IPv6 pseudo-header; over a packet with a valid checksum it is 0.
func checksum(version int, src, dst netip.Addr, b []byte) uint16 {
	var sum uint32
	add := func(p []byte) {
		for len(p) >= 2 {
			sum += uint32(p[0])<<8 | uint32(p[1])
			p = p[2:]
		}
		if len(p) == 1 {
			sum += uint32(p[0]) << 8
		}
	}
	if version == 3 {
		add(src.AsSlice())
		add(dst.AsSlice())
		if src.Is4() {
			add([]byte{0, Protocol, byte(len(b) >> 8), byte(len(b))})
		} else {
			var l [8]byte
			binary.BigEndian.PutUint32(l[:], uint32(len(b)))
			l[7] = Protocol
			add(l[:])
		}
	}
	add(b)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
