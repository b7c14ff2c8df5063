package bench

import (
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
)

// The kernel's pktgen runs only where the module exists (not on this machine's kernel): the
// guest test TestBenchBaselines (test/vm) sends with it for real. These tests check the
// commands written to it.

var testMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}

func TestPktgenCommands(t *testing.T) {
	p := path{genIf: "gen0", dirMAC: testMAC}
	tests := []struct {
		name string
		sc   scenario
		cpus []int
		want [][]string
	}{
		{
			name: "established udp ipv4 over two cpus",
			sc:   scenario{name: "established-udp", mode: genEstablished, flows: 1000, proto: director.UDP},
			cpus: []int{0, 1},
			want: [][]string{
				{"count 50000000", "clone_skb 0", "burst 1", "delay 0", "pkt_size 60", "queue_map_min 0", "queue_map_max 0",
					"dst_mac 02:00:00:00:00:42", "udp_dst_min 80", "udp_dst_max 80", "udp_src_min 1024", "udp_src_max 1524",
					"dst_min 192.0.2.100", "dst_max 192.0.2.100", "src_min 10.99.0.0", "src_max 10.99.0.0",
					"flag UDPCSUM", "flag NO_TIMESTAMP"},
				{"count 50000000", "clone_skb 0", "burst 1", "delay 0", "pkt_size 60", "queue_map_min 1", "queue_map_max 1",
					"dst_mac 02:00:00:00:00:42", "udp_dst_min 80", "udp_dst_max 80", "udp_src_min 1524", "udp_src_max 2024",
					"dst_min 192.0.2.100", "dst_max 192.0.2.100", "src_min 10.99.0.0", "src_max 10.99.0.0",
					"flag UDPCSUM", "flag NO_TIMESTAMP"},
			},
		},
		{
			name: "udp flood ipv4",
			sc:   scenario{name: "udp-flood", mode: genNew, proto: director.UDP},
			cpus: []int{3},
			want: [][]string{
				{"count 50000000", "clone_skb 0", "burst 1", "delay 0", "pkt_size 60", "queue_map_min 3", "queue_map_max 3",
					"dst_mac 02:00:00:00:00:42", "udp_dst_min 80", "udp_dst_max 80", "udp_src_min 1024", "udp_src_max 65535",
					"dst_min 192.0.2.100", "dst_max 192.0.2.100", "src_min 10.99.0.0", "src_max 10.99.255.255",
					"flag UDPCSUM", "flag NO_TIMESTAMP", "flag UDPSRC_RND", "flag IPSRC_RND"},
			},
		},
		{
			name: "udp flood ipv6",
			sc:   scenario{name: "udp-flood", mode: genNew, proto: director.UDP, v6: true},
			cpus: []int{0},
			want: [][]string{
				{"count 50000000", "clone_skb 0", "burst 1", "delay 0", "pkt_size 78", "queue_map_min 0", "queue_map_max 0",
					"dst_mac 02:00:00:00:00:42", "udp_dst_min 80", "udp_dst_max 80", "udp_src_min 1024", "udp_src_max 65535",
					"dst6 2001:db8:100::100", "src6 fd99::", "flag UDPCSUM", "flag NO_TIMESTAMP", "flag UDPSRC_RND"},
			},
		},
		{
			name: "one established udp flow ipv6",
			sc:   scenario{name: "established-udp", mode: genEstablished, flows: 1, proto: director.UDP, v6: true},
			cpus: []int{0},
			want: [][]string{
				{"count 50000000", "clone_skb 0", "burst 1", "delay 0", "pkt_size 78", "queue_map_min 0", "queue_map_max 0",
					"dst_mac 02:00:00:00:00:42", "udp_dst_min 80", "udp_dst_max 80", "udp_src_min 1024", "udp_src_max 1025",
					"dst6 2001:db8:100::100", "src6 fd99::", "flag UDPCSUM", "flag NO_TIMESTAMP"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs, err := pktgenDevs(tt.sc, p, tt.cpus, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for i, d := range devs {
				if want := "gen0@" + []string{"0", "1", "2", "3"}[tt.cpus[i]]; d.name() != want {
					t.Errorf("device %d named %q, want %q", i, d.name(), want)
				}
				got = append(got, d.commands())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPktgenFlowsMatchWarmUp checks that pktgen's source ports for established flows are the
// flows the live-frames warm-up establishes (flowSource), each sent by exactly one CPU.
func TestPktgenFlowsMatchWarmUp(t *testing.T) {
	sc := scenario{name: "established-udp", mode: genEstablished, flows: 1001, proto: director.UDP}
	devs, err := pktgenDevs(sc, path{genIf: "gen0", dirMAC: testMAC}, []int{0, 1}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[uint16]int{}
	for _, d := range devs {
		if d.src != srcBase {
			t.Errorf("source %s, want %s", d.src, srcBase)
		}
		for port := d.sportMin; port < d.sportMax; port++ { // pktgen wraps at the maximum
			sent[port]++
		}
	}
	for i := range sc.flows {
		addr, port := flowSource(srcBase, i)
		if addr != srcBase || sent[port] != 1 {
			t.Errorf("flow %d (%s:%d): sent by %d devices from %s, want 1", i, addr, port, sent[port], srcBase)
		}
	}
	if len(sent) != int(sc.flows) {
		t.Errorf("pktgen sends %d flows, want %d", len(sent), sc.flows)
	}
}

func TestPktgenRefuses(t *testing.T) {
	p := path{genIf: "gen0", dirMAC: testMAC}
	tests := []struct {
		name string
		sc   scenario
		cpus []int
	}{
		{name: "tcp", sc: scenario{name: "established", mode: genEstablished, flows: 10}, cpus: []int{0}},
		{name: "mixed", sc: scenario{name: "mixed", mode: genMixed, flows: 10, proto: director.UDP}, cpus: []int{0}},
		{name: "too many flows", sc: scenario{name: "established-udp", mode: genEstablished, flows: 1 << 20, proto: director.UDP}, cpus: []int{0}},
		{name: "fewer flows than cpus", sc: scenario{name: "established-udp", mode: genEstablished, flows: 1, proto: director.UDP}, cpus: []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if pktgenUsable(tt.sc, len(tt.cpus)) {
				t.Errorf("pktgenUsable: true, want false")
			}
			if _, err := pktgenDevs(tt.sc, p, tt.cpus, time.Second); err == nil {
				t.Errorf("pktgenDevs: no error")
			}
		})
	}
	if !pktgenUsable(scenario{name: "udp-flood", mode: genNew, proto: director.UDP}, 2) {
		t.Errorf("pktgenUsable(udp-flood): false, want true")
	}
}

func TestPktgenSent(t *testing.T) {
	status := `Params: count 50000000  min_pkt_size: 60  max_pkt_size: 60
     frags: 0  delay: 0  clone_skb: 0  ifname: gen0@0
Current:
     pkts-sofar: 123456  errors: 0
     started: 1234us  stopped: 5678us idle: 0us
Result: OK: 4444(c4000+d444) usec, 123456 (60byte,0frags)
`
	n, err := pktgenSent(status)
	if err != nil || n != 123456 {
		t.Errorf("pktgenSent = %d, %v; want 123456", n, err)
	}
	if _, err := pktgenSent("Result: Idle\n"); err == nil {
		t.Errorf("pktgenSent without pkts-sofar: no error")
	}
}

func TestScenarioFilter(t *testing.T) {
	sc := scenario{name: "established-udp", method: director.MethodNAT, v6: true, mode: genEstablished, flows: 3, proto: director.UDP}
	if got, want := sc.String(), "established-udp nat ipv6 UDP"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// With pktgen, quick and smoke runs gain UDP scenarios pktgen drives.
	names := func(o Options) map[string]bool {
		m := map[string]bool{}
		for _, sc := range scenarios(o) {
			m[sc.String()] = true
		}
		return m
	}
	for _, o := range []Options{{Smoke: true}, {Quick: true}} {
		plain, pg := names(o), names(Options{Smoke: o.Smoke, Quick: o.Quick, Generator: GeneratorPktgen})
		for _, want := range []string{"established-udp dr ipv4 UDP", "udp-flood dr ipv6 UDP"} {
			if plain[want] || !pg[want] {
				t.Errorf("smoke %v quick %v: %q with live frames %v, with pktgen %v; want only with pktgen", o.Smoke, o.Quick, want, plain[want], pg[want])
			}
		}
	}
}
