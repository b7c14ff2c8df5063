package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// Addresses of the NAT test bed. The client and the director's front share one switch, the
// director's back and the real servers another; the real servers route everything via the
// director, as LVS-NAT requires.
//
//	client 10.112.0.10 ── front ── 10.112.0.2 director 10.113.0.1 ── back ── rs1..N 10.113.0.11..
//	                                + VIP 10.112.0.100                      (default via director)
var (
	NATVIP          = netip.MustParseAddr("10.112.0.100")
	NATVIP6         = netip.MustParseAddr("fd12:1::100")
	NATClientIP     = netip.MustParseAddr("10.112.0.10")
	NATClientIP6    = netip.MustParseAddr("fd12:1::10")
	natFront        = netip.MustParsePrefix("10.112.0.2/24")
	natFront6       = netip.MustParsePrefix("fd12:1::2/64")
	natBack         = netip.MustParsePrefix("10.113.0.1/24")
	natBack6        = netip.MustParsePrefix("fd12:2::1/64")
	natFirstServer  = netip.MustParseAddr("10.113.0.11")
	natFirstServer6 = netip.MustParseAddr("fd12:2::11")
)

// NATPort is the real servers' port; the virtual services listen on Port, so NAT maps ports too.
const NATPort = 8080

// NATLab is the test bed for lb_kind NAT.
type NATLab struct {
	Env      *netns.Env
	Client   *netns.NS
	Director *netns.NS
	Servers  []*NATServer

	http *http.Client
}

// NATServer is a real server behind the director answering HTTP on NATPort with its name.
type NATServer struct {
	Name        string
	Addr, Addr6 netip.Addr
	NS          *netns.NS
	hits        atomic.Int64
}

// Hits is how many requests the server has answered.
func (s *NATServer) Hits() int64 { return s.hits.Load() }

// BuildNAT creates the NAT test bed with n real servers.
func BuildNAT(env *netns.Env, n int) (*NATLab, error) {
	if n < 1 || n > 80 {
		return nil, fmt.Errorf("build NAT lab: %d real servers, want 1..80", n)
	}
	l := &NATLab{Env: env}
	front, err := env.NewSwitch("front")
	if err != nil {
		return nil, err
	}
	back, err := env.NewSwitch("back")
	if err != nil {
		return nil, err
	}

	// The client's and the real servers' packets go through XDP, which rewrites them: they
	// must carry full checksums.
	if l.Client, err = natHost(env, front, "client", netip.PrefixFrom(NATClientIP, 24), netip.PrefixFrom(NATClientIP6, 64)); err != nil {
		return nil, err
	}
	l.http = l.Client.HTTPClient(RequestTimeout)

	if l.Director, err = env.NewNS("director"); err != nil {
		return nil, err
	}
	for _, side := range []struct {
		sw      *netns.Switch
		ifName  string
		v4, v6  netip.Prefix
		vip     netip.Addr
		vip6    netip.Addr
		hasVIPs bool
	}{
		{front, "eth0", natFront, natFront6, NATVIP, NATVIP6, true},
		{back, "eth1", natBack, natBack6, netip.Addr{}, netip.Addr{}, false},
	} {
		port, err := side.sw.Plug(l.Director, side.ifName)
		if err != nil {
			return nil, err
		}
		// The director sends frames into this veth with XDP redirects and XDP_TX.
		if err := side.sw.NS.AttachXDPPass(port); err != nil {
			return nil, err
		}
		if err := l.Director.AddAddr(side.ifName, side.v4); err != nil {
			return nil, err
		}
		if err := addr6(l.Director, side.ifName, side.v6); err != nil {
			return nil, err
		}
		if side.hasVIPs {
			if err := l.Director.AddAddr(side.ifName, netip.PrefixFrom(side.vip, 32)); err != nil {
				return nil, err
			}
			if err := addr6(l.Director, side.ifName, netip.PrefixFrom(side.vip6, 128), deprecated); err != nil {
				return nil, err
			}
		}
	}
	// bpf_fib_lookup routes the translated packets, and needs forwarding on.
	for _, k := range []string{"net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding"} {
		if err := l.Director.Sysctl(k, "1"); err != nil {
			return nil, err
		}
	}

	a, a6 := natFirstServer, natFirstServer6
	for i := 1; i <= n; i++ {
		s := &NATServer{Name: fmt.Sprintf("rs%d", i), Addr: a, Addr6: a6}
		if s.NS, err = natHost(env, back, s.Name, netip.PrefixFrom(a, 24), netip.PrefixFrom(a6, 64)); err != nil {
			return nil, err
		}
		for _, gw := range []string{natBack.Addr().String(), natBack6.Addr().String()} {
			if out, err := s.NS.Command("ip", "route", "add", "default", "via", gw).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("default route via %s in %s: %w: %s", gw, s.Name, err, out)
			}
		}
		if err := s.serve(env); err != nil {
			return nil, err
		}
		l.Servers = append(l.Servers, s)
		a, a6 = a.Next(), a6.Next()
	}
	return l, nil
}

// natHost creates namespace name on switch sw with the two addresses, checksumming in software.
func natHost(env *netns.Env, sw *netns.Switch, name string, v4, v6 netip.Prefix) (*netns.NS, error) {
	ns, err := env.NewNS(name)
	if err != nil {
		return nil, err
	}
	if _, err := sw.Plug(ns, Iface); err != nil {
		return nil, err
	}
	if err := ns.AddAddr(Iface, v4); err != nil {
		return nil, err
	}
	if err := addr6(ns, Iface, v6); err != nil {
		return nil, err
	}
	if err := ns.TxOffloadOff(Iface); err != nil {
		return nil, err
	}
	return ns, nil
}

// serve runs the server's HTTP server on NATPort, IPv4 and IPv6, until env closes.
func (s *NATServer) serve(env *netns.Env) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set(PeerHeader, r.RemoteAddr)
		w.Header().Set(LocalHeader, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
		io.WriteString(w, s.Name+"\n")
	})
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := s.NS.Listen(network, fmt.Sprintf(":%d", NATPort))
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		env.Defer(srv.Close)
	}
	return nil
}

// LocalHeader is the response header in which a NAT real server reports the address and port
// the connection reached it on: its own, where DR and TUN servers see the VIP.
const LocalHeader = "X-Local-Addr"

// KeepalivedConf returns a keepalived.conf with two NAT virtual services, NATVIP:80 and
// [NATVIP6]:80, round robin over every real server's NATPort with a TCP_CHECK.
func (l *NATLab) KeepalivedConf(delayLoop, connectTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by sluice test/lab (NAT)\n")
	for _, vip := range []netip.Addr{NATVIP, NATVIP6} {
		fmt.Fprintf(&b, "virtual_server %s %d {\n", vip, Port)
		fmt.Fprintf(&b, "    delay_loop %d\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n\n", secs(delayLoop))
		for _, s := range l.Servers {
			addr := s.Addr
			if vip.Is6() {
				addr = s.Addr6
			}
			fmt.Fprintf(&b, "    real_server %s %d {\n", addr, NATPort)
			fmt.Fprintf(&b, "        weight 1\n")
			fmt.Fprintf(&b, "        TCP_CHECK {\n            connect_timeout %d\n            retry 0\n        }\n", secs(connectTimeout))
			fmt.Fprintf(&b, "    }\n")
		}
		fmt.Fprintf(&b, "}\n")
	}
	return b.String()
}

// StartSluice starts `sluice run -f conf -n -l` in the director namespace, as Lab.StartSluice.
func (l *NATLab) StartSluice(bin, conf string, log io.Writer) (*netns.Proc, error) {
	cmd := l.Director.Command(bin, "run", "-f", conf, "-n", "-l")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	return l.Env.Start(cmd)
}

// NATAttempt is one connection from the client to a VIP.
type NATAttempt struct {
	Attempt
	// Local is the address and port the real server saw the connection arrive on.
	Local string
}

// Get opens one new connection from the client to vip:80 and says who answered.
func (l *NATLab) Get(ctx context.Context, vip netip.Addr) NATAttempt {
	a, h := getAttempt(ctx, l.http, netip.AddrPortFrom(vip, Port))
	return NATAttempt{Attempt: a, Local: h.Get(LocalHeader)}
}

// WaitReady waits, up to timeout, until every real server has answered through vip.
func (l *NATLab) WaitReady(ctx context.Context, vip netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := map[string]bool{}
	var last NATAttempt
	for i := 0; i < 10000; i++ {
		last = l.Get(ctx, vip)
		if last.Err == nil {
			seen[last.Server] = true
			if len(seen) >= len(l.Servers) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VIP %s not ready within %v: servers seen %v, last attempt: %v", vip, timeout, keys(seen), last.Err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("VIP not ready: too many attempts")
}
