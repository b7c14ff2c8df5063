package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// PingCheck is keepalived's PING_CHECK: it sends one ICMP or ICMPv6 echo request and passes
// when the matching echo reply arrives before the timeout. It uses an unprivileged ICMP
// socket when net.ipv4.ping_group_range allows one, a raw socket otherwise (root).
type PingCheck struct {
	// Addr is connect_ip.
	Addr netip.Addr
	// BindTo is bindto: the local address of the probe, when valid.
	BindTo netip.Addr
	// Timeout is connect_timeout; zero or less means DefaultTimeout.
	Timeout time.Duration
}

var _ TimeoutChecker = PingCheck{}

// Check sends an echo request and waits for its reply.
func (c PingCheck) Check(ctx context.Context) error {
	if !c.Addr.IsValid() {
		return fmt.Errorf("ping check: invalid address %v", c.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	addr := c.Addr.Unmap()
	v6 := addr.Is6()
	laddr := "0.0.0.0"
	if v6 {
		laddr = "::"
	}
	if c.BindTo.IsValid() {
		laddr = c.BindTo.String()
	}
	udp, raw := "udp4", "ip4:icmp"
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if v6 {
		udp, raw = "udp6", "ip6:ipv6-icmp"
		echo, reply, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	privileged := false
	pc, err := icmp.ListenPacket(udp, laddr)
	if err != nil {
		if pc, err = icmp.ListenPacket(raw, laddr); err != nil {
			return fmt.Errorf("ping check: open icmp socket: %w", err)
		}
		privileged = true
	}
	defer pc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = pc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	id, seq := int(binary.BigEndian.Uint16(rnd[0:])), int(binary.BigEndian.Uint16(rnd[2:]))
	payload := append([]byte("sluice"), rnd[4:]...)
	msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fmt.Errorf("ping check: %w", err)
	}
	var dst net.Addr = &net.UDPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}
	if privileged {
		dst = &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}
	}
	if _, err := pc.WriteTo(b, dst); err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	buf := make([]byte, 1500)
	for range 256 { // a raw socket sees every ICMP packet of the host; bound the wait in packets too
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s: no reply: %w", addr, deadlineErr(err))
		}
		if fromAddr(from) != addr {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		// An unprivileged socket's ID is the kernel's, not ours.
		if !ok || e.Seq != seq || !bytes.Equal(e.Data, payload) || (privileged && e.ID != id) {
			continue
		}
		return nil
	}
	return fmt.Errorf("ping %s: no reply among the packets received", addr)
}

func fromAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	ad, _ := netip.AddrFromSlice(ip)
	return ad.Unmap()
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c PingCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. "PING_CHECK 10.0.0.2".
func (c PingCheck) String() string {
	return fmt.Sprintf("PING_CHECK %s [%v %v]", c.Addr, bindString(c.BindTo), c.CheckTimeout())
}
