package ipvsfallback

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
)

// TestFWMarkAndSCTPServices checks that firewall-mark services (keepalived's virtual_server
// fwmark) and SCTP services reach IPVS with the attributes ipvsadm -f / --sctp-service would
// give them, that re-applying writes nothing, and that they are read back after a resync.
func TestFWMarkAndSCTPServices(t *testing.T) {
	fwm4 := director.FWMarkKey(5, false)
	fwm6 := director.FWMarkKey(5, true)
	sctp := director.ServiceKey{VIP: vip, Port: 3868, Proto: director.SCTP}
	rs6 := netip.MustParseAddr("2001:db8::1")
	s := snap(
		svc(fwm4, "wlc", be(rs1, 1, director.MethodDR, true)),
		svc(fwm6, "rr", director.Backend{Addr: rs6, Port: 80, Weight: 2, Method: director.MethodDR, Up: true}),
		svc(sctp, "rr", director.Backend{Addr: rs2, Port: 3868, Weight: 1, Method: director.MethodNAT, Up: true}),
	)
	f := &fakeIPVS{}
	d := newTest(t, f)
	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantCalls := []string{
		"NewService FWM 5 af=2 wlc af=2 mask=0xffffffff",
		"NewDest FWM 5 af=2 -> 10.0.0.1:80 DR w=1",
		"NewService FWM 5 af=10 rr af=10 mask=0x80",
		"NewDest FWM 5 af=10 -> [2001:db8::1]:80 DR w=2",
		"NewService SCTP 192.0.2.10:3868 rr af=2 mask=0xffffffff",
		"NewDest SCTP 192.0.2.10:3868 -> 10.0.0.2:3868 NAT w=1",
	}
	if diff := cmp.Diff(wantCalls, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// The firewall-mark services hold no address, port or protocol, as the kernel keeps them.
	for _, fs := range f.svcs {
		if fs.s.FWMark != 0 && (fs.s.Address != nil || fs.s.Port != 0 || fs.s.Protocol != 0) {
			t.Errorf("fwmark service %s has address %v port %d protocol %d", svcID(&fs.s), fs.s.Address, fs.s.Port, fs.s.Protocol)
		}
	}

	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("unchanged snapshot wrote %q", calls)
	}

	// A new data plane over the same table reads the services back (restart, -I) and finds
	// nothing to write.
	d2 := newTest(t, f)
	d2.resync = true
	if err := d2.Apply(context.Background(), s); err != nil {
		t.Fatalf("Apply after resync: %v", err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("resynced data plane wrote %q", calls)
	}

	// Removing the firewall mark deletes it by mark and family.
	if err := d2.Apply(context.Background(), snap(s.Services[1], s.Services[2])); err != nil {
		t.Fatalf("Apply without fwmark 5: %v", err)
	}
	if diff := cmp.Diff([]string{"DelService FWM 5 af=2"}, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestServiceKeyOfKernelServices(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	s := snap(svc(director.FWMarkKey(7, false), "rr", be(rs1, 1, director.MethodDR, true)))
	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	svcs, _ := f.GetServices()
	if len(svcs) != 1 {
		t.Fatalf("services = %d, want 1", len(svcs))
	}
	k, ok := serviceKey(svcs[0])
	if !ok || k != director.FWMarkKey(7, false) {
		t.Errorf("serviceKey = %v, %v; want FWM 7, true", k, ok)
	}
	if got := k.String(); got != "FWM 7" {
		t.Errorf("String = %q, want FWM 7", got)
	}
}

func TestFWMarkServiceWithPortRefused(t *testing.T) {
	d := newTest(t, &fakeIPVS{})
	bad := director.FWMarkKey(3, false)
	bad.Port = 80
	err := d.Apply(context.Background(), snap(svc(bad, "rr", be(rs1, 1, director.MethodDR, true))))
	if err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("Apply = %v, want a plain error for a firewall-mark key with a port", err)
	}
}
