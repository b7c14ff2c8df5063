package ipvsfallback

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/director"
)

// TestPersistenceAndTimeouts checks that persistence_timeout, persistence_granularity, the
// sh/mh flags and lvs_timeouts reach IPVS as keepalived writes them (ipvsadm -p, -M, -b,
// --set), and that an unchanged snapshot writes nothing.
func TestPersistenceAndTimeouts(t *testing.T) {
	f := &fakeIPVS{}
	d := newTest(t, f)
	b := be(rs1, 1, director.MethodDR, true)
	web6 := director.ServiceKey{VIP: netip.MustParseAddr("2001:db8::10"), Port: 0, Proto: director.TCP}
	persistent := func(s director.Service, d time.Duration, prefix int, flags director.SchedFlags) director.Service {
		s.Persistence, s.PersistencePrefix, s.SchedFlags = d, prefix, flags
		return s
	}
	steps := []struct {
		name string
		snap director.Snapshot
		want []string
	}{
		{"persistent services", director.Snapshot{
			Services: []director.Service{
				persistent(svc(web, "rr", b), 300*time.Second, 24, 0),
				persistent(svc(web6, "sh", b), time.Minute, 64, director.SchedPort|director.SchedFallback),
			},
			Timeouts: director.Timeouts{TCP: time.Hour, UDP: 10 * time.Second},
		}, []string{
			"NewService TCP 192.0.2.10:80 rr af=2 mask=0xffffff flags=0x1 timeout=300 mask=0xffffff",
			"NewDest TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
			"NewService TCP [2001:db8::10]:0 sh af=10 mask=0x40 flags=0x19 timeout=60 mask=0x40",
			"NewDest TCP [2001:db8::10]:0 -> 10.0.0.1:80 DR w=1",
			"SetConfig tcp=1h0m0s tcpfin=0s udp=10s",
		}},
		{"unchanged", director.Snapshot{
			Services: []director.Service{
				persistent(svc(web, "rr", b), 300*time.Second, 24, 0),
				persistent(svc(web6, "sh", b), time.Minute, 64, director.SchedPort|director.SchedFallback),
			},
			Timeouts: director.Timeouts{TCP: time.Hour, UDP: 10 * time.Second},
		}, nil},
		{"persistence off, flags and timeouts changed", director.Snapshot{
			Services: []director.Service{
				svc(web, "rr", b),
				persistent(svc(web6, "sh", b), 0, 0, director.SchedPort),
			},
			Timeouts: director.Timeouts{TCPFin: time.Minute},
		}, []string{
			"UpdateService TCP 192.0.2.10:80 rr",
			"UpdateService TCP [2001:db8::10]:0 sh flags=0x10 timeout=0 mask=0x80",
			"SetConfig tcp=0s tcpfin=1m0s udp=0s",
		}},
	}
	for _, s := range steps {
		if err := d.Apply(context.Background(), s.snap); err != nil {
			t.Fatalf("%s: Apply: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, f.takeCalls()); diff != "" {
			t.Errorf("%s: netlink writes (-want +got):\n%s", s.name, diff)
		}
	}

	// A restarted daemon adopts the persistent services as they are.
	d2 := newTest(t, f)
	if err := d2.Apply(context.Background(), steps[2].snap); err != nil {
		t.Fatalf("Apply after restart: %v", err)
	}
	if diff := cmp.Diff([]string{"SetConfig tcp=0s tcpfin=1m0s udp=0s"}, f.takeCalls()); diff != "" {
		t.Errorf("netlink writes after restart (-want +got):\n%s", diff)
	}
}
