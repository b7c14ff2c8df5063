// Package lab builds the standard direct-routing test bed on the netns harness, shared by the
// end-to-end tests and the demo: a client, a director holding the VIP, and real servers that
// hold the VIP on lo and answer HTTP with their own name, all on one bridge.
//
//	client 10.111.0.10 ─┐
//	director 10.111.0.2 ─┤ br0 (namespace "switch")
//	  + VIP 10.111.0.100 │
//	rs1..rsN 10.111.0.11.. ─┘  (VIP on lo, arp_ignore=1, arp_announce=2)
//
// 10.111.0.0/24 exists only inside the namespaces; nothing here routes to the host or beyond.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// Addresses of the test bed.
var (
	Subnet     = netip.MustParsePrefix("10.111.0.0/24")
	VIP        = netip.MustParseAddr("10.111.0.100")
	DirectorIP = netip.MustParseAddr("10.111.0.2")
	ClientIP   = netip.MustParseAddr("10.111.0.10")
	// FirstRealServerIP is rs1's address; rsN has FirstRealServerIP + N-1.
	FirstRealServerIP = netip.MustParseAddr("10.111.0.11")
)

const (
	// Port is the virtual service's and the real servers' TCP port.
	Port = 80
	// Iface is the name of every host's interface onto the bridge.
	Iface = "eth0"
	// RequestTimeout bounds one connection attempt, connect to last byte.
	RequestTimeout = 2 * time.Second
)

// Lab is a built test bed. Everything in it is undone by closing Env.
type Lab struct {
	Env      *netns.Env
	Switch   *netns.Switch
	Client   *netns.NS
	Director *netns.NS
	// DirectorPort is the bridge's end of the director's veth; it runs an XDP_PASS program so
	// that frames the director sends back out with XDP_TX are delivered.
	DirectorPort string
	RealServers  []*RealServer

	http *http.Client
}

// Build creates the test bed with n real servers (rs1..rsN), their HTTP servers running.
func Build(env *netns.Env, n int) (*Lab, error) {
	if n < 1 || n > 80 {
		return nil, fmt.Errorf("build lab: %d real servers, want 1..80", n)
	}
	l := &Lab{Env: env}
	var err error
	if l.Switch, err = env.NewSwitch("switch"); err != nil {
		return nil, err
	}

	// Client: its packets go through the director's XDP program, which forwards them as they
	// are, so they must carry full checksums.
	if l.Client, err = l.host("client", ClientIP); err != nil {
		return nil, err
	}
	if err := l.Client.TxOffloadOff(Iface); err != nil {
		return nil, err
	}
	l.http = l.Client.HTTPClient(RequestTimeout)

	// Director: the VIP on its interface, as keepalived's virtual_ipaddress (or an operator
	// without VRRP) would put it, so it answers ARP for the VIP.
	if l.Director, err = l.host("director", DirectorIP); err != nil {
		return nil, err
	}
	if err := l.Director.AddAddr(Iface, netip.PrefixFrom(VIP, 32)); err != nil {
		return nil, err
	}
	l.DirectorPort = "director"
	if err := l.Switch.NS.AttachXDPPass(l.DirectorPort); err != nil {
		return nil, err
	}

	addr := FirstRealServerIP
	for i := 1; i <= n; i++ {
		rs, err := l.realServer(fmt.Sprintf("rs%d", i), addr)
		if err != nil {
			return nil, err
		}
		l.RealServers = append(l.RealServers, rs)
		addr = addr.Next()
	}
	return l, nil
}

// host creates namespace name plugged into the switch with addr on its interface.
func (l *Lab) host(name string, addr netip.Addr) (*netns.NS, error) {
	ns, err := l.Env.NewNS(name)
	if err != nil {
		return nil, err
	}
	if _, err := l.Switch.Plug(ns, Iface); err != nil {
		return nil, err
	}
	if err := ns.AddAddr(Iface, netip.PrefixFrom(addr, Subnet.Bits())); err != nil {
		return nil, err
	}
	for _, ifname := range []string{"all", Iface} {
		if err := ns.Sysctl("net/ipv4/conf/"+ifname+"/rp_filter", "0"); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// realServer creates a DR real server: the VIP on lo, never answering ARP for it nor using it
// as the source of its own ARP requests, and an HTTP server on :80.
func (l *Lab) realServer(name string, addr netip.Addr) (*RealServer, error) {
	ns, err := l.host(name, addr)
	if err != nil {
		return nil, err
	}
	if err := ns.AddAddr("lo", netip.PrefixFrom(VIP, 32)); err != nil {
		return nil, err
	}
	for _, ifname := range []string{"all", Iface} {
		if err := ns.Sysctl("net/ipv4/conf/"+ifname+"/arp_ignore", "1"); err != nil {
			return nil, err
		}
		if err := ns.Sysctl("net/ipv4/conf/"+ifname+"/arp_announce", "2"); err != nil {
			return nil, err
		}
	}
	rs := &RealServer{Name: name, Addr: addr, NS: ns}
	if err := rs.Start(); err != nil {
		return nil, err
	}
	l.Env.Defer(func() error { rs.Stop(); return nil })
	return rs, nil
}

// RealServer is a namespace with an HTTP server that answers every request with its name.
type RealServer struct {
	Name string
	Addr netip.Addr
	NS   *netns.NS

	hits atomic.Int64
	mu   sync.Mutex
	srv  *http.Server
}

// Start starts the HTTP server on :80 (the real address and the VIP); a no-op when running.
func (rs *RealServer) Start() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.srv != nil {
		return nil
	}
	ln, err := rs.NS.Listen("tcp4", fmt.Sprintf(":%d", Port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rs.hits.Add(1)
			w.Header().Set(PeerHeader, r.RemoteAddr)
			io.WriteString(w, rs.Name+"\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	rs.srv = srv
	return nil
}

// Stop closes the listener and every open connection, so new connections are refused; a
// no-op when stopped.
func (rs *RealServer) Stop() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.srv == nil {
		return nil
	}
	err := rs.srv.Close()
	rs.srv = nil
	return err
}

// PeerHeader is the response header in which a real server reports the address the
// connection came from: in DR mode, the client's own.
const PeerHeader = "X-Peer-Addr"

// Hits is how many requests the server has answered.
func (rs *RealServer) Hits() int64 { return rs.hits.Load() }

// Health-check timing the e2e tests and the demo write into keepalived.conf. With retry 0 a
// real server that stops answering is out after at most DelayLoop+ConnectTimeout; ApplyMargin is
// what sluice may take on top to reprogram the data path.
const (
	DelayLoop      = 1 * time.Second
	ConnectTimeout = 1 * time.Second
	ApplyMargin    = 1500 * time.Millisecond
)

// KeepalivedConf returns a keepalived.conf with one DR virtual service on VIP:80, round robin,
// over every real server with a TCP_CHECK. retry 0 makes one failed check take a server out,
// so a dead server is noticed within delayLoop+connectTimeout.
func (l *Lab) KeepalivedConf(delayLoop, connectTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by sluice test/lab\n")
	fmt.Fprintf(&b, "virtual_server %s %d {\n", VIP, Port)
	fmt.Fprintf(&b, "    delay_loop %d\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n\n", secs(delayLoop))
	for _, rs := range l.RealServers {
		fmt.Fprintf(&b, "    real_server %s %d {\n", rs.Addr, Port)
		fmt.Fprintf(&b, "        weight 1\n")
		fmt.Fprintf(&b, "        TCP_CHECK {\n            connect_timeout %d\n            retry 0\n        }\n", secs(connectTimeout))
		fmt.Fprintf(&b, "    }\n")
	}
	fmt.Fprintf(&b, "}\n")
	return b.String()
}

func secs(d time.Duration) int {
	s := int(d.Round(time.Second) / time.Second)
	return max(s, 1)
}

// StartSluice starts `sluice run -f conf -n -l [extra...]` in the director namespace with its
// output to log. The Env stops it at Close if the caller has not.
func (l *Lab) StartSluice(bin, conf string, log io.Writer, extra ...string) (*netns.Proc, error) {
	cmd := l.Director.Command(bin, append([]string{"run", "-f", conf, "-n", "-l"}, extra...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second // never hang on a pipe a stray child holds open
	return l.Env.Start(cmd)
}

// Attempt is one connection from the client to the VIP.
type Attempt struct {
	Start    time.Time
	Duration time.Duration
	Server   string // the name the real server answered with; empty on error
	// Peer is the client address as the real server saw it (IP only).
	Peer string
	Err  error
}

// Get opens one new connection from the client to VIP:80, sends GET / with Connection: close
// and returns which real server answered.
func (l *Lab) Get(ctx context.Context) Attempt {
	return l.get(ctx, VIP)
}

func (l *Lab) get(ctx context.Context, dst netip.Addr) Attempt {
	a, _ := getAttempt(ctx, l.http, netip.AddrPortFrom(dst, Port))
	return a
}

// getAttempt makes one GET / to dst with c and says which real server answered, as whom the
// client appeared to it; it also returns the response's headers.
func getAttempt(ctx context.Context, c *http.Client, dst netip.AddrPort) (a Attempt, h http.Header) {
	a.Start = time.Now()
	defer func() { a.Duration = time.Since(a.Start) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dst.String()+"/", nil)
	if err != nil {
		a.Err = err
		return a, nil
	}
	resp, err := c.Do(req)
	if err != nil {
		a.Err = err
		return a, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		a.Err = fmt.Errorf("read response: %w", err)
		return a, resp.Header
	}
	if resp.StatusCode != http.StatusOK {
		a.Err = fmt.Errorf("status %s", resp.Status)
		return a, resp.Header
	}
	a.Server = strings.TrimSpace(string(body))
	if ap, err := netip.ParseAddrPort(resp.Header.Get(PeerHeader)); err == nil {
		a.Peer = ap.Addr().String()
	}
	return a, resp.Header
}

// Tally counts a series of attempts.
type Tally struct {
	Total    int
	Failed   []Attempt
	ByServer map[string]int
	// ByPeer counts the client addresses the real servers saw.
	ByPeer map[string]int
}

// Add counts a.
func (t *Tally) Add(a Attempt) {
	if t.ByServer == nil {
		t.ByServer = make(map[string]int)
		t.ByPeer = make(map[string]int)
	}
	t.Total++
	if a.Err != nil {
		t.Failed = append(t.Failed, a)
		return
	}
	t.ByServer[a.Server]++
	t.ByPeer[a.Peer]++
}

// Run makes n connections one after another and counts them; it stops early when ctx ends.
func (l *Lab) Run(ctx context.Context, n int) Tally {
	var t Tally
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t.Add(l.Get(ctx))
	}
	return t
}

// WaitReady waits, up to timeout, until the VIP answers and every real server whose HTTP
// server runs has answered through it at least once.
func (l *Lab) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := map[string]bool{}
	for _, rs := range l.RealServers {
		rs.mu.Lock()
		if rs.srv != nil {
			want[rs.Name] = true
		}
		rs.mu.Unlock()
	}
	seen := map[string]bool{}
	var last Attempt
	for i := 0; i < 10000; i++ {
		last = l.Get(ctx)
		if last.Err == nil {
			seen[last.Server] = true
			if len(seen) >= len(want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VIP %s:%d not ready within %v: servers seen %v, last attempt: %v",
				VIP, Port, timeout, keys(seen), last.Err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("VIP not ready: too many attempts")
}

// WaitServer makes connections until one is answered by server name, up to timeout, and
// returns every attempt it made.
func (l *Lab) WaitServer(ctx context.Context, name string, timeout time.Duration) ([]Attempt, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var all []Attempt
	for i := 0; i < 10000; i++ {
		a := l.Get(ctx)
		all = append(all, a)
		if a.Server == name {
			return all, nil
		}
		select {
		case <-ctx.Done():
			return all, fmt.Errorf("%s did not answer through the VIP within %v", name, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return all, fmt.Errorf("%s did not answer through the VIP: too many attempts", name)
}

func keys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return s
}

// XDPState describes the XDP program on the director's interface, as `ip -d link` would.
func (l *Lab) XDPState() (attached bool, desc string, err error) {
	x, err := l.Director.XDP(Iface)
	if err != nil {
		return false, "", err
	}
	if x == nil {
		return false, "no XDP program", nil
	}
	return true, fmt.Sprintf("%s, program id %d", netns.XDPModeName(x.AttachMode), x.ProgId), nil
}

// IPLinkShow returns `ip -d link show IFACE` run in the director's namespace.
func (l *Lab) IPLinkShow() (string, error) {
	out, err := l.Director.Command("ip", "-d", "link", "show", Iface).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip -d link show: %w: %s", err, out)
	}
	return string(out), nil
}
