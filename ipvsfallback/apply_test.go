package ipvsfallback

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"

	"github.com/sluice-lb/sluice/director"
)

var (
	vip  = netip.MustParseAddr("192.0.2.10")
	vip2 = netip.MustParseAddr("192.0.2.20")
	web  = director.ServiceKey{VIP: vip, Port: 80, Proto: director.TCP}
	dns  = director.ServiceKey{VIP: vip2, Port: 53, Proto: director.UDP}
	rs1  = netip.MustParseAddr("10.0.0.1")
	rs2  = netip.MustParseAddr("10.0.0.2")
	rs3  = netip.MustParseAddr("10.0.0.3")
)

func be(addr netip.Addr, weight int, m director.Method, up bool) director.Backend {
	return director.Backend{Addr: addr, Port: 80, Weight: weight, Method: m, Up: up}
}

func svc(k director.ServiceKey, sched string, bs ...director.Backend) director.Service {
	return director.Service{Key: k, Scheduler: sched, Backends: bs}
}

func snap(svcs ...director.Service) director.Snapshot { return director.Snapshot{Services: svcs} }

func newTest(t *testing.T, f *fakeIPVS) *Dataplane {
	t.Helper()
	d, err := New(Options{Handle: f})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestApplyWritesOnlyDeltas walks one data plane through a sequence of snapshots and checks
// that each Apply makes exactly the netlink writes that differ, and what the table holds after.
func TestApplyWritesOnlyDeltas(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	steps := []struct {
		name      string
		snap      director.Snapshot
		wantCalls []string
		wantTable []string
	}{
		{
			name: "first service with two servers",
			snap: snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 2, director.MethodDR, true))),
			wantCalls: []string{
				"NewService TCP 192.0.2.10:80 rr af=2 mask=0xffffffff",
				"NewDest TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
				"NewDest TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2",
			},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
				"TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name: "same snapshot writes nothing",
			snap: snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 2, director.MethodDR, true))),
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
				"TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name:      "weight change edits the server in place",
			snap:      snap(svc(web, "rr", be(rs1, 5, director.MethodDR, true), be(rs2, 2, director.MethodDR, true))),
			wantCalls: []string{"UpdateDest TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5"},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name:      "failed server is removed",
			snap:      snap(svc(web, "rr", be(rs1, 5, director.MethodDR, true), be(rs2, 2, director.MethodDR, false))),
			wantCalls: []string{"DelDest TCP 192.0.2.10:80 -> 10.0.0.2:80"},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name:      "recovered server comes back",
			snap:      snap(svc(web, "rr", be(rs1, 5, director.MethodDR, true), be(rs2, 2, director.MethodDR, true))),
			wantCalls: []string{"NewDest TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2"},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name:      "inhibit_on_failure keeps the server with weight 0",
			snap:      snap(svc(web, "rr", be(rs1, 5, director.MethodDR, true), be(rs2, 0, director.MethodDR, true))),
			wantCalls: []string{"UpdateDest TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=0"},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=0",
				"TCP 192.0.2.10:80 rr flags=0x0",
			},
		},
		{
			name: "scheduler, method, and a new server; the new one goes in before the old one goes",
			snap: snap(svc(web, "wlc", be(rs1, 5, director.MethodNAT, true), be(rs3, 1, director.MethodTUN, true))),
			wantCalls: []string{
				"UpdateService TCP 192.0.2.10:80 wlc",
				"NewDest TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=1",
				"UpdateDest TCP 192.0.2.10:80 -> 10.0.0.1:80 NAT w=5",
				"DelDest TCP 192.0.2.10:80 -> 10.0.0.2:80",
			},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 NAT w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=1",
				"TCP 192.0.2.10:80 wlc flags=0x0",
			},
		},
		{
			name: "second service added, first untouched; empty scheduler is keepalived's wlc",
			snap: snap(
				svc(web, "wlc", be(rs1, 5, director.MethodNAT, true), be(rs3, 1, director.MethodTUN, true)),
				svc(dns, "", be(rs2, 1, director.MethodDR, true)),
			),
			wantCalls: []string{
				"NewService UDP 192.0.2.20:53 wlc af=2 mask=0xffffffff",
				"NewDest UDP 192.0.2.20:53 -> 10.0.0.2:80 DR w=1",
			},
			wantTable: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 NAT w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=1",
				"TCP 192.0.2.10:80 wlc flags=0x0",
				"UDP 192.0.2.20:53 -> 10.0.0.2:80 DR w=1",
				"UDP 192.0.2.20:53 wlc flags=0x0",
			},
		},
		{
			name:      "service dropped from the configuration is deleted",
			snap:      snap(svc(dns, "", be(rs2, 1, director.MethodDR, true))),
			wantCalls: []string{"DelService TCP 192.0.2.10:80"},
			wantTable: []string{
				"UDP 192.0.2.20:53 -> 10.0.0.2:80 DR w=1",
				"UDP 192.0.2.20:53 wlc flags=0x0",
			},
		},
		{
			name:      "every server down leaves the service, empty",
			snap:      snap(svc(dns, "", be(rs2, 1, director.MethodDR, false))),
			wantCalls: []string{"DelDest UDP 192.0.2.20:53 -> 10.0.0.2:80"},
			wantTable: []string{"UDP 192.0.2.20:53 wlc flags=0x0"},
		},
		{
			name:      "empty snapshot removes everything",
			snap:      snap(),
			wantCalls: []string{"DelService UDP 192.0.2.20:53"},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := d.Apply(context.Background(), st.snap); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(st.wantCalls, f.takeCalls()); diff != "" {
				t.Errorf("netlink writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st.wantTable, f.table()); diff != "" {
				t.Errorf("IPVS table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIPv6Service(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	k := director.ServiceKey{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Proto: director.TCP}
	b := director.Backend{Addr: netip.MustParseAddr("2001:db8::11"), Port: 443, Weight: 1, Method: director.MethodDR, Up: true}
	if err := d.Apply(context.Background(), snap(svc(k, "mh", b))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{
		"NewService TCP [2001:db8::10]:443 mh af=10 mask=0x80",
		"NewDest TCP [2001:db8::10]:443 -> [2001:db8::11]:443 DR w=1",
	}
	if diff := cmp.Diff(want, f.takeCalls()); diff != "" {
		t.Errorf("netlink writes (-want +got):\n%s", diff)
	}
}

// preloaded returns a fake holding what a previous sluice run left (web with rs1 weight 1 and
// rs2 weight 3) and a service someone else owns.
func preloaded() *fakeIPVS {
	foreign := &fakeSvc{s: ipvs.Service{Address: net.ParseIP("198.51.100.1"), Protocol: 6, Port: 22, SchedName: "rr", AddressFamily: syscall.AF_INET}}
	ours := &fakeSvc{
		s: ipvs.Service{Address: net.ParseIP("192.0.2.10").To4(), Protocol: 6, Port: 80, SchedName: "rr", AddressFamily: syscall.AF_INET, Flags: 0x2},
		dests: []*ipvs.Destination{
			{Address: net.ParseIP("10.0.0.1").To4(), Port: 80, Weight: 1, ConnectionFlags: ipvs.ConnFwdDirectRoute},
			{Address: net.ParseIP("10.0.0.2").To4(), Port: 80, Weight: 3, ConnectionFlags: ipvs.ConnFwdDirectRoute},
		},
	}
	return &fakeIPVS{svcs: []*fakeSvc{foreign, ours}}
}

// A restarted sluice adopts the services it finds instead of re-creating them (which would
// drop their connections), and never touches services it does not own.
func TestFirstApplyAdoptsKernelState(t *testing.T) {
	f := preloaded()
	d := newTest(t, f)
	err := d.Apply(context.Background(), snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 2, director.MethodDR, true))))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff([]string{"UpdateDest TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=2"}, f.takeCalls()); diff != "" {
		t.Errorf("netlink writes (-want +got):\n%s", diff)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if diff := cmp.Diff([]string{"DelService TCP 192.0.2.10:80"}, f.takeCalls()); diff != "" {
		t.Errorf("Close writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"TCP 198.51.100.1:22 rr flags=0x0"}, f.table()); diff != "" {
		t.Errorf("table after Close (-want +got):\n%s", diff)
	}
	if !f.closed {
		t.Error("Close did not close the netlink handle")
	}
}

// A failed write is reported, the other services are still applied, and the next Apply re-reads
// the kernel and finishes the job.
func TestFailedWriteIsRetried(t *testing.T) {
	f := &fakeIPVS{fail: map[string]error{"NewDest TCP 192.0.2.10:80 -> 10.0.0.2:80": syscall.ENOMEM}}
	d := newTest(t, f)
	s := snap(
		svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 1, director.MethodDR, true)),
		svc(dns, "rr", be(rs3, 1, director.MethodDR, true)),
	)
	err := d.Apply(context.Background(), s)
	if !errors.Is(err, syscall.ENOMEM) || !strings.Contains(err.Error(), "10.0.0.2:80") {
		t.Fatalf("Apply error = %v, want ENOMEM naming 10.0.0.2:80", err)
	}
	want := []string{
		"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
		"TCP 192.0.2.10:80 rr flags=0x0",
		"UDP 192.0.2.20:53 -> 10.0.0.3:80 DR w=1",
		"UDP 192.0.2.20:53 rr flags=0x0",
	}
	if diff := cmp.Diff(want, f.table()); diff != "" {
		t.Errorf("table after failed Apply (-want +got):\n%s", diff)
	}
	f.takeCalls()
	reads := f.reads
	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if f.reads == reads {
		t.Error("second Apply did not re-read the kernel table after a failure")
	}
	if diff := cmp.Diff([]string{"NewDest TCP 192.0.2.10:80 -> 10.0.0.2:80 DR w=1"}, f.takeCalls()); diff != "" {
		t.Errorf("retry writes (-want +got):\n%s", diff)
	}
	reads = f.reads
	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatalf("third Apply: %v", err)
	}
	if f.reads != reads || len(f.takeCalls()) != 0 {
		t.Error("an Apply after a clean one read or wrote the kernel")
	}
}

// A server someone removed behind sluice's back after a failure is put back on the retry.
func TestResyncRepairsExternalChange(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	s := snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true)))
	if err := d.Apply(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	f.svcs[0].dests = nil // ipvsadm -d behind our back
	f.fail = map[string]error{"UpdateDest": syscall.EIO}
	s2 := snap(svc(web, "rr", be(rs1, 2, director.MethodDR, true)))
	if err := d.Apply(context.Background(), s2); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Apply error = %v, want EIO", err)
	}
	f.takeCalls()
	if err := d.Apply(context.Background(), s2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if diff := cmp.Diff([]string{"NewDest TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=2"}, f.takeCalls()); diff != "" {
		t.Errorf("retry writes (-want +got):\n%s", diff)
	}
}

func TestApplyRejectsBadServices(t *testing.T) {
	icmp := director.ServiceKey{VIP: vip, Port: 80, Proto: 1} // IPVS serves TCP, UDP and SCTP only
	tests := []struct {
		name        string
		svc         director.Service
		wantErr     string
		unsupported bool
	}{
		{"unknown scheduler", svc(web, "fastest", be(rs1, 1, director.MethodDR, true)), `unknown scheduler "fastest"`, false},
		{"icmp", svc(icmp, "rr"), "protocol proto(1)", true},
		{"bad method", svc(web, "rr", be(rs1, 1, 9, true)), "forwarding method method(9)", true},
		{"negative weight", svc(web, "rr", be(rs1, -1, director.MethodDR, true)), "negative weight -1", false},
		{"duplicate server", svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs1, 2, director.MethodDR, true)), "listed twice", false},
		{"invalid address", svc(web, "rr", director.Backend{Port: 80, Up: true}), "invalid address", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeIPVS{}
			d := newTest(t, f)
			good := svc(dns, "rr", be(rs2, 1, director.MethodDR, true))
			err := d.Apply(context.Background(), snap(tt.svc, good))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", got, tt.unsupported)
			}
			want := []string{"UDP 192.0.2.20:53 -> 10.0.0.2:80 DR w=1", "UDP 192.0.2.20:53 rr flags=0x0"}
			if diff := cmp.Diff(want, f.table()); diff != "" {
				t.Errorf("the valid service was not applied (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEverySchedulerIsAccepted(t *testing.T) {
	for _, name := range Schedulers {
		t.Run(name, func(t *testing.T) {
			f := &fakeIPVS{}
			d := newTest(t, f)
			if err := d.Apply(context.Background(), snap(svc(web, name))); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff([]string{"TCP 192.0.2.10:80 " + name + " flags=0x0"}, f.table()); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewWithoutIPVS(t *testing.T) {
	f := &fakeIPVS{down: syscall.ENOENT}
	_, err := New(Options{Handle: f})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("New error = %v, want ErrUnavailable wrapping ENOENT", err)
	}
	if !f.closed {
		t.Error("New did not close the handle it failed with")
	}
}

func TestApplyAfterCloseFails(t *testing.T) {
	d := newTest(t, &fakeIPVS{})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(context.Background(), snap()); err == nil {
		t.Fatal("Apply after Close succeeded")
	}
	if _, err := d.Stats(); err == nil {
		t.Fatal("Stats after Close succeeded")
	}
}

func TestApplyStopsOnCancelledContext(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Apply(ctx, snap(svc(web, "rr"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply error = %v, want context.Canceled", err)
	}
	if len(f.takeCalls()) != 0 {
		t.Error("Apply wrote to the kernel with a cancelled context")
	}
}

func TestStats(t *testing.T) {
	f := preloaded()
	f.svcs[1].s.Stats = ipvs.SvcStats{Connections: 7, PacketsIn: 70, PacketsOut: 0, BytesIn: 7000}
	f.svcs[1].dests[0].ActiveConnections = 2
	f.svcs[1].dests[0].InactiveConnections = 1
	f.svcs[1].dests[0].Stats = ipvs.DstStats{Connections: 3, PacketsIn: 30, BytesIn: 3000}
	d := newTest(t, f)
	if err := d.Apply(context.Background(), snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 3, director.MethodDR, true)))); err != nil {
		t.Fatal(err)
	}
	got, err := d.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := []ServiceStats{{
		Key: web, Scheduler: "rr",
		Counters: Counters{Conns: 7, PacketsIn: 70, BytesIn: 7000},
		Backends: []BackendStats{
			{Addr: rs1, Port: 80, Weight: 1, Method: director.MethodDR, ActiveConns: 2, InactiveConns: 1, Counters: Counters{Conns: 3, PacketsIn: 30, BytesIn: 3000}},
			{Addr: rs2, Port: 80, Weight: 3, Method: director.MethodDR},
		},
	}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestTrafficStats(t *testing.T) {
	f := preloaded()
	f.svcs[1].s.Stats = ipvs.SvcStats{Connections: 7, PacketsIn: 70, PacketsOut: 60, BytesIn: 7000, BytesOut: 6000}
	f.svcs[1].dests[1].Stats = ipvs.DstStats{Connections: 3, PacketsIn: 30, BytesIn: 3000}
	d := newTest(t, f)
	if err := d.Apply(context.Background(), snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 3, director.MethodDR, true)))); err != nil {
		t.Fatal(err)
	}
	got, err := d.TrafficStats()
	if err != nil {
		t.Fatalf("TrafficStats: %v", err)
	}
	want := director.TrafficStats{
		Services: map[director.ServiceKey]director.Counters{web: {Packets: 130, Bytes: 13000, NewFlows: 7}},
		Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{web: {
			netip.AddrPortFrom(rs1, 80): {},
			netip.AddrPortFrom(rs2, 80): {Packets: 30, Bytes: 3000, NewFlows: 3},
		}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("TrafficStats (-want +got):\n%s", diff)
	}
}

// A rejected service keeps what it has, as a bad configuration leaves the running one in place;
// deleting what someone already deleted is no error.
func TestRejectedServiceKeepsRunningState(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	good := snap(
		svc(web, "rr", be(rs1, 1, director.MethodDR, true), be(rs2, 1, director.MethodDR, true)),
		svc(dns, "rr", be(rs3, 1, director.MethodDR, true)),
	)
	if err := d.Apply(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	before := f.table()
	bad := snap(svc(web, "roundrobin", be(rs1, 1, director.MethodDR, true)), svc(dns, "rr", be(rs3, 1, director.MethodDR, true)))
	if err := d.Apply(context.Background(), bad); err == nil || !strings.Contains(err.Error(), `unknown scheduler "roundrobin"`) {
		t.Fatalf("Apply error = %v, want unknown scheduler", err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("a rejected service caused writes: %q", calls)
	}
	if diff := cmp.Diff(before, f.table()); diff != "" {
		t.Errorf("table changed (-want +got):\n%s", diff)
	}

	f.svcs = f.svcs[:1]                   // ipvsadm -D of the dns service behind our back
	f.svcs[0].dests = f.svcs[0].dests[:1] // and of web's second server
	if err := d.Apply(context.Background(), snap(svc(web, "rr", be(rs1, 1, director.MethodDR, true)))); err != nil {
		t.Fatalf("deleting what is already gone: %v", err)
	}
	if diff := cmp.Diff([]string{"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1", "TCP 192.0.2.10:80 rr flags=0x0"}, f.table()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}
