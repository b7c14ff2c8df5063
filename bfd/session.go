package bfd

import (
	"errors"
	"math/rand/v2"
	"time"
)

// SessionConfig is the local side of a session: keepalived's bfd_instance timers.
type SessionConfig struct {
	// DesiredMinTx is min_tx: the fastest this side sends while Up.
	DesiredMinTx time.Duration
	// RequiredMinRx is min_rx: the fastest this side wants to receive.
	RequiredMinRx time.Duration
	// IdleTx is idle_tx: the interval advertised and used while the session is not Up.
	IdleTx time.Duration
	// DetectMult is multiplier: how many intervals without a packet take the peer down.
	DetectMult uint8
	// Passive waits for the peer's first packet before sending.
	Passive bool
	// Discriminator is this session's non-zero local discriminator.
	Discriminator uint32
}

// Session is the RFC 5880 state machine of one asynchronous-mode session. It does no I/O and
// reads no clock: the caller passes the time to Receive and Tick, and sends what they return.
// It is not safe for concurrent use.
type Session struct {
	cfg   SessionConfig
	state State
	diag  Diag

	remoteState State
	remoteDiscr uint32
	remoteMinRx time.Duration
	remoteMinTx time.Duration
	remoteMult  uint8

	poll     bool      // a poll sequence is running: periodic packets carry P
	detectAt time.Time // when the detection timer expires; zero when not armed
	txAt     time.Time // when the next periodic packet is due; zero when not scheduled
	rand     func() float64
}

// NewSession returns a session in state Down. Zero timers take keepalived's defaults
// (min_tx and min_rx 10 ms, idle_tx 1 s, multiplier 5).
func NewSession(cfg SessionConfig, now time.Time) (*Session, error) {
	if cfg.Discriminator == 0 {
		return nil, errors.New("new bfd session: discriminator is zero")
	}
	if cfg.DesiredMinTx <= 0 {
		cfg.DesiredMinTx = 10 * time.Millisecond
	}
	if cfg.RequiredMinRx <= 0 {
		cfg.RequiredMinRx = 10 * time.Millisecond
	}
	if cfg.IdleTx <= 0 {
		cfg.IdleTx = time.Second
	}
	if cfg.DetectMult == 0 {
		cfg.DetectMult = 5
	}
	s := &Session{cfg: cfg, state: Down, remoteState: Down, remoteMinRx: time.Microsecond, rand: rand.Float64}
	if !cfg.Passive {
		s.txAt = now
	}
	return s, nil
}

// State returns the session state.
func (s *Session) State() State { return s.state }

// Diag returns the diagnostic of the last time the session left Up.
func (s *Session) Diag() Diag { return s.diag }

// RemoteDiscriminator returns the peer's discriminator, zero while unknown.
func (s *Session) RemoteDiscriminator() uint32 { return s.remoteDiscr }

// DetectionTime is how long the session waits for a packet before going Down: the peer's
// multiplier times the slower of our min_rx and its min_tx. It is zero before the first packet.
func (s *Session) DetectionTime() time.Duration {
	return time.Duration(s.remoteMult) * max(s.cfg.RequiredMinRx, s.remoteMinTx)
}

// desiredMinTx is the interval advertised now: idle_tx unless Up (RFC 5880 6.8.3 wants a
// slow rate while not Up).
func (s *Session) desiredMinTx() time.Duration {
	if s.state == Up {
		return s.cfg.DesiredMinTx
	}
	return max(s.cfg.IdleTx, s.cfg.DesiredMinTx)
}

// txInterval is the agreed transmission interval before jitter; zero when the peer asked
// for no packets.
func (s *Session) txInterval() time.Duration {
	if s.remoteMinRx == 0 {
		return 0
	}
	return max(s.desiredMinTx(), s.remoteMinRx)
}

func (s *Session) packet() *Packet {
	return &Packet{
		Diag: s.diag, State: s.state, Poll: s.poll, DetectMult: s.cfg.DetectMult,
		MyDiscriminator: s.cfg.Discriminator, YourDiscriminator: s.remoteDiscr,
		DesiredMinTx: s.desiredMinTx(), RequiredMinRx: s.cfg.RequiredMinRx,
	}
}

// ErrDiscriminator is returned by Receive for a packet addressed to another session.
var ErrDiscriminator = errors.New("bfd packet for another discriminator")

// Receive processes a parsed packet from the peer (RFC 5880 6.8.6). The reply, when not nil,
// must be sent at once: it answers a Poll with Final.
func (s *Session) Receive(p Packet, now time.Time) (*Packet, error) {
	if p.YourDiscriminator != 0 && p.YourDiscriminator != s.cfg.Discriminator {
		return nil, ErrDiscriminator
	}
	if s.state == AdminDown {
		return nil, nil
	}
	wasUp := s.state == Up
	s.remoteDiscr = p.MyDiscriminator
	s.remoteState = p.State
	s.remoteMinRx = p.RequiredMinRx
	s.remoteMinTx = p.DesiredMinTx
	s.remoteMult = p.DetectMult
	if p.Final {
		s.poll = false
	}
	s.detectAt = now.Add(s.DetectionTime())

	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.state, s.diag = Down, DiagNeighborDown
		}
	case s.state == Down && p.State == Down:
		s.state = Init
	case s.state == Down && p.State == Init, s.state == Init && (p.State == Init || p.State == Up):
		s.state = Up
	case s.state == Up && p.State == Down:
		s.state, s.diag = Down, DiagNeighborDown
	}
	if up := s.state == Up; up != wasUp {
		// The advertised interval changed; while Up, a Poll sequence confirms it.
		s.poll = up
		s.txAt = now // tell the peer at once
	}
	if s.txAt.IsZero() {
		s.txAt = now // passive: the peer has spoken
	}
	if p.Poll {
		r := s.packet()
		r.Poll, r.Final = false, true
		return r, nil
	}
	return nil, nil
}

// Tick runs the session's timers at now. It returns the periodic packet to send, if one is
// due, and when Tick must run next (zero: only after a Receive).
func (s *Session) Tick(now time.Time) (*Packet, time.Time) {
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		s.detectAt = time.Time{}
		if s.state == Init || s.state == Up {
			s.state, s.diag = Down, DiagDetectionExpired
		}
		s.poll = false
		s.remoteDiscr, s.remoteState, s.remoteMinRx = 0, Down, time.Microsecond
		if s.cfg.Passive {
			s.txAt = time.Time{}
		}
	}
	var out *Packet
	if !s.txAt.IsZero() && !now.Before(s.txAt) {
		if iv := s.txInterval(); iv > 0 {
			out = s.packet()
			s.txAt = now.Add(s.jitter(iv))
		} else {
			s.txAt = now.Add(s.desiredMinTx()) // look again later
		}
	}
	next := s.txAt
	if !s.detectAt.IsZero() && (next.IsZero() || s.detectAt.Before(next)) {
		next = s.detectAt
	}
	return out, next
}

// jitter reduces iv by 0 to 25% (10 to 25% with a multiplier of 1), RFC 5880 6.8.7.
func (s *Session) jitter(iv time.Duration) time.Duration {
	lo, span := 0.75, 0.25
	if s.cfg.DetectMult == 1 {
		span = 0.15
	}
	return time.Duration(float64(iv) * (lo + span*s.rand()))
}

// Shutdown puts the session in AdminDown and returns the packet telling the peer so; the
// session then ignores the peer.
func (s *Session) Shutdown() *Packet {
	s.state, s.diag, s.poll = AdminDown, DiagAdminDown, false
	s.detectAt, s.txAt = time.Time{}, time.Time{}
	return s.packet()
}
