package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/test/netns"
	"github.com/sluice-lb/sluice/vrrp"
)

// CapturedAdvert is one VRRP advertisement seen on the wire.
type CapturedAdvert struct {
	// At is the kernel's receive timestamp (SO_TIMESTAMPNS).
	At       time.Time
	Src, Dst netip.Addr
	Packet   *vrrp.Packet
}

// AdvertCapture records every valid VRRP advertisement (IPv4 or IPv6, protocol 112) that
// arrives on one interface, through an AF_PACKET socket with kernel timestamps.
type AdvertCapture struct {
	fd   int
	done chan struct{}
	stop chan struct{}

	mu      sync.Mutex
	adverts []CapturedAdvert
	err     error
}

// captureMax bounds how many adverts a capture keeps.
const captureMax = 100000

// CaptureAdverts starts capturing on interface ifname of ns. Close stops it.
func CaptureAdverts(ns *netns.NS, ifname string) (*AdvertCapture, error) {
	link, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	fd := -1
	err = ns.Do(func() error {
		var err error
		// SOCK_DGRAM: frames without their link-layer header, so data starts at the IP header.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		return errors.Join(
			unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
			// Bounds every read, so Close is noticed within this time.
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}),
		)
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns, err)
	}
	c := &AdvertCapture{fd: fd, done: make(chan struct{}), stop: make(chan struct{})}
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *AdvertCapture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
					at = time.Unix(sec, nsec)
				}
			}
		}
		if a, ok := parseAdvert(buf[:n]); ok {
			a.At = at
			c.mu.Lock()
			if len(c.adverts) < captureMax {
				c.adverts = append(c.adverts, a)
			}
			c.mu.Unlock()
		}
	}
}

// parseAdvert decodes an IPv4 or IPv6 packet carrying a valid VRRP advertisement.
func parseAdvert(b []byte) (CapturedAdvert, bool) {
	var a CapturedAdvert
	var payload []byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if b[9] != vrrp.Protocol || ihl < 20 || total < ihl || total > len(b) {
			return a, false
		}
		a.Src, _ = netip.AddrFromSlice(b[12:16])
		a.Dst, _ = netip.AddrFromSlice(b[16:20])
		payload = b[ihl:total]
	case len(b) >= 40 && b[0]>>4 == 6:
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if b[6] != vrrp.Protocol || 40+plen > len(b) {
			return a, false
		}
		a.Src, _ = netip.AddrFromSlice(b[8:24])
		a.Dst, _ = netip.AddrFromSlice(b[24:40])
		payload = b[40 : 40+plen]
	default:
		return a, false
	}
	p, err := vrrp.Unmarshal(payload, a.Src, a.Dst)
	if err != nil {
		return a, false
	}
	a.Packet = p
	return a, true
}

// Adverts returns what was captured so far, in order of arrival.
func (c *AdvertCapture) Adverts() []CapturedAdvert {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CapturedAdvert(nil), c.adverts...)
}

// Err returns the error that stopped the capture, if any.
func (c *AdvertCapture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the capture and closes its socket.
func (c *AdvertCapture) Close() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.done
	return unix.Close(c.fd)
}
