package loader

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink/nl"

	"github.com/sluice-lb/sluice/director"
)

// syncBuffer is a log sink tests can read while the loader writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAttachDetach attaches for real: natively to a veth, generically to a bridge (with one log
// line saying why), detaches what the snapshot no longer needs, and everything on Close.
func TestAttachDetach(t *testing.T) {
	n := newTestNet(t)
	var logs syncBuffer
	l, err := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), FlowTableSize: 1024})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})

	onVeth := director.ServiceKey{VIP: netip.MustParseAddr("10.99.0.100"), Port: 80, Proto: director.TCP}
	onBridge := director.ServiceKey{VIP: netip.MustParseAddr("10.50.0.1"), Port: 80, Proto: director.TCP}
	rs := director.Backend{Addr: netip.MustParseAddr("10.99.0.2"), Port: 80, Weight: 1, Method: director.MethodDR, Up: true}
	both := director.Snapshot{Services: []director.Service{
		{Key: onBridge, Scheduler: "rr", Backends: []director.Backend{rs}},
		{Key: onVeth, Scheduler: "rr", Backends: []director.Backend{rs}},
	}}

	mode := func(name string) uint32 {
		t.Helper()
		x := n.link(t, n.hLB, name).Attrs().Xdp
		if x == nil || !x.Attached {
			return nl.XDP_ATTACHED_NONE
		}
		return x.AttachMode
	}

	n.in(t, n.lb, func() {
		if err := l.Apply(context.Background(), both); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		// Again: nothing to attach, nothing logged twice.
		if err := l.Apply(context.Background(), both); err != nil {
			t.Fatalf("Apply again: %v", err)
		}
	})
	if got := mode("lb0"); got != nl.XDP_ATTACHED_DRV {
		t.Errorf("lb0 XDP mode %d, want native (%d)", got, nl.XDP_ATTACHED_DRV)
	}
	if got := mode("br0"); got != nl.XDP_ATTACHED_SKB {
		t.Errorf("br0 XDP mode %d, want generic (%d)", got, nl.XDP_ATTACHED_SKB)
	}
	if got := strings.Count(logs.String(), "generic mode"); got != 1 {
		t.Errorf("%d log lines about generic mode, want 1:\n%s", got, logs.String())
	}

	// The backend's MAC came from ARP over the veth.
	var bv lbBackendValue
	id := l.services[onVeth].backends[netip.AddrPortFrom(rs.Addr, 80)].id
	must(t, l.objs.Backends.Lookup(id, &bv))
	if got, want := macString(bv.Dmac), n.link(t, n.hRS, "rs0").Attrs().HardwareAddr.String(); got != want || bv.Flags != beFlagUp|beFlagNew {
		t.Errorf("backend dmac %s flags %d, want %s up and taking new flows", got, bv.Flags, want)
	}

	n.in(t, n.lb, func() {
		if err := l.Apply(context.Background(), director.Snapshot{Services: both.Services[1:]}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	})
	if got := mode("br0"); got != nl.XDP_ATTACHED_NONE {
		t.Errorf("br0 XDP mode %d after its service left, want detached", got)
	}
	if got := mode("lb0"); got != nl.XDP_ATTACHED_DRV {
		t.Errorf("lb0 XDP mode %d, want native", got)
	}

	closed = true
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := mode("lb0"); got != nl.XDP_ATTACHED_NONE {
		t.Errorf("lb0 XDP mode %d after Close, want detached", got)
	}
}

func macString(b [6]byte) string { return net.HardwareAddr(b[:]).String() }
