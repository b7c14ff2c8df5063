package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/health"
	"github.com/sluice-lb/sluice/vrrp"
)

// fakePlane stands in for the data plane: control only reads counters and explanations from
// it, and the loader's own tests check those against the kernel.
type fakePlane struct {
	ts  director.TrafficStats
	ex  director.Explanation
	got []netip.AddrPort // explain calls' source and destination
}

func (f *fakePlane) TrafficStats() (director.TrafficStats, error) { return f.ts, nil }

func (f *fakePlane) Explain(_ director.Proto, src, dst netip.AddrPort) (director.Explanation, error) {
	f.got = append(f.got, src, dst)
	return f.ex, nil
}

var (
	vip   = netip.MustParseAddr("10.0.0.100")
	rs1   = netip.MustParseAddrPort("10.0.0.7:80")
	rs2   = netip.MustParseAddrPort("10.0.0.8:80")
	tcp80 = director.ServiceKey{VIP: vip, Port: 80, Proto: director.TCP}
)

func testSnapshot() director.Snapshot {
	return director.Snapshot{Services: []director.Service{{Key: tcp80, Scheduler: "mh", Backends: []director.Backend{
		{Addr: rs1.Addr(), Port: 80, Weight: 1, Up: true},
		{Addr: rs2.Addr(), Port: 80, Weight: 3, Up: false},
	}}}}
}

func TestStatusRates(t *testing.T) {
	plane := &fakePlane{}
	counters := func(conns, pkts, bytes uint64) {
		plane.ts = director.TrafficStats{
			Services: map[director.ServiceKey]director.Counters{tcp80: {NewFlows: conns, Packets: pkts, Bytes: bytes}},
			Backends: map[director.ServiceKey]map[netip.AddrPort]director.Counters{tcp80: {
				rs1: {NewFlows: conns, Packets: pkts, Bytes: bytes},
			}},
		}
	}
	now := time.Unix(1700000000, 0)
	s := NewState(Status{}, plane, nil)
	s.now = func() time.Time { return now }
	// Sleeping moves the clock and the counters on: 2 connections, 20 packets, 3000 bytes a second.
	var slept time.Duration
	s.sleep = func(_ context.Context, d time.Duration) error {
		slept += d
		now = now.Add(d)
		counters(12, 120, 16000)
		return nil
	}
	s.Applied(testSnapshot())
	counters(10, 100, 13000)

	want := &Rates{CPS: 2, InPPS: 20, InBPS: 3000, Window: time.Second}
	st, err := s.StatusRates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slept != time.Second {
		t.Errorf("without an earlier sample, slept %v, want 1s", slept)
	}
	if diff := cmp.Diff(want, st.Services[0].Rates); diff != "" {
		t.Errorf("service rates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, st.Services[0].RealServers[0].Rates); diff != "" {
		t.Errorf("real server rates (-want +got):\n%s", diff)
	}

	// 4 s later, the last sample (that call's) serves as the start: no sleep.
	slept = 0
	now = now.Add(4 * time.Second)
	counters(20, 200, 28000)
	st, err = s.StatusRates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want = &Rates{CPS: 2, InPPS: 20, InBPS: 3000, Window: 4 * time.Second}
	if diff := cmp.Diff(want, st.Services[0].Rates); diff != "" || slept != 0 {
		t.Errorf("rates from the last sample, slept %v (-want +got):\n%s", slept, diff)
	}

	// A counter going back (a real server re-added) is a rate of 0, not a wrap.
	now = now.Add(2 * time.Second)
	counters(1, 1, 1)
	st, _ = s.StatusRates(context.Background())
	if diff := cmp.Diff(&Rates{Window: 2 * time.Second}, st.Services[0].Rates); diff != "" {
		t.Errorf("rates after a reset (-want +got):\n%s", diff)
	}

	if _, err := NewState(Status{}, nil, nil).StatusRates(context.Background()); err == nil {
		t.Error("rates without counters: no error")
	}
}

func TestWriteListRateMatchesIpvsadm(t *testing.T) {
	// ipvsadm 1.31 prints --rate like --stats: the service name in %-33s, the destination in
	// "  -> %-28s", then print_largenum of CPS, InPPS, OutPPS, InBPS and OutBPS.
	st := Status{Services: []Service{{Protocol: "TCP", VIP: netip.MustParseAddr("172.17.0.1"), Port: 30180,
		Rates: &Rates{CPS: 3, InPPS: 41, InBPS: 2_938_000_000},
		RealServers: []RealServer{
			{Address: netip.MustParseAddr("10.48.0.14"), Port: 80, Healthy: true, Rates: &Rates{CPS: 3, InPPS: 41, InBPS: 5230}},
			{Address: netip.MustParseAddr("10.48.0.15"), Port: 80, Healthy: true},
		}}}}
	want := "" +
		"IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  172.17.0.1:30180                    3       41        0    2938M        0\n" +
		"  -> 10.48.0.14:80                       3       41        0     5230        0\n" +
		"  -> 10.48.0.15:80                       0        0        0        0        0\n"
	var b strings.Builder
	if err := WriteList(&b, st, ListOptions{Rate: true}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("list --rate (-want +got):\n%s", diff)
	}
}

func TestHealthAndVRRPInStatusAndMetrics(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s := NewState(Status{}, nil, nil)
	s.now = func() time.Time { return now }
	s.Applied(testSnapshot())
	id1, id2 := director.TargetIDOf(tcp80, rs1), director.TargetIDOf(tcp80, rs2)
	s.Probe(health.Probe{IDs: []string{id1}, Check: "TCP_CHECK 10.0.0.7:80", Latency: 1500 * time.Microsecond})
	s.Probe(health.Probe{IDs: []string{id1}, Check: "TCP_CHECK 10.0.0.7:80", Latency: 2 * time.Millisecond})
	s.Probe(health.Probe{IDs: []string{id2}, Check: "TCP_CHECK 10.0.0.8:80", Latency: 3 * time.Second, Err: errors.New("timed out")})
	s.Health(health.Event{ID: id2, Up: false, Err: errors.New("TCP_CHECK 10.0.0.8:80: timed out")})

	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Master, Prev: vrrp.Backup, At: now})
	s.trackVRRPStats("VI_1", func() vrrp.Stats {
		return vrrp.Stats{Received: 3, Sent: 40, Transitions: 2, Dropped: map[vrrp.Reason]uint64{vrrp.ReasonAuth: 5, vrrp.ReasonTTL: 1},
			Master: netip.MustParseAddr("10.0.0.1")}
	})
	s.trackVRRPStats("VI_2", func() vrrp.Stats { return vrrp.Stats{} })

	st := s.Status()
	wantChecks := []*Check{
		{At: now, Latency: 2 * time.Millisecond, Checker: "TCP_CHECK 10.0.0.7:80", Passed: 2},
		{At: now, Latency: 3 * time.Second, Checker: "TCP_CHECK 10.0.0.8:80", Error: "timed out", Failed: 1,
			Reason: "TCP_CHECK 10.0.0.8:80: timed out"},
	}
	if diff := cmp.Diff(wantChecks, []*Check{st.Services[0].RealServers[0].Check, st.Services[0].RealServers[1].Check}); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	wantVRRP := []VRRPInstance{
		{Name: "VI_2", State: "INIT", Stats: &VRRPStats{}},
		{Name: "VI_1", State: "MASTER", Since: now, Master: netip.MustParseAddr("10.0.0.1"), Stats: &VRRPStats{AdvertsReceived: 3, AdvertsSent: 40, Transitions: 2,
			Dropped: map[string]uint64{"auth": 5, "ttl": 1}}},
	}
	if diff := cmp.Diff(wantVRRP, st.VRRP, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("vrrp (-want +got):\n%s", diff)
	}

	var b strings.Builder
	WriteMetrics(&b, st)
	rs := func(a netip.AddrPort) string {
		return `protocol="TCP",vip="10.0.0.100",port="80",real_server="` + a.Addr().String() + `",real_port="80"`
	}
	for _, want := range []string{
		"# TYPE sluice_real_server_check_duration_seconds gauge\n" +
			"sluice_real_server_check_duration_seconds{" + rs(rs1) + "} 0.002\n" +
			"sluice_real_server_check_duration_seconds{" + rs(rs2) + "} 3\n",
		"# TYPE sluice_real_server_checks_total counter\n" +
			"sluice_real_server_checks_total{" + rs(rs1) + `,result="passed"} 2` + "\n" +
			"sluice_real_server_checks_total{" + rs(rs1) + `,result="failed"} 0` + "\n",
		"sluice_real_server_healthy{" + rs(rs2) + "} 0\n",
		"# TYPE sluice_vrrp_state gauge\n" +
			`sluice_vrrp_state{instance="VI_1",state="INIT"} 0` + "\n" +
			`sluice_vrrp_state{instance="VI_1",state="BACKUP"} 0` + "\n" +
			`sluice_vrrp_state{instance="VI_1",state="MASTER"} 1` + "\n" +
			`sluice_vrrp_state{instance="VI_1",state="FAULT"} 0` + "\n" +
			`sluice_vrrp_state{instance="VI_2",state="INIT"} 1` + "\n",
		"# TYPE sluice_vrrp_transitions_total counter\n" + `sluice_vrrp_transitions_total{instance="VI_1"} 2` + "\n",
		"# TYPE sluice_vrrp_adverts_sent_total counter\n" + `sluice_vrrp_adverts_sent_total{instance="VI_1"} 40` + "\n",
		"# TYPE sluice_vrrp_adverts_received_total counter\n" + `sluice_vrrp_adverts_received_total{instance="VI_1"} 3` + "\n",
		"# TYPE sluice_vrrp_dropped_total counter\n" +
			`sluice_vrrp_dropped_total{instance="VI_1",reason="auth"} 5` + "\n" +
			`sluice_vrrp_dropped_total{instance="VI_1",reason="ttl"} 1` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack\n%s\nin:\n%s", want, b.String())
		}
	}
}

const explainConf = `
vrrp_instance VI_1 {
    state BACKUP
    interface lo
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.0.0.100/32
    }
}
virtual_server 10.0.0.100 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.0.0.7 80 {
        weight 1
    }
    real_server 10.0.0.8 80 {
        weight 3
    }
}
`

func TestStateExplain(t *testing.T) {
	cfg, err := config.Parse("keepalived.conf", []byte(explainConf))
	if err != nil {
		t.Fatal(err)
	}
	pinned := rs1
	plane := &fakePlane{ex: director.Explanation{Service: &tcp80, Flow: director.FlowConfirmed, Pinned: &pinned,
		PinnedUsable: true, RealServer: &pinned, Method: "DR", Verdict: "forward", Why: []string{"flow table hit"}}}
	s := NewState(Status{}, plane, nil)
	s.SetConfig(cfg)
	src := netip.MustParseAddrPort("192.0.2.5:40000")
	dst := netip.AddrPortFrom(vip, 80)

	// BACKUP: the director leaves the service out of the snapshot; the packet goes to the stack.
	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Backup})
	s.Applied(director.Snapshot{})
	ex, err := s.Explain("TCP", src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict != "pass" || ex.VRRPState != "BACKUP" || ex.Configured != "TCP 10.0.0.100:80" || len(plane.got) != 0 {
		t.Errorf("as BACKUP: %+v (data plane asked %v), want pass by VRRP", ex, plane.got)
	}

	// MASTER: the data plane's answer, with the daemon's reasons and the real server's health.
	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Master})
	s.Applied(testSnapshot())
	s.Probe(health.Probe{IDs: []string{director.TargetIDOf(tcp80, rs1)}, Check: "TCP_CHECK", Latency: time.Millisecond})
	ex, err = s.Explain("tcp", src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.AddrPort{src, dst}, plane.got, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("data plane asked about (-want +got):\n%s", diff)
	}
	why := strings.Join(ex.Why, "\n")
	for _, want := range []string{"VI_1 covers 10.0.0.100 and is MASTER here", "flow table hit",
		"real server 10.0.0.7:80: healthy, weight 1, Route; last check TCP_CHECK took 1ms"} {
		if !strings.Contains(why, want) {
			t.Errorf("why lacks %q:\n%s", want, why)
		}
	}
	if ex.Verdict != "forward" || len(ex.RealServers) != 1 || ex.RealServers[0].Address != rs1.Addr() {
		t.Errorf("as MASTER: %+v", ex)
	}
	var b strings.Builder
	WriteExplanation(&b, ex)
	for _, want := range []string{"tcp 192.0.2.5:40000 -> 10.0.0.100:80\n", "vrrp:        VI_1 is MASTER here\n",
		"flow:        hit, confirmed, pinned to 10.0.0.7:80", "verdict:     forward to 10.0.0.7:80 by DR\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, b.String())
		}
	}

	for _, bad := range []struct {
		proto    string
		src, dst netip.AddrPort
	}{{"icmp", src, dst}, {"tcp", netip.AddrPort{}, dst}} {
		if _, err := s.Explain(bad.proto, bad.src, bad.dst); err == nil {
			t.Errorf("Explain(%q, %v, %v): no error", bad.proto, bad.src, bad.dst)
		}
	}
	if _, err := NewState(Status{}, nil, nil).Explain("tcp", src, dst); !errors.Is(err, director.ErrUnsupported) {
		t.Errorf("Explain without an explaining data plane: %v, want ErrUnsupported", err)
	}
}

func TestExplainRoundTrip(t *testing.T) {
	requireRoot(t)
	s := serve(t, &fakeHandler{st: sample})
	src, dst := netip.MustParseAddrPort("[2001:db8::5]:40000"), netip.MustParseAddrPort("[2001:db8::100]:443")
	resp, err := Call(context.Background(), s.Path(), Request{Command: CmdExplain, Proto: "udp", Src: src, Dst: dst})
	if err != nil {
		t.Fatal(err)
	}
	want := &Explanation{Proto: "udp", Src: src, Dst: dst, Explanation: director.Explanation{Verdict: "pass"}}
	if diff := cmp.Diff(want, resp.Explain, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("explanation (-want +got):\n%s", diff)
	}
	if resp, err := Call(context.Background(), s.Path(), Request{Command: CmdRates}); err != nil || resp.Status == nil {
		t.Errorf("rates call: %v, %+v", err, resp)
	}
}

const explainGroupConf = `
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.0.0.100
        10.0.0.101
    }
}
virtual_server_group WEB {
    10.0.0.100 80
    10.0.0.101 80
}
virtual_server group WEB {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.7 80 {
        weight 1
    }
}
virtual_server 10.0.0.100 0 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    persistence_timeout 60
    real_server 10.0.0.8 0 {
        weight 1
    }
}
`

// TestStateExplainGroupAndAllPorts checks that explain finds the virtual_server a destination
// belongs to through a virtual_server_group entry, and through an all-ports (port 0) one.
func TestStateExplainGroupAndAllPorts(t *testing.T) {
	cfg, err := config.Parse("keepalived.conf", []byte(explainGroupConf))
	if err != nil {
		t.Fatal(err)
	}
	s := NewState(Status{}, &fakePlane{}, nil)
	s.SetConfig(cfg)
	s.VRRP(vrrp.Event{Instance: "VI_1", State: vrrp.Backup})
	s.Applied(director.Snapshot{})
	src := netip.MustParseAddrPort("192.0.2.5:40000")
	for _, tc := range []struct {
		dst  string
		want string
	}{
		{"10.0.0.101:80", "TCP 10.0.0.101:80"},
		{"10.0.0.100:80", "TCP 10.0.0.100:80"},
		{"10.0.0.100:8080", "TCP 10.0.0.100:0"},
		{"10.0.0.101:8080", ""},
	} {
		ex, err := s.Explain("tcp", src, netip.MustParseAddrPort(tc.dst))
		if err != nil {
			t.Fatal(err)
		}
		if ex.Configured != tc.want {
			t.Errorf("%s: configured %q, want %q", tc.dst, ex.Configured, tc.want)
		}
	}
}
