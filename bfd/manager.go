package bfd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ports of RFC 5881 (single hop) and RFC 5883 (multihop).
const (
	SingleHopPort = 3784
	MultihopPort  = 4784
)

// Instance is one bfd_instance: a session with the neighbor.
type Instance struct {
	Name     string
	Neighbor netip.Addr
	// Source is the local address; unset, the kernel chooses.
	Source netip.Addr
	// MinRx, MinTx, IdleTx, Multiplier and Passive are the session's timers (SessionConfig).
	MinRx, MinTx, IdleTx time.Duration
	Multiplier           uint8
	Passive              bool
	// TTL is the TTL or hop limit sent; zero means 255.
	TTL uint8
	// MaxHops is how far below 255 a received TTL may be; 255 disables the check.
	MaxHops uint8
	// Multihop uses RFC 5883's port 4784 instead of 3784. keepalived 2.2 always uses 3784,
	// whatever its max_hops, so bfd_instance never sets it.
	Multihop bool
}

func (in Instance) port() int {
	if in.Multihop {
		return MultihopPort
	}
	return SingleHopPort
}

// Manager runs the sessions of a set of bfd_instances over UDP.
type Manager struct {
	log      *slog.Logger
	sessions []*managed
	onChange func(name string, s State)

	opened bool
	rx     []listener

	mu     sync.Mutex
	states map[string]State
}

type managed struct {
	Instance
	s  *Session
	rx chan Packet
	tx *txConn
}

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// WithManagerLogger sets where session transitions are logged.
func WithManagerLogger(l *slog.Logger) ManagerOption { return func(m *Manager) { m.log = l } }

// WithOnChange has f told of every session state change; it must not block.
func WithOnChange(f func(name string, s State)) ManagerOption {
	return func(m *Manager) { m.onChange = f }
}

// NewManager validates the instances and returns a Manager whose sessions are Down until Run.
func NewManager(instances []Instance, opts ...ManagerOption) (*Manager, error) {
	m := &Manager{log: slog.New(slog.DiscardHandler), states: map[string]State{}}
	for _, o := range opts {
		o(m)
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, in := range instances {
		switch {
		case in.Name == "":
			return nil, errors.New("new bfd manager: instance without a name")
		case seen[in.Name]:
			return nil, fmt.Errorf("new bfd manager: duplicate instance %q", in.Name)
		case !in.Neighbor.IsValid():
			return nil, fmt.Errorf("new bfd manager: instance %q has no neighbor_ip", in.Name)
		case in.Source.IsValid() && in.Source.Is4() != in.Neighbor.Is4():
			return nil, fmt.Errorf("new bfd manager: instance %q: source_ip %s and neighbor_ip %s differ in family", in.Name, in.Source, in.Neighbor)
		}
		for _, o := range m.sessions {
			if o.Neighbor == in.Neighbor && o.port() == in.port() {
				return nil, fmt.Errorf("new bfd manager: instances %q and %q have the same neighbor %s", o.Name, in.Name, in.Neighbor)
			}
		}
		seen[in.Name] = true
		s, err := NewSession(SessionConfig{DesiredMinTx: in.MinTx, RequiredMinRx: in.MinRx, IdleTx: in.IdleTx,
			DetectMult: in.Multiplier, Passive: in.Passive, Discriminator: rand.Uint32() | 1}, now)
		if err != nil {
			return nil, err
		}
		m.sessions = append(m.sessions, &managed{Instance: in, s: s, rx: make(chan Packet, 16)})
		m.states[in.Name] = Down
	}
	return m, nil
}

// State returns the state of the named instance's session; ok is false for an unknown name.
func (m *Manager) State(name string) (s State, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok = m.states[name]
	return s, ok
}

func (m *Manager) setState(name string, s State) {
	m.mu.Lock()
	old := m.states[name]
	m.states[name] = s
	m.mu.Unlock()
	if old != s {
		m.log.Info("bfd session state changed", "instance", name, "from", old, "to", s)
		if m.onChange != nil {
			m.onChange(name, s)
		}
	}
}

// Open opens the sockets: a listener per address family and port, and a sending socket per
// session. Run calls it if the caller has not; calling it first binds the sockets in the
// caller's network namespace (tests) and reports errors before Run.
func (m *Manager) Open() (err error) {
	if m.opened {
		return nil
	}
	defer func() {
		if err != nil {
			m.closeSockets()
		}
	}()
	type lkey struct {
		v4   bool
		port int
	}
	seen := map[lkey]bool{}
	for _, ms := range m.sessions {
		k := lkey{ms.Neighbor.Is4(), ms.port()}
		if seen[k] {
			continue
		}
		seen[k] = true
		r, err := listen(k.v4, k.port)
		if err != nil {
			return err
		}
		m.rx = append(m.rx, listener{r, k.port})
	}
	for _, ms := range m.sessions {
		tx, err := dialTx(ms.Instance)
		if err != nil {
			return fmt.Errorf("bfd instance %s: %w", ms.Name, err)
		}
		ms.tx = tx
	}
	m.opened = true
	return nil
}

func (m *Manager) closeSockets() {
	for _, l := range m.rx {
		l.c.Close()
	}
	m.rx = nil
	for _, ms := range m.sessions {
		if ms.tx != nil {
			ms.tx.Close()
			ms.tx = nil
		}
	}
}

// Run runs the sessions until ctx is done, opening the sockets first unless Open did; then
// it tells each peer AdminDown, closes the sockets and returns ctx.Err(). Run may be called
// once.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.Open(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rxWG, txWG sync.WaitGroup
	for _, l := range m.rx {
		rxWG.Add(1)
		go func() {
			defer rxWG.Done()
			m.receive(ctx, l.c, l.port)
		}()
	}
	for _, ms := range m.sessions {
		txWG.Add(1)
		go func() {
			defer txWG.Done()
			m.drive(ctx, ms, ms.tx)
		}()
	}
	<-ctx.Done()
	txWG.Wait() // the sessions have sent AdminDown
	m.closeSockets()
	rxWG.Wait()
	return ctx.Err()
}

type listener struct {
	c    *rxConn
	port int
}

// drive runs one session: its timers, its received packets, its sends.
func (m *Manager) drive(ctx context.Context, ms *managed, tx *txConn) {
	send := func(p *Packet) {
		if p == nil {
			return
		}
		if err := tx.send(p.Append(nil), ms.Neighbor, ms.port()); err != nil {
			m.log.Debug("bfd send failed", "instance", ms.Name, "err", err)
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			send(ms.s.Shutdown())
			m.setState(ms.Name, AdminDown)
			return
		case p := <-ms.rx:
			reply, err := ms.s.Receive(p, time.Now())
			if err != nil {
				m.log.Debug("bfd packet dropped", "instance", ms.Name, "err", err)
				continue
			}
			send(reply)
		case <-timer.C:
		}
		now := time.Now()
		p, next := ms.s.Tick(now)
		send(p)
		m.setState(ms.Name, ms.s.State())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next.IsZero() {
			next = now.Add(time.Second)
		}
		timer.Reset(next.Sub(now))
	}
}

// receive reads packets from one listening socket and hands each to its session.
func (m *Manager) receive(ctx context.Context, r *rxConn, port int) {
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		n, ttl, src, err := r.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Debug("bfd receive failed", "err", err)
			continue
		}
		p, err := Parse(buf[:n])
		if err != nil {
			m.log.Debug("bfd packet dropped", "from", src, "err", err)
			continue
		}
		ms := m.lookup(src, port)
		if ms == nil {
			m.log.Debug("bfd packet from an unknown neighbor dropped", "from", src)
			continue
		}
		if ttl >= 0 && ms.MaxHops != 255 && ttl < 255-int(ms.MaxHops) {
			m.log.Debug("bfd packet dropped: ttl below the minimum", "instance", ms.Name, "ttl", ttl, "max_hops", ms.MaxHops)
			continue
		}
		select {
		case ms.rx <- p:
		default: // the session is behind; a later packet will do
		}
	}
}

func (m *Manager) lookup(src netip.Addr, port int) *managed {
	for _, ms := range m.sessions {
		if ms.Neighbor == src && ms.port() == port {
			return ms
		}
	}
	return nil
}

// rxConn is a listening socket that reports the TTL or hop limit of each packet.
type rxConn struct {
	c  net.PacketConn
	p4 *ipv4.PacketConn
	p6 *ipv6.PacketConn
}

func listen(v4 bool, port int) (*rxConn, error) {
	network, addr := "udp6", fmt.Sprintf("[::]:%d", port)
	if v4 {
		network, addr = "udp4", fmt.Sprintf("0.0.0.0:%d", port)
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listening for bfd on %s: %w", addr, err)
	}
	r := &rxConn{c: c}
	if v4 {
		r.p4 = ipv4.NewPacketConn(c)
		err = r.p4.SetControlMessage(ipv4.FlagTTL, true)
	} else {
		r.p6 = ipv6.NewPacketConn(c)
		err = r.p6.SetControlMessage(ipv6.FlagHopLimit, true)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("asking for the ttl of bfd packets: %w", err)
	}
	return r, nil
}

// read returns a packet, its TTL (-1 when the kernel did not say) and its source.
func (r *rxConn) read(b []byte) (n, ttl int, src netip.Addr, err error) {
	var from net.Addr
	ttl = -1
	if r.p4 != nil {
		var cm *ipv4.ControlMessage
		n, cm, from, err = r.p4.ReadFrom(b)
		if cm != nil {
			ttl = cm.TTL
		}
	} else {
		var cm *ipv6.ControlMessage
		n, cm, from, err = r.p6.ReadFrom(b)
		if cm != nil {
			ttl = cm.HopLimit
		}
	}
	if err != nil {
		return 0, 0, netip.Addr{}, err
	}
	if u, ok := from.(*net.UDPAddr); ok {
		src = u.AddrPort().Addr().Unmap()
	}
	return n, ttl, src, nil
}

func (r *rxConn) Close() error { return r.c.Close() }

// txConn sends a session's packets from a source port in 49152-65535 (RFC 5881 section 4).
type txConn struct {
	c *net.UDPConn
}

func dialTx(in Instance) (*txConn, error) {
	network, src := "udp6", netip.IPv6Unspecified()
	if in.Neighbor.Is4() {
		network, src = "udp4", netip.IPv4Unspecified()
	}
	if in.Source.IsValid() {
		src = in.Source
	}
	ttl := int(in.TTL)
	if ttl == 0 {
		ttl = 255
	}
	var lastErr error
	for range 32 {
		port := 49152 + rand.IntN(65536-49152)
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port))))
		if err != nil {
			lastErr = err
			continue
		}
		if in.Neighbor.Is4() {
			err = ipv4.NewConn(c).SetTTL(ttl)
		} else {
			err = ipv6.NewConn(c).SetHopLimit(ttl)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("setting the bfd ttl: %w", err)
		}
		return &txConn{c: c}, nil
	}
	return nil, fmt.Errorf("binding a bfd source port on %s: %w", src, lastErr)
}

func (t *txConn) send(b []byte, dst netip.Addr, port int) error {
	_, err := t.c.WriteToUDPAddrPort(b, netip.AddrPortFrom(dst, uint16(port)))
	return err
}

func (t *txConn) Close() error { return t.c.Close() }

// BFDUp reports whether the named instance's session is Up (health.BFDStates).
func (m *Manager) BFDUp(name string) (up, known bool) {
	s, ok := m.State(name)
	return s == Up, ok
}
