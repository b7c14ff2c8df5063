package dataplane

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/loader"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestForeignXDPProgram runs the real loader in a namespace with two interfaces holding VIPs,
// one of which already carries another XDP program in native mode, as an operator's own XDP
// firewall would: the kernel then refuses the loader both native mode (a program is attached)
// and generic mode (native and generic XDP cannot both be active). Auto must move that
// interface's services to the fallback, keep XDP on the other interface and leave the foreign
// program alone. The fallback is a recorder: this kernel has no IPVS (test/vm/guest runs the
// same setup with kernel IPVS and traffic).
func TestForeignXDPProgram(t *testing.T) {
	env := netns.ForTest(t)
	lb, err := env.NewNS("lb")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := env.NewNS("rs")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ lbIf, rsIf, lbAddr, rsAddr string }{
		{"eth1", "r1", "10.61.1.1/24", "10.61.1.2/24"},
		{"eth2", "r2", "10.61.2.1/24", "10.61.2.2/24"},
	} {
		if err := env.Veth(lb, l.lbIf, rs, l.rsIf); err != nil {
			t.Fatal(err)
		}
		if err := lb.AddAddr(l.lbIf, netip.MustParsePrefix(l.lbAddr)); err != nil {
			t.Fatal(err)
		}
		if err := rs.AddAddr(l.rsIf, netip.MustParsePrefix(l.rsAddr)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lb.AttachXDPPass("eth2"); err != nil {
		netns.SkipPrivileged(t, "cannot attach XDP: "+err.Error())
	}
	foreign, err := lb.XDP("eth2")
	if err != nil || foreign == nil {
		t.Fatalf("foreign program on eth2: %v, %v", foreign, err)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ld, err := loader.New(loader.Options{Logger: log, FlowTableSize: 1024})
	if err != nil {
		netns.SkipPrivileged(t, "cannot load the XDP program: "+err.Error())
	}
	fb := &fakeIPVS{}
	auto := New(Options{Logger: log, XDP: ld, OpenFallback: func() (Forwarder, error) { return fb, nil }})
	t.Cleanup(func() {
		if err := auto.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	keyOn1 := director.ServiceKey{VIP: netip.MustParseAddr("10.61.1.1"), Port: 80, Proto: director.TCP}
	keyOn2 := director.ServiceKey{VIP: netip.MustParseAddr("10.61.2.1"), Port: 80, Proto: director.TCP}
	s := director.Snapshot{Services: []director.Service{
		{Key: keyOn1, Scheduler: "rr", Backends: []director.Backend{{Addr: netip.MustParseAddr("10.61.1.2"), Port: 80, Weight: 1, Up: true}}},
		{Key: keyOn2, Scheduler: "rr", Backends: []director.Backend{{Addr: netip.MustParseAddr("10.61.2.2"), Port: 80, Weight: 1, Up: true}}},
	}}
	for range 2 {
		if err := lb.Do(func() error { return auto.Apply(context.Background(), s) }); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}

	if len(fb.applied) == 0 {
		t.Fatal("the fallback got no snapshot")
	}
	if diff := cmp.Diff([]director.ServiceKey{keyOn2}, keysOf(fb.applied[len(fb.applied)-1]), addrCmp); diff != "" {
		t.Errorf("fallback serves (-want +got):\n%s", diff)
	}
	var attached []string
	for _, a := range ld.Attachments() {
		attached = append(attached, a.Name)
	}
	if diff := cmp.Diff([]string{"eth1"}, attached); diff != "" {
		t.Errorf("XDP attached to (-want +got):\n%s", diff)
	}
	f := auto.Failures()
	if len(f) != 1 || f[0].Name != "eth2" || !strings.Contains(f[0].Reason, "native") || !strings.Contains(f[0].Reason, "generic") {
		t.Fatalf("Failures = %+v, want eth2 with both native and generic attach errors", f)
	}
	t.Logf("eth2: %s", f[0].Reason)
	if n := strings.Count(logs.String(), "serving its services with kernel IPVS"); n != 1 {
		t.Errorf("%d log lines about eth2, want 1:\n%s", n, logs.String())
	}
	got, err := lb.XDP("eth2")
	if err != nil || got == nil || got.ProgId != foreign.ProgId {
		t.Errorf("eth2 carries program %+v (%v), want the foreign one %+v untouched", got, err, foreign)
	}
	st, err := auto.TrafficStats()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Services[keyOn1]; !ok {
		t.Errorf("TrafficStats lacks XDP's service %s: %+v", keyOn1, st.Services)
	}
}
