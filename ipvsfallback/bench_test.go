package ipvsfallback

import (
	"context"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/director"
)

// bigSnapshot is n services of 10 real servers each.
func bigSnapshot(n int, weight int) director.Snapshot {
	var s director.Snapshot
	for i := range n {
		k := director.ServiceKey{VIP: netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), Port: 80, Proto: director.TCP}
		svc := director.Service{Key: k, Scheduler: "wrr"}
		for j := range 10 {
			svc.Backends = append(svc.Backends, director.Backend{
				Addr: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j + 1)}), Port: 80, Weight: weight, Up: true,
			})
		}
		s.Services = append(s.Services, svc)
	}
	return s
}

// BenchmarkApplyUnchanged is the cost of the director re-applying an unchanged snapshot of
// 1000 services (10,000 real servers): the diff alone, no netlink writes.
func BenchmarkApplyUnchanged(b *testing.B) {
	d, err := New(Options{Handle: &fakeIPVS{}})
	if err != nil {
		b.Fatal(err)
	}
	s := bigSnapshot(1000, 1)
	if err := d.Apply(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := d.Apply(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}
