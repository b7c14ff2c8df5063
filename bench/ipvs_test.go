package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
)

// recordIPVS records the writes the IPVS baseline makes through ipvsfallback's Handle seam.
// This machine's kernel has no IPVS; the guest test TestBenchBaselines (test/vm) measures the
// baseline against Debian's kernel.
type recordIPVS struct{ calls []string }

func (f *recordIPVS) GetServices() ([]*ipvs.Service, error) { return nil, nil }
func (f *recordIPVS) GetDestinations(*ipvs.Service) ([]*ipvs.Destination, error) {
	return nil, nil
}
func (f *recordIPVS) NewService(s *ipvs.Service) error {
	f.calls = append(f.calls, fmt.Sprintf("add service %s %s:%d %s", protoName(s.Protocol), s.Address, s.Port, s.SchedName))
	return nil
}
func (f *recordIPVS) UpdateService(*ipvs.Service) error { return nil }
func (f *recordIPVS) DelService(s *ipvs.Service) error {
	f.calls = append(f.calls, fmt.Sprintf("delete service %s %s:%d", protoName(s.Protocol), s.Address, s.Port))
	return nil
}
func (f *recordIPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.calls = append(f.calls, fmt.Sprintf("add %s %s:%d -> %s %s", protoName(s.Protocol), s.Address, s.Port, destName(d), fwdName(d.ConnectionFlags)))
	return nil
}
func (f *recordIPVS) UpdateDestination(*ipvs.Service, *ipvs.Destination) error { return nil }
func (f *recordIPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.calls = append(f.calls, fmt.Sprintf("remove %s %s:%d -> %s", protoName(s.Protocol), s.Address, s.Port, destName(d)))
	return nil
}
func (f *recordIPVS) SetConfig(*ipvs.Config) error { return nil }
func (f *recordIPVS) Close()                       {}

func protoName(p uint16) string { return map[uint16]string{6: "TCP", 17: "UDP"}[p] }
func destName(d *ipvs.Destination) string {
	if d.Address.To4() == nil {
		return fmt.Sprintf("[%s]:%d", d.Address, d.Port)
	}
	return fmt.Sprintf("%s:%d", d.Address, d.Port)
}
func fwdName(f uint32) string {
	return map[uint32]string{ipvs.ConnFwdDirectRoute: "DR", ipvs.ConnFwdTunnel: "TUN", ipvs.ConnFwdMasq: "NAT"}[f&ipvs.ConnFwdMask]
}

// TestIPVSServices checks what the IPVS baseline programs: TCP and UDP services on both VIPs
// with rr over the three real servers by the scenario's method, and, when the method changes,
// real servers on the new method's port replacing the old ones (ipvsDestPort).
func TestIPVSServices(t *testing.T) {
	rec := &recordIPVS{}
	dp, err := ipvsfallback.New(ipvsfallback.Options{Handle: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := dp.Apply(ctx, ipvsSnapshot(director.MethodDR)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, svc := range []string{"TCP 192.0.2.100:80", "UDP 192.0.2.100:80", "TCP 2001:db8:100::100:80", "UDP 2001:db8:100::100:80"} {
		want = append(want, "add service "+svc+" rr")
		for i := range realCount {
			rs := realAddr(i).String() + ":80"
			if strings.Contains(svc, "2001") {
				rs = "[" + realAddr6(i).String() + "]:80"
			}
			want = append(want, fmt.Sprintf("add %s -> %s DR", svc, rs))
		}
	}
	if diff := cmp.Diff(want, rec.calls); diff != "" {
		t.Errorf("DR (-want +got):\n%s", diff)
	}

	rec.calls = nil
	if err := dp.Apply(ctx, ipvsSnapshot(director.MethodTUN)); err != nil {
		t.Fatal(err)
	}
	var adds, removes []string
	for _, c := range rec.calls {
		switch {
		case strings.HasPrefix(c, "add "):
			adds = append(adds, c)
		case strings.HasPrefix(c, "remove "):
			removes = append(removes, c)
		default:
			t.Errorf("unexpected call %q", c)
		}
	}
	if len(adds) != 4*realCount || len(removes) != 4*realCount {
		t.Errorf("DR to TUN: %d real servers added and %d removed, want %d each:\n%s", len(adds), len(removes), 4*realCount, strings.Join(rec.calls, "\n"))
	}
	for _, c := range adds {
		if !strings.HasSuffix(c, ":81 TUN") {
			t.Errorf("DR to TUN: %q, want TUN real servers on port 81", c)
		}
	}
	for _, c := range removes {
		if !strings.HasSuffix(c, ":80") {
			t.Errorf("DR to TUN: %q, want the DR real servers (port 80) removed", c)
		}
	}
	if ipvsDestPort(director.MethodNAT) == ipvsDestPort(director.MethodDR) || ipvsDestPort(director.MethodNAT) == ipvsDestPort(director.MethodTUN) {
		t.Errorf("NAT shares a port with another method")
	}

	rec.calls = nil
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 4 || !slices.ContainsFunc(rec.calls, func(c string) bool { return strings.HasPrefix(c, "delete service") }) {
		t.Errorf("close: %v, want the 4 services deleted", rec.calls)
	}
}

func TestIPVSNftRules(t *testing.T) {
	got := ipvsNftRules("dirv", "dir0")
	for _, want := range []string{"hook prerouting priority raw", `iifname "dirv" notrack`, "hook input priority filter",
		`iifname "dir0" meta l4proto { tcp, udp } th dport 80 drop`} {
		if !strings.Contains(got, want) {
			t.Errorf("rules lack %q:\n%s", want, got)
		}
	}
}

// TestReportIPVS checks that the table and the chart show the IPVS baseline when measured, and
// JSON says null where it was not.
func TestReportIPVS(t *testing.T) {
	rows := []Result{
		{Kind: "throughput", Scenario: "established", Mode: "dr", Family: "ipv4", Proto: "TCP", Flows: 1000, Cores: 1,
			Mpps: ptr(2.0), CeilingMpps: ptr(2.5), NftMpps: ptr(0.5), IPVSMpps: ptr(0.8), Generator: GeneratorLiveFrames, PerReal: []uint64{1, 2, 3}},
		{Kind: "throughput", Scenario: "udp-flood", Mode: "dr", Family: "ipv6", Proto: "UDP", Cores: 1,
			Mpps: ptr(1.0), CeilingMpps: ptr(1.5), Generator: GeneratorPktgen, PerReal: []uint64{4, 5, 6}},
	}
	var table, svg, js bytes.Buffer
	if err := WriteTable(&table, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(table.String(), "\n")
	for _, want := range []string{"ipvs Mpps", "×ipvs", "generator"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %q: %s", want, lines[0])
		}
	}
	if f := strings.Fields(lines[1]); len(f) != 17 || f[11] != "0.800" || f[12] != "2.50" || f[16] != "live-frames" {
		t.Errorf("IPVS row %q: want 17 columns with ipvs 0.800, ×ipvs 2.50, generator live-frames", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 17 || f[11] != "-" || f[16] != "pktgen" {
		t.Errorf("row without IPVS %q: want ipvs -", lines[2])
	}
	if err := WriteSVG(&svg, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), "IPVS: 0.800 Mpps") {
		t.Errorf("chart lacks the IPVS bar:\n%s", svg.String())
	}
	if err := WriteJSON(&js, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"ipvs_mpps": 0.8`) || !strings.Contains(js.String(), `"ipvs_mpps": null`) || !strings.Contains(js.String(), `"generator": "pktgen"`) {
		t.Errorf("json:\n%s", js.String())
	}
}
