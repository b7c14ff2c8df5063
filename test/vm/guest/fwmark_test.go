package guest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
)

// kernelServices reads the IPVS table of the namespace at nsPath with a handle of its own,
// naming firewall-mark services as ipvsadm does ("FWM 5", "FWM 5 IPv6") and SCTP services too.
func kernelServices(t *testing.T, nsPath string) []string {
	t.Helper()
	h, err := ipvs.New(nsPath)
	if err != nil {
		t.Fatalf("open ipvs: %v", err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	var out []string
	for _, s := range svcs {
		var id string
		switch {
		case s.FWMark != 0 && s.AddressFamily == unix.AF_INET6:
			id = fmt.Sprintf("FWM %d IPv6", s.FWMark)
		case s.FWMark != 0:
			id = fmt.Sprintf("FWM %d", s.FWMark)
		default:
			p := map[uint16]string{6: "TCP", 17: "UDP", 132: "SCTP"}[s.Protocol]
			id = p + " " + net.JoinHostPort(s.Address.String(), strconv.Itoa(int(s.Port)))
		}
		out = append(out, id+" "+s.SchedName)
		ds, err := h.GetDestinations(s)
		if err != nil {
			t.Fatalf("list real servers of %s: %v", id, err)
		}
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s -> %s w=%d", id, net.JoinHostPort(d.Address.String(), strconv.Itoa(int(d.Port))), d.Weight))
		}
	}
	slices.Sort(out)
	return out
}

// TestKernelFWMarkAndSCTP programs firewall-mark services of both families and an SCTP service
// into the real kernel's IPVS, reads them back with a handle of its own, and checks that a
// restarted data plane adopts them without writing and removes them on Close.
func TestKernelFWMarkAndSCTP(t *testing.T) {
	path := ipvsNS(t)
	sctp := director.ServiceKey{VIP: netip.MustParseAddr("192.0.2.30"), Port: 3868, Proto: director.SCTP}
	s := snap(
		director.Service{Key: director.FWMarkKey(5, false), Scheduler: "wlc", Backends: []director.Backend{
			be(rs1, 0, 1, director.MethodDR, true), be(rs2, 0, 2, director.MethodDR, true)}},
		director.Service{Key: director.FWMarkKey(5, true), Scheduler: "rr", Backends: []director.Backend{
			be(netip.MustParseAddr("2001:db8::11"), 0, 1, director.MethodDR, true)}},
		director.Service{Key: sctp, Scheduler: "rr", Backends: []director.Backend{be(rs3, 3868, 1, director.MethodNAT, true)}},
	)
	want := []string{
		"FWM 5 -> 10.0.0.1:0 w=1",
		"FWM 5 -> 10.0.0.2:0 w=2",
		"FWM 5 IPv6 -> [2001:db8::11]:0 w=1",
		"FWM 5 IPv6 rr",
		"FWM 5 wlc",
		"SCTP 192.0.2.30:3868 -> 10.0.0.3:3868 w=1",
		"SCTP 192.0.2.30:3868 rr",
	}
	dp, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := dp.Apply(context.Background(), s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(want, kernelServices(t, path)); diff != "" {
		t.Errorf("kernel IPVS table (-want +got):\n%s", diff)
	}
	st, err := dp.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if len(st) != 3 {
		t.Errorf("Stats has %d services, want 3: %+v", len(st), st)
	}

	// A restarted data plane finds its services in the kernel; a weight change is then the
	// only write, and the table reads back changed.
	dp2, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.Services[0].Backends[1].Weight = 3
	if err := dp2.Apply(context.Background(), s); err != nil {
		t.Fatalf("Apply over the existing table: %v", err)
	}
	want[1] = "FWM 5 -> 10.0.0.2:0 w=3"
	if diff := cmp.Diff(want, kernelServices(t, path)); diff != "" {
		t.Errorf("kernel IPVS table after restart (-want +got):\n%s", diff)
	}
	if err := dp2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := kernelServices(t, path); len(got) != 0 {
		t.Errorf("services left after Close: %q", got)
	}
	dp.Close()
}
