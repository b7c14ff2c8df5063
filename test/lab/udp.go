package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// UDP ports of the echo service: the virtual services listen on UDPPort; DR and TUN real
// servers answer on it too, NAT real servers on NATUDPPort, so NAT maps ports as for TCP.
const (
	UDPPort    = 7
	NATUDPPort = 7007
)

// UDPCheckPayload is what the UDP_CHECK of UDPServiceConf sends; the echo server's reply
// starts with it, which the check's require_reply demands.
const UDPCheckPayload = "sluice-udp-check"

// maxDatagram bounds what an echo server reads and a client accepts.
const maxDatagram = 2048

// UDPEcho is a UDP echo server in a real server's namespace: it answers every datagram with
// the datagram, a newline and the server's name, from the address the datagram was sent to.
type UDPEcho struct {
	Name      string
	datagrams atomic.Int64

	mu    sync.Mutex
	conns []*net.UDPConn
}

// Stop closes the server's sockets: datagrams to it are then refused with ICMP port
// unreachable. It cannot be restarted.
func (e *UDPEcho) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, c := range e.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	e.conns = nil
	return errors.Join(errs...)
}

// Datagrams is how many datagrams the server has answered, health checks included.
func (e *UDPEcho) Datagrams() int64 { return e.datagrams.Load() }

// ServeUDPEcho starts an echo server named name in ns, with one socket per address in addrs
// ("10.0.0.1:7", "[::]:7007"); it runs until env closes. A socket bound to a specific address
// answers from it, which is how DR and TUN real servers answer from the VIP: a wildcard
// socket would answer from the address the route to the client prefers.
func ServeUDPEcho(env *netns.Env, ns *netns.NS, name string, addrs ...string) (*UDPEcho, error) {
	e := &UDPEcho{Name: name}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil, fmt.Errorf("serve udp echo in %s: %w", ns.Short, err)
		}
		network := "udp4"
		if ap.Addr().Is6() {
			network = "udp6"
		}
		var c *net.UDPConn
		if err := ns.Do(func() error {
			var err error
			c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
			return err
		}); err != nil {
			return nil, fmt.Errorf("listen %s %s in %s: %w", network, a, ns.Short, err)
		}
		env.Defer(func() error { c.Close(); return nil })
		e.mu.Lock()
		e.conns = append(e.conns, c)
		e.mu.Unlock()
		go e.serve(c)
	}
	return e, nil
}

// serve answers datagrams on c until c is closed.
func (e *UDPEcho) serve(c *net.UDPConn) {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error queued on the socket, say
		}
		reply := append(bytes.Clone(buf[:n]), "\n"+e.Name...)
		if _, err := c.WriteToUDPAddrPort(reply, from); err == nil {
			e.datagrams.Add(1)
		}
	}
}

// ParseEcho splits an echo server's reply into the payload it echoed and the server's name.
func ParseEcho(reply []byte) (payload, server string, err error) {
	i := bytes.LastIndexByte(reply, '\n')
	if i < 0 {
		return "", "", fmt.Errorf("parse echo reply %q: no server name", reply)
	}
	return string(reply[:i]), string(reply[i+1:]), nil
}

// ServeUDP starts a UDP echo server on every real server, answering on VIP:UDPPort (for the
// client, through the director) and on its own address (for the health checks).
func (l *Lab) ServeUDP() ([]*UDPEcho, error) {
	var es []*UDPEcho
	for _, rs := range l.RealServers {
		e, err := ServeUDPEcho(l.Env, rs.NS, rs.Name,
			netip.AddrPortFrom(VIP, UDPPort).String(), netip.AddrPortFrom(rs.Addr, UDPPort).String())
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// ServeUDP starts a UDP echo server on every real server on NATUDPPort, IPv4 and IPv6; it
// answers from the server's own address, which the director translates back to the VIP.
func (l *NATLab) ServeUDP() ([]*UDPEcho, error) {
	var es []*UDPEcho
	for _, s := range l.Servers {
		e, err := ServeUDPEcho(l.Env, s.NS, s.Name,
			fmt.Sprintf("0.0.0.0:%d", NATUDPPort), fmt.Sprintf("[::]:%d", NATUDPPort))
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// UDPServiceConf returns one keepalived.conf virtual_server block: protocol UDP on vip:UDPPort
// with lb_kind kind, round robin over reals on port rport, each with a UDP_CHECK that sends
// UDPCheckPayload and requires a reply starting with it.
func UDPServiceConf(kind string, vip netip.Addr, rport int, reals []netip.Addr, delayLoop, connectTimeout time.Duration) string {
	hex := fmt.Sprintf("%x", UDPCheckPayload)
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_server %s %d {\n", vip, UDPPort)
	fmt.Fprintf(&b, "    delay_loop %d\n    lb_algo rr\n    lb_kind %s\n    protocol UDP\n\n", secs(delayLoop), kind)
	for _, r := range reals {
		fmt.Fprintf(&b, "    real_server %s %d {\n", r, rport)
		fmt.Fprintf(&b, "        weight 1\n")
		fmt.Fprintf(&b, "        UDP_CHECK {\n            connect_timeout %d\n            retry 0\n", secs(connectTimeout))
		fmt.Fprintf(&b, "            payload %s\n            require_reply %s\n        }\n", hex, hex)
		fmt.Fprintf(&b, "    }\n")
	}
	fmt.Fprintf(&b, "}\n")
	return b.String()
}

// UDPClient is a UDP socket in the client's namespace bound to one source address and port:
// every datagram it sends belongs to one flow.
type UDPClient struct {
	c *net.UDPConn
}

// NewUDPClient opens an unconnected UDP socket in ns on laddr with an ephemeral port, so that
// replies from any source are received and their source can be checked. Env closes it if the
// caller has not.
func NewUDPClient(env *netns.Env, ns *netns.NS, laddr netip.Addr) (*UDPClient, error) {
	network := "udp4"
	if laddr.Is6() {
		network = "udp6"
	}
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(laddr, 0)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("udp socket on %s in %s: %w", laddr, ns.Short, err)
	}
	env.Defer(func() error { c.Close(); return nil })
	return &UDPClient{c: c}, nil
}

// LocalAddr is the socket's address and port: the flow's source.
func (u *UDPClient) LocalAddr() netip.AddrPort { return u.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket.
func (u *UDPClient) Close() error { return u.c.Close() }

// UDPReply is the answer to one datagram.
type UDPReply struct {
	// From is the reply's source address and port.
	From netip.AddrPort
	// Server is the name of the real server that echoed the datagram.
	Server string
	// Tries is how many times the datagram was sent.
	Tries int
}

// Exchange sends payload to dst and waits up to timeout for its echo, sending it again up to
// retries times; replies that do not echo payload (late answers to earlier datagrams) are
// skipped.
func (u *UDPClient) Exchange(dst netip.AddrPort, payload string, timeout time.Duration, retries int) (UDPReply, error) {
	buf := make([]byte, maxDatagram)
	var last error
	for try := 1; try <= retries+1; try++ {
		if _, err := u.c.WriteToUDPAddrPort([]byte(payload), dst); err != nil {
			return UDPReply{}, fmt.Errorf("send to %s: %w", dst, err)
		}
		deadline := time.Now().Add(timeout)
		u.c.SetReadDeadline(deadline)
		for i := 0; i < 100 && time.Now().Before(deadline); i++ {
			n, from, err := u.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				last = err
				if errors.Is(err, net.ErrClosed) {
					return UDPReply{}, err
				}
				continue
			}
			got, server, err := ParseEcho(buf[:n])
			if err != nil || got != payload {
				last = fmt.Errorf("stray reply %q from %s", buf[:n], from)
				continue
			}
			return UDPReply{From: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Server: server, Tries: try}, nil
		}
	}
	return UDPReply{}, fmt.Errorf("no echo of %q from %s after %d tries: %w", payload, dst, retries+1, last)
}
