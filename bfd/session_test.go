package bfd

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestSession(t *testing.T, cfg SessionConfig) *Session {
	t.Helper()
	s, err := NewSession(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	s.rand = func() float64 { return 1 } // no jitter: intervals are exact
	return s
}

// wire carries packets between two sessions on a simulated clock.
func exchange(t *testing.T, a, b *Session, until time.Time, step time.Duration) time.Time {
	t.Helper()
	now := t0
	for ; now.Before(until); now = now.Add(step) {
		for _, pair := range [][2]*Session{{a, b}, {b, a}} {
			p, _ := pair[0].Tick(now)
			for p != nil {
				wire, err := Parse(p.Append(nil))
				if err != nil {
					t.Fatalf("sent an invalid packet: %v", err)
				}
				p, err = pair[1].Receive(wire, now)
				if err != nil {
					t.Fatal(err)
				}
				pair = [2]*Session{pair[1], pair[0]}
			}
		}
	}
	return now
}

func TestSessionComesUp(t *testing.T) {
	a := newTestSession(t, SessionConfig{Discriminator: 1, DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3})
	b := newTestSession(t, SessionConfig{Discriminator: 2, DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 4})
	exchange(t, a, b, t0.Add(3*time.Second), time.Millisecond)
	if a.State() != Up || b.State() != Up {
		t.Fatalf("states %s, %s; want Up, Up", a.State(), b.State())
	}
	// Detection time: remote multiplier × max(local min_rx, remote min_tx).
	if got, want := a.DetectionTime(), 4*50*time.Millisecond; got != want {
		t.Errorf("a detection time %v, want %v", got, want)
	}
	if got, want := b.DetectionTime(), 3*100*time.Millisecond; got != want {
		t.Errorf("b detection time %v, want %v", got, want)
	}
	if a.poll || b.poll {
		t.Errorf("poll sequence still running after Up: a %v b %v", a.poll, b.poll)
	}
	// While Up, a sends at max(its min_tx, b's min_rx), and advertises its min_tx.
	if got, want := a.txInterval(), 100*time.Millisecond; got != want {
		t.Errorf("a transmission interval %v, want %v", got, want)
	}
	if p := a.packet(); p.State != Up || p.DesiredMinTx != 50*time.Millisecond {
		t.Errorf("a's packet %+v, want Up with min_tx 50ms", p)
	}
}

func TestSessionDetectionTimeout(t *testing.T) {
	a := newTestSession(t, SessionConfig{Discriminator: 1, DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond, DetectMult: 3})
	b := newTestSession(t, SessionConfig{Discriminator: 2, DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond, DetectMult: 5})
	now := exchange(t, a, b, t0.Add(3*time.Second), time.Millisecond)
	if a.State() != Up {
		t.Fatalf("a is %s, want Up", a.State())
	}
	// b falls silent: a goes Down once b's multiplier × 10 ms has passed since the last
	// packet, which came within the last 10 ms.
	a.Tick(now.Add(39 * time.Millisecond))
	if a.State() != Up {
		t.Fatalf("a went %s before the detection time", a.State())
	}
	_, next := a.Tick(now.Add(50 * time.Millisecond))
	if a.State() != Down || a.Diag() != DiagDetectionExpired {
		t.Fatalf("a is %s (diag %d) after the detection time, want Down (1)", a.State(), a.Diag())
	}
	if a.RemoteDiscriminator() != 0 {
		t.Errorf("remote discriminator %d kept after detection timeout", a.RemoteDiscriminator())
	}
	// Down, it sends at idle_tx.
	p, _ := a.Tick(next)
	if p == nil || p.State != Down || p.DesiredMinTx != time.Second || p.YourDiscriminator != 0 {
		t.Errorf("packet after going down: %+v", p)
	}
}

func TestSessionNeighborSignals(t *testing.T) {
	cfg := SessionConfig{Discriminator: 1, DetectMult: 3}
	peer := Packet{DetectMult: 3, MyDiscriminator: 9, DesiredMinTx: time.Second, RequiredMinRx: 10 * time.Millisecond}
	tests := []struct {
		name  string
		steps []State // states the peer sends, in order
		want  State
		diag  Diag
	}{
		{"down makes init", []State{Down}, Init, DiagNone},
		{"init makes up", []State{Init}, Up, DiagNone},
		{"down then up", []State{Down, Up}, Up, DiagNone},
		{"up from down is ignored", []State{Up}, Down, DiagNone},
		{"neighbor down", []State{Init, Down}, Down, DiagNeighborDown},
		{"neighbor admin down", []State{Init, AdminDown}, Down, DiagNeighborDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSession(t, cfg)
			for i, st := range tt.steps {
				p := peer
				p.State = st
				if st != Down && st != AdminDown {
					p.YourDiscriminator = 1
				}
				if _, err := s.Receive(p, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
			}
			if s.State() != tt.want || s.Diag() != tt.diag {
				t.Errorf("state %s diag %d, want %s diag %d", s.State(), s.Diag(), tt.want, tt.diag)
			}
		})
	}
}

func TestSessionPollFinal(t *testing.T) {
	s := newTestSession(t, SessionConfig{Discriminator: 1})
	reply, err := s.Receive(Packet{State: Down, Poll: true, DetectMult: 3, MyDiscriminator: 9, DesiredMinTx: time.Second, RequiredMinRx: time.Second}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if reply == nil || !reply.Final || reply.Poll || reply.YourDiscriminator != 9 {
		t.Fatalf("reply to a poll: %+v, want Final to discriminator 9", reply)
	}
	// Coming Up starts a poll sequence; the peer's Final ends it.
	if _, err := s.Receive(Packet{State: Up, DetectMult: 3, MyDiscriminator: 9, YourDiscriminator: 1, DesiredMinTx: time.Second, RequiredMinRx: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	if s.State() != Up {
		t.Fatalf("state %s, want Up", s.State())
	}
	p, _ := s.Tick(t0)
	if p == nil || !p.Poll || p.DesiredMinTx != 10*time.Millisecond {
		t.Fatalf("first packet once Up: %+v, want Poll with min_tx 10ms", p)
	}
	s.Receive(Packet{State: Up, Final: true, DetectMult: 3, MyDiscriminator: 9, YourDiscriminator: 1, DesiredMinTx: time.Second, RequiredMinRx: time.Second}, t0)
	p, _ = s.Tick(t0.Add(2 * time.Second))
	if p == nil || p.Poll {
		t.Errorf("packet after Final: %+v, want no Poll", p)
	}
}

func TestSessionPassiveAndDiscriminator(t *testing.T) {
	s := newTestSession(t, SessionConfig{Discriminator: 1, Passive: true})
	if p, next := s.Tick(t0.Add(time.Hour)); p != nil || !next.IsZero() {
		t.Fatalf("passive session sent %+v (next %v) before hearing the peer", p, next)
	}
	_, err := s.Receive(Packet{State: Init, DetectMult: 3, MyDiscriminator: 9, YourDiscriminator: 2}, t0)
	if !errors.Is(err, ErrDiscriminator) {
		t.Errorf("packet for discriminator 2: err %v, want ErrDiscriminator", err)
	}
	if _, err := s.Receive(Packet{State: Down, DetectMult: 3, MyDiscriminator: 9, RequiredMinRx: time.Millisecond}, t0); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Tick(t0); p == nil || p.State != Init {
		t.Errorf("passive session after the peer spoke sent %+v, want Init", p)
	}
}

func TestSessionNoTxWhenPeerWantsNone(t *testing.T) {
	s := newTestSession(t, SessionConfig{Discriminator: 1})
	s.Receive(Packet{State: Down, DetectMult: 3, MyDiscriminator: 9, RequiredMinRx: 0}, t0)
	if p, _ := s.Tick(t0.Add(10 * time.Millisecond)); p != nil {
		t.Errorf("sent %+v to a peer whose min_rx is 0", p)
	}
}

func TestSessionJitter(t *testing.T) {
	for _, mult := range []uint8{1, 3} {
		s := newTestSession(t, SessionConfig{Discriminator: 1, DetectMult: mult})
		for _, r := range []float64{0, 0.5, 0.999} {
			s.rand = func() float64 { return r }
			got := s.jitter(time.Second)
			hi := time.Second
			if mult == 1 {
				hi = 900 * time.Millisecond
			}
			if got < 750*time.Millisecond || got > hi {
				t.Errorf("mult %d rand %v: interval %v outside [750ms, %v]", mult, r, got, hi)
			}
		}
	}
}

func TestSessionShutdown(t *testing.T) {
	s := newTestSession(t, SessionConfig{Discriminator: 1})
	p := s.Shutdown()
	if p.State != AdminDown || p.Diag != DiagAdminDown {
		t.Errorf("shutdown packet %+v", p)
	}
	s.Receive(Packet{State: Init, DetectMult: 3, MyDiscriminator: 9, YourDiscriminator: 1}, t0)
	if s.State() != AdminDown {
		t.Errorf("AdminDown session moved to %s", s.State())
	}
}
