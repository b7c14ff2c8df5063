// Package conformance is the behaviour both data planes must show, written once and run against
// each: the XDP data plane on the host kernel (this package's own test) and kernel IPVS in the
// VM test/vm boots (test/vm/guest). Each Case is a keepalived.conf virtual service, a series of
// actions (a real server's health check failing, a reload changing weights or adding a server)
// and what the client must see after each: which real servers answer new connections and in
// what proportion, one client sticking to one server, an established connection surviving.
// Any semantic difference between the data planes shows up as a failing case.
//
// The cases run the real `sluice run` binary on the namespace test beds of test/lab: the DR lab
// (client, director and real servers on one bridge) and the NAT lab (the director routing
// between the client's network and the real servers').
package conformance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// Target is the data plane under test.
type Target struct {
	// Dataplane is sluice run's --dataplane value: "xdp" or "ipvs".
	Dataplane string
	// Bin is the sluice binary.
	Bin string
	// Skip maps a case's name to why it is skipped on this target; a skipped case must name the
	// issue that will make it pass.
	Skip map[string]string
}

// Kind is the forwarding method of a case, which decides its test bed.
type Kind string

// Forwarding methods the suite covers. DR6 is DR of an IPv6 virtual service; TUN is IPIP.
const (
	DR  Kind = "DR"
	NAT Kind = "NAT"
	TUN Kind = "TUN"
	DR6 Kind = "DR6"
)

// Kinds are the test beds Run builds, in order.
var Kinds = []Kind{DR, NAT, TUN, DR6}

// lbKind is the case's keepalived lb_kind.
func (k Kind) lbKind() string {
	if k == DR6 {
		return "DR"
	}
	return string(k)
}

// Servers is how many real servers (rs1..rs3) every test bed has.
const Servers = 3

// CheckPort is the port of each real server's health check (TCP_CHECK connect_port). A check
// listener of its own, next to the HTTP server, lets a case fail a server's check while the
// server would still answer: the only way a data plane keeps it out is by honouring the check.
const CheckPort = 81

// Service is the virtual service of a case's keepalived.conf.
type Service struct {
	// Algo is lb_algo.
	Algo string
	// Weights are rs1..rs3's weights; a negative weight leaves the server out of the file.
	Weights [Servers]int
	// Persistence is persistence_timeout in seconds; 0 for none.
	Persistence int
	// Flags are lines added to the virtual_server block, such as "sh-port".
	Flags []string
}

// Step is an action and what the client must see after it.
type Step struct {
	Name string
	// Reload, when set, rewrites keepalived.conf with this service and sends SIGHUP.
	Reload *Service
	// FailCheck and PassCheck close and reopen these servers' check listeners (1-based; 0 is
	// the server the client stuck to in the previous, sticky step).
	FailCheck, PassCheck []int
	// Keep opens a keep-alive connection before the action, answered by one of KeepOn (any
	// server when empty), and requires it to keep answering from that server after the action.
	Keep   bool
	KeepOn []string
	// Connections is how many new connections the client opens once the action has taken
	// effect (the set of servers answering is what Share says, within a settle time).
	Connections int
	// Share is each answering server's weight in the spread of the new connections; a server
	// missing from Share must answer none. Nil with Sticky.
	Share map[string]int
	// Sticky requires every new connection to land on the same server, one of Share's when
	// Share is set.
	Sticky bool
}

// Case is one behaviour: a virtual service and the steps run on it.
type Case struct {
	Name  string
	Kind  Kind
	Conf  Service
	Steps []Step
}

// share builds a Share map from name/weight pairs.
func share(kv ...any) map[string]int {
	m := map[string]int{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(int)
	}
	return m
}

func svc(algo string, w1, w2, w3 int, flags ...string) *Service {
	return &Service{Algo: algo, Weights: [Servers]int{w1, w2, w3}, Flags: flags}
}

// Cases are the behaviours both data planes must show.
func Cases() []Case {
	var out []Case
	for _, k := range []Kind{DR, NAT} {
		out = append(out,
			Case{Name: string(k) + "/rr spread", Kind: k, Conf: *svc("rr", 1, 1, 1), Steps: []Step{
				{Name: "three servers share equally", Connections: 30, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
			}},
			Case{Name: string(k) + "/wrr weights", Kind: k, Conf: *svc("wrr", 3, 2, 1), Steps: []Step{
				{Name: "3:2:1", Connections: 36, Share: share("rs1", 3, "rs2", 2, "rs3", 1)},
			}},
			Case{Name: string(k) + "/health removal", Kind: k, Conf: *svc("rr", 1, 1, 1), Steps: []Step{
				{Name: "all up", Connections: 12, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
				{Name: "rs2's check fails: it gets no new connections", FailCheck: []int{2}, Connections: 12, Share: share("rs1", 1, "rs3", 1)},
				{Name: "rs2's check passes again: it is back", PassCheck: []int{2}, Connections: 12, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
			}},
			Case{Name: string(k) + "/weight 0 drains", Kind: k, Conf: *svc("wrr", 1, 1, 1), Steps: []Step{
				{Name: "rs1 to weight 0: no new connections, its established one continues", Reload: svc("wrr", 0, 1, 1),
					Keep: true, KeepOn: []string{"rs1"}, Connections: 12, Share: share("rs2", 1, "rs3", 1)},
				{Name: "rs1 back to weight 1", Reload: svc("wrr", 1, 1, 1), Connections: 12, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
			}},
			Case{Name: string(k) + "/reload adds a server", Kind: k, Conf: *svc("rr", 1, 1, -1), Steps: []Step{
				{Name: "two servers", Connections: 12, Share: share("rs1", 1, "rs2", 1)},
				{Name: "rs3 added: it takes its share, established connections survive the reload", Reload: svc("rr", 1, 1, 1),
					Keep: true, Connections: 12, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
			}},
		)
	}
	// The same behaviour through an IPIP tunnel and for an IPv6 virtual service: weights, and a
	// drain keeping an established connection on its server (two cases each: the emulated VM's
	// run has room for no more).
	for _, k := range []Kind{TUN, DR6} {
		out = append(out,
			Case{Name: string(k) + "/wrr weights", Kind: k, Conf: *svc("wrr", 3, 2, 1), Steps: []Step{
				{Name: "3:2:1", Connections: 36, Share: share("rs1", 3, "rs2", 2, "rs3", 1)},
			}},
			Case{Name: string(k) + "/weight 0 drains", Kind: k, Conf: *svc("wrr", 1, 1, 1), Steps: []Step{
				{Name: "rs1 to weight 0: no new connections, its established one continues", Reload: svc("wrr", 0, 1, 1),
					Keep: true, KeepOn: []string{"rs1"}, Connections: 12, Share: share("rs2", 1, "rs3", 1)},
				{Name: "rs1 back to weight 1", Reload: svc("wrr", 1, 1, 1), Connections: 12, Share: share("rs1", 1, "rs2", 1, "rs3", 1)},
			}},
		)
	}
	out = append(out,
		Case{Name: "DR/sh same client same server", Kind: DR, Conf: *svc("sh", 1, 1, 1), Steps: []Step{
			{Name: "one client sticks", Connections: 12, Sticky: true},
			{Name: "its server's check fails: it moves to another and sticks there", FailCheck: []int{0}, Connections: 12, Sticky: true},
		}},
		Case{Name: "DR/mh same client same server", Kind: DR, Conf: *svc("mh", 1, 1, 1), Steps: []Step{
			{Name: "one client sticks", Connections: 12, Sticky: true},
		}},
		Case{Name: "NAT/sh same client same server", Kind: NAT, Conf: *svc("sh", 1, 1, 1), Steps: []Step{
			{Name: "one client sticks", Connections: 12, Sticky: true},
		}},
		Case{Name: "DR/persistence_timeout", Kind: DR, Conf: Service{Algo: "rr", Weights: [Servers]int{1, 1, 1}, Persistence: 60}, Steps: []Step{
			{Name: "rr with persistence: one client sticks to one server", Connections: 12, Sticky: true},
		}},
		Case{Name: "NAT/persistence_timeout", Kind: NAT, Conf: Service{Algo: "rr", Weights: [Servers]int{1, 1, 1}, Persistence: 60}, Steps: []Step{
			{Name: "rr with persistence: one client sticks to one server", Connections: 12, Sticky: true},
		}},
	)
	return out
}

// Health-check timing of the generated keepalived.conf and how long a step may take to show.
const (
	delayLoop      = lab.DelayLoop
	connectTimeout = lab.ConnectTimeout
	settleTimeout  = delayLoop + connectTimeout + lab.ApplyMargin + 10*time.Second
)

// Run runs every case on target as subtests KIND/NAME. The cases of one kind share one test bed,
// built once (building namespaces is most of a case's time in an emulated VM); each case starts
// sluice afresh on it with every health check passing, and stops it at its end.
func Run(t *testing.T, target Target) {
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			var why []string
			for _, c := range Cases() {
				if c.Kind == k && target.Skip[c.Name] == "" {
					why = nil
					break
				} else if c.Kind == k && !slices.Contains(why, target.Skip[c.Name]) {
					why = append(why, target.Skip[c.Name])
				}
			}
			if len(why) > 0 { // every case skipped: do not build the bed
				t.Skip(strings.Join(why, "; "))
			}
			b := build(t, netns.ForTest(t), k)
			for _, c := range Cases() {
				if c.Kind != k {
					continue
				}
				t.Run(strings.TrimPrefix(c.Name, string(k)+"/"), func(t *testing.T) {
					if why := target.Skip[c.Name]; why != "" {
						t.Skip(why)
					}
					runCase(t, target, b, c)
				})
			}
		})
	}
}

// bed is a built test bed as a case sees it.
type bed struct {
	kind     Kind
	env      *netns.Env
	director *netns.NS
	client   *netns.NS
	vip      netip.Addr
	clientIP netip.Addr // the client's address, which the real servers must see
	servers  []backend
	// nextPort is the client's next source port (see dial).
	nextPort int
}

type backend struct {
	name  string
	addr  netip.Addr
	port  int
	ns    *netns.NS
	check *checkListener
}

func build(t *testing.T, env *netns.Env, k Kind) *bed {
	t.Helper()
	b := &bed{kind: k, env: env, nextPort: firstPort}
	switch k {
	case DR:
		l, err := lab.Build(env, Servers)
		if err != nil {
			t.Fatalf("build DR lab: %v", err)
		}
		b.director, b.client, b.vip, b.clientIP = l.Director, l.Client, lab.VIP, lab.ClientIP
		for _, rs := range l.RealServers {
			b.servers = append(b.servers, backend{name: rs.Name, addr: rs.Addr, port: lab.Port, ns: rs.NS})
		}
	case NAT:
		l, err := lab.BuildNAT(env, Servers)
		if err != nil {
			t.Fatalf("build NAT lab: %v", err)
		}
		b.director, b.client, b.vip, b.clientIP = l.Director, l.Client, lab.NATVIP, lab.NATClientIP
		for _, rs := range l.Servers {
			b.servers = append(b.servers, backend{name: rs.Name, addr: rs.Addr, port: lab.NATPort, ns: rs.NS})
		}
	case TUN, DR6:
		// Real servers decapsulating IPIP and holding the VIPs on lo, with IPv6 on every host.
		tl, err := lab.BuildTUN(env, Servers)
		if err != nil {
			t.Fatalf("build TUN lab: %v", err)
		}
		b.director, b.client, b.vip, b.clientIP = tl.Director, tl.Client, lab.VIP, lab.ClientIP
		if k == DR6 {
			b.vip, b.clientIP = lab.VIP6, lab.ClientIP6
		}
		for i, rs := range tl.RealServers {
			addr := rs.Addr
			if k == DR6 {
				addr = lab.RealServerIP6(i)
			}
			b.servers = append(b.servers, backend{name: rs.Name, addr: addr, port: lab.Port, ns: rs.NS})
		}
	default:
		t.Fatalf("unknown kind %q", k)
	}
	for i := range b.servers {
		c := &checkListener{ns: b.servers[i].ns}
		if err := c.open(); err != nil {
			t.Fatalf("check listener of %s: %v", b.servers[i].name, err)
		}
		t.Cleanup(c.close)
		b.servers[i].check = c
	}
	return b
}

// Source ports of the client's connections: each connection of a test bed gets the next one.
// IPVS keeps its connection entries after the service is deleted (as over a sluice restart),
// and a new connection from a port an entry still holds follows that entry instead of being
// scheduled; the kernel's own choice of source ports comes back to a port within a few hundred
// connections, so a later case, or a later step, could see an earlier one's forwarding.
const (
	firstPort = 10000
	lastPort  = 65000
)

// dial opens a new TCP connection from the client to the VIP, from the bed's next source port.
func (b *bed) dial(ctx context.Context) (net.Conn, error) {
	var last error
	for try := 0; try < 3; try++ {
		port := b.nextPort
		if b.nextPort++; b.nextPort > lastPort {
			b.nextPort = firstPort
		}
		ctx, cancel := context.WithTimeout(ctx, lab.RequestTimeout)
		var conn net.Conn
		err := b.client.Do(func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}}
			var err error
			conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(b.vip, lab.Port).String())
			return err
		})
		cancel()
		if err == nil {
			return conn, nil
		}
		if last = err; !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, last
}

// get opens one new connection to the VIP, makes one request and says who answered.
func (b *bed) get(ctx context.Context) (a lab.Attempt) {
	a.Start = time.Now()
	defer func() { a.Duration = time.Since(a.Start) }()
	conn, err := b.dial(ctx)
	if err != nil {
		a.Err = err
		return a
	}
	defer conn.Close()
	h := &heldConn{conn: conn, r: bufio.NewReader(conn)}
	a.Server, a.Peer, a.Err = h.request(true)
	return a
}

// conf is the keepalived.conf of s on the bed.
func (b *bed) conf(s Service) string {
	var w strings.Builder
	fmt.Fprintf(&w, "# generated by sluice test/conformance\nvirtual_server %s %d {\n", b.vip, lab.Port)
	fmt.Fprintf(&w, "    delay_loop %d\n    lb_algo %s\n    lb_kind %s\n    protocol TCP\n", int(delayLoop/time.Second), s.Algo, b.kind.lbKind())
	if s.Persistence > 0 {
		fmt.Fprintf(&w, "    persistence_timeout %d\n", s.Persistence)
	}
	for _, f := range s.Flags {
		fmt.Fprintf(&w, "    %s\n", f)
	}
	for i, rs := range b.servers {
		if s.Weights[i] < 0 {
			continue
		}
		fmt.Fprintf(&w, "    real_server %s %d {\n        weight %d\n", rs.addr, rs.port, s.Weights[i])
		fmt.Fprintf(&w, "        TCP_CHECK {\n            connect_port %d\n            connect_timeout %d\n            retry 0\n        }\n    }\n",
			CheckPort, int(connectTimeout/time.Second))
	}
	w.WriteString("}\n")
	return w.String()
}

// checkListener is a real server's health-check port: accepting while open, refusing while
// closed.
type checkListener struct {
	ns *netns.NS
	mu sync.Mutex
	ln net.Listener
}

func (c *checkListener) open() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return nil
	}
	ln, err := c.ns.Listen("tcp", fmt.Sprintf(":%d", CheckPort)) // IPv4 and IPv6
	if err != nil {
		return err
	}
	go func() {
		for i := 0; i < 1_000_000; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	c.ln = ln
	return nil
}

func (c *checkListener) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
}

// daemon is the sluice under test.
type daemon struct {
	proc *netns.Proc
	conf string
	log  *lab.LogTail
}

func start(t *testing.T, target Target, b *bed, s Service) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{conf: filepath.Join(dir, "keepalived.conf")}
	if err := os.WriteFile(d.conf, []byte(b.conf(s)), 0o600); err != nil {
		t.Fatal(err)
	}
	var ended atomic.Bool
	d.log = &lab.LogTail{OnLine: func(line string) {
		if !ended.Load() {
			t.Log("sluice: " + line)
		}
	}}
	cmd := b.director.Command(target.Bin, "run", "-f", d.conf, "-n", "-l", "--dataplane", target.Dataplane,
		"--socket", filepath.Join(dir, "sluice.sock"))
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.WaitDelay = 5 * time.Second
	var err error
	if d.proc, err = b.env.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer ended.Store(true)
		select {
		case <-d.proc.Done():
			t.Errorf("sluice exited before the case ended: %v", d.proc.Err())
			return
		default:
		}
		if err := d.proc.Stop(10 * time.Second); err != nil {
			t.Errorf("sluice did not exit cleanly on SIGTERM: %v", err)
		}
	})
	return d
}

func (d *daemon) reload(t *testing.T, conf string) {
	t.Helper()
	if err := os.WriteFile(d.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
}

func runCase(t *testing.T, target Target, b *bed, c Case) {
	for _, s := range b.servers {
		if err := s.check.open(); err != nil {
			t.Fatalf("check listener of %s: %v", s.name, err)
		}
	}
	d := start(t, target, b, c.Conf)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := settle(ctx, b, d, readyStep(c.Conf)); err != nil {
		t.Fatalf("sluice not serving the initial configuration: %v", err)
	}
	var sticky string // the server a sticky client stuck to in the previous step
	for _, st := range c.Steps {
		ok := t.Run(st.Name, func(t *testing.T) {
			var held *heldConn
			if st.Keep {
				var err error
				if held, err = hold(ctx, b, st.KeepOn); err != nil {
					t.Fatalf("open a connection to be kept: %v", err)
				}
				defer held.close()
			}
			for _, n := range st.FailCheck {
				if n == 0 { // the server the client stuck to
					if n = serverIndex(b, sticky) + 1; n == 0 {
						t.Fatalf("FailCheck 0 needs a sticky step before it")
					}
				}
				b.servers[n-1].check.close()
			}
			for _, n := range st.PassCheck {
				if err := b.servers[n-1].check.open(); err != nil {
					t.Fatal(err)
				}
			}
			if st.Reload != nil {
				d.reload(t, b.conf(*st.Reload))
			}
			if err := settle(ctx, b, d, st); err != nil {
				t.Fatal(err)
			}
			if held != nil {
				if err := held.again(); err != nil {
					t.Errorf("the connection established before the step did not survive it: %v", err)
				}
			}
			got := tally(ctx, b, st.Connections)
			for peer, n := range got.ByPeer {
				if peer != b.clientIP.String() {
					t.Errorf("real servers saw %d connections from %q, want the client's own address %s", n, peer, b.clientIP)
				}
			}
			if st.Sticky {
				checkSticky(t, got, st, sticky, len(st.FailCheck) > 0)
				for name := range got.ByServer {
					sticky = name
				}
				return
			}
			checkShare(t, got, st.Share)
		})
		if !ok {
			return
		}
		select {
		case <-d.proc.Done():
			t.Fatalf("sluice exited: %v", d.proc.Err())
		default:
		}
	}
}

// readyStep is what the client sees once sluice serves s: every server with a weight answering,
// or, under a hashing scheduler or persistence, one server answering every connection.
func readyStep(s Service) Step {
	st := Step{Share: map[string]int{}}
	for i, w := range s.Weights {
		if w > 0 {
			st.Share[fmt.Sprintf("rs%d", i+1)] = 1
		}
	}
	if s.Persistence > 0 || s.Algo == "sh" || s.Algo == "mh" || s.Algo == "dh" {
		st.Sticky = true
	}
	return st
}

func serverIndex(b *bed, name string) int {
	for i, s := range b.servers {
		if s.name == name {
			return i
		}
	}
	return -1
}

// settle makes connections until the servers answering them are exactly the step's (each of
// Share answering and no other in a round of 2×len(Share) connections; for a sticky step, a
// round all on one server that is not one whose check failed), or settleTimeout passes.
func settle(ctx context.Context, b *bed, d *daemon, st Step) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	failed := map[string]bool{}
	for _, s := range b.servers {
		if !s.check.isOpen() {
			failed[s.name] = true
		}
	}
	var last lab.Tally
	for i := 0; i < 1000; i++ {
		select {
		case <-d.proc.Done():
			return fmt.Errorf("sluice exited: %v", d.proc.Err())
		default:
		}
		n := 2 * max(len(st.Share), 3)
		last = tally(ctx, b, n)
		if ctx.Err() != nil {
			break
		}
		if len(last.Failed) == 0 && matches(last, st, failed) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	errs := ""
	if len(last.Failed) > 0 {
		errs = fmt.Sprintf(", %d failed (%v)", len(last.Failed), last.Failed[0].Err)
	}
	return fmt.Errorf("within %v the answering servers did not become what the step expects: last round %v%s",
		settleTimeout, last.ByServer, errs)
}

func matches(got lab.Tally, st Step, failed map[string]bool) bool {
	if st.Sticky {
		if len(got.ByServer) != 1 {
			return false
		}
		for name := range got.ByServer {
			if failed[name] {
				return false
			}
		}
		return st.Share == nil || st.Share[onlyKey(got.ByServer)] > 0
	}
	for name, n := range got.ByServer {
		if st.Share[name] <= 0 && n > 0 {
			return false
		}
	}
	for name, w := range st.Share {
		if w > 0 && got.ByServer[name] == 0 {
			return false
		}
	}
	return true
}

func onlyKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

func (c *checkListener) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ln != nil
}

func tally(ctx context.Context, b *bed, n int) lab.Tally {
	var t lab.Tally
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t.Add(b.get(ctx))
	}
	return t
}

// checkShare requires every connection to succeed and each server's count to be its share of
// the total within a third of it (round robin per CPU may interleave), and zero for a server
// without a share.
func checkShare(t *testing.T, got lab.Tally, want map[string]int) {
	t.Helper()
	for _, a := range got.Failed {
		t.Errorf("connection failed after %v: %v", a.Duration.Round(time.Millisecond), a.Err)
	}
	total := 0
	for _, w := range want {
		total += w
	}
	n := got.Total - len(got.Failed)
	seen := map[string]bool{}
	for k := range want {
		seen[k] = true
	}
	for k := range got.ByServer {
		seen[k] = true
	}
	names := slices.Sorted(maps.Keys(seen))
	for _, name := range names {
		w := want[name]
		if w <= 0 {
			if got.ByServer[name] > 0 {
				t.Errorf("%s answered %d of %d new connections, want none (all: %v)", name, got.ByServer[name], n, got.ByServer)
			}
			continue
		}
		exp := float64(n) * float64(w) / float64(total)
		if c := float64(got.ByServer[name]); c < exp*2/3 || c > exp*4/3 {
			t.Errorf("%s answered %d of %d new connections, want about %.0f (weight %d of %d; all: %v)",
				name, got.ByServer[name], n, exp, w, total, got.ByServer)
		}
	}
}

// checkSticky requires every connection to succeed and land on one server: the one of the
// previous sticky step unless moved (its check failed), then another.
func checkSticky(t *testing.T, got lab.Tally, st Step, before string, moved bool) {
	t.Helper()
	for _, a := range got.Failed {
		t.Errorf("connection failed after %v: %v", a.Duration.Round(time.Millisecond), a.Err)
	}
	if len(got.ByServer) != 1 {
		t.Fatalf("one client's %d new connections went to %v, want all to one server", got.Total, got.ByServer)
	}
	now := onlyKey(got.ByServer)
	switch {
	case before == "":
	case moved && now == before:
		t.Errorf("the client stayed on %s after its check failed", now)
	case !moved && now != before:
		t.Errorf("the client moved from %s to %s", before, now)
	}
	if st.Share != nil && st.Share[now] <= 0 {
		t.Errorf("the client stuck to %s, want one of %v", now, st.Share)
	}
}

// heldConn is an HTTP/1.1 keep-alive connection from the client to the VIP.
type heldConn struct {
	conn   net.Conn
	r      *bufio.Reader
	server string
}

// hold opens keep-alive connections until one is answered by a server in want (bounded), and
// returns it with the others closed.
func hold(ctx context.Context, b *bed, want []string) (*heldConn, error) {
	var last error
	for i := 0; i < 30 && ctx.Err() == nil; i++ {
		conn, err := b.dial(ctx)
		if err != nil {
			last = err
			continue
		}
		h := &heldConn{conn: conn, r: bufio.NewReader(conn)}
		name, _, err := h.request(false)
		if err != nil {
			conn.Close()
			last = err
			continue
		}
		h.server = name
		if len(want) == 0 || slices.Contains(want, name) {
			return h, nil
		}
		conn.Close()
	}
	return nil, fmt.Errorf("no connection answered by one of %v in 30 attempts (last error: %v)", want, last)
}

// request sends one GET on the connection and returns the answering server's name and the
// client address it saw; last asks it to close the connection after answering.
func (h *heldConn) request(last bool) (server, peer string, err error) {
	if err := h.conn.SetDeadline(time.Now().Add(lab.RequestTimeout)); err != nil {
		return "", "", err
	}
	req := "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
	if last {
		req = "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"
	}
	if _, err := io.WriteString(h.conn, req); err != nil {
		return "", "", err
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %s", resp.Status)
	}
	if ap, err := netip.ParseAddrPort(resp.Header.Get(lab.PeerHeader)); err == nil {
		peer = ap.Addr().String()
	}
	return strings.TrimSpace(string(body)), peer, nil
}

// again makes a second request on the connection and requires the same server to answer.
func (h *heldConn) again() error {
	name, _, err := h.request(false)
	if err != nil {
		return err
	}
	if name != h.server {
		return fmt.Errorf("answered by %s, was %s", name, h.server)
	}
	return nil
}

func (h *heldConn) close() { h.conn.Close() }
