package guest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
	"github.com/sluice-lb/sluice/test/netns"
)

func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_VM_GUEST") != "1" {
		fmt.Println("test/vm/guest: these tests run inside the IPVS VM that test/vm boots; nothing to do here")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// kernelTable reads the IPVS table of the namespace at nsPath with a handle of its own, so what
// the data plane wrote is checked by reading the kernel, not the data plane's memory.
func kernelTable(t *testing.T, nsPath string) []string {
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
	proto := map[uint16]string{6: "TCP", 17: "UDP"}
	fwd := map[uint32]string{ipvs.ConnFwdDirectRoute: "DR", ipvs.ConnFwdTunnel: "TUN", ipvs.ConnFwdMasq: "NAT"}
	var out []string
	for _, s := range svcs {
		id := proto[s.Protocol] + " " + net.JoinHostPort(s.Address.String(), strconv.Itoa(int(s.Port)))
		out = append(out, id+" "+s.SchedName)
		ds, err := h.GetDestinations(s)
		if err != nil {
			t.Fatalf("list real servers of %s: %v", id, err)
		}
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s -> %s %s w=%d", id, net.JoinHostPort(d.Address.String(), strconv.Itoa(int(d.Port))),
				fwd[d.ConnectionFlags&ipvs.ConnFwdMask], d.Weight))
		}
	}
	slices.Sort(out)
	return out
}

var (
	web = director.ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: director.TCP}
	dns = director.ServiceKey{VIP: netip.MustParseAddr("192.0.2.20"), Port: 53, Proto: director.UDP}
	v6  = director.ServiceKey{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Proto: director.TCP}
	rs1 = netip.MustParseAddr("10.0.0.1")
	rs2 = netip.MustParseAddr("10.0.0.2")
	rs3 = netip.MustParseAddr("10.0.0.3")
)

func be(a netip.Addr, port uint16, w int, m director.Method, up bool) director.Backend {
	return director.Backend{Addr: a, Port: port, Weight: w, Method: m, Up: up}
}

func snap(svcs ...director.Service) director.Snapshot { return director.Snapshot{Services: svcs} }

// ipvsNS returns a fresh namespace's path: IPVS tables are per network namespace.
func ipvsNS(t *testing.T) string {
	t.Helper()
	env := netns.ForTest(t)
	ns, err := env.NewNS("ipvs")
	if err != nil {
		t.Fatal(err)
	}
	return "/run/netns/" + ns.Name
}

// TestKernelApply drives the data plane through a series of snapshots against the real kernel
// and reads the table back after each.
func TestKernelApply(t *testing.T) {
	path := ipvsNS(t)
	dp, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	steps := []struct {
		name string
		snap director.Snapshot
		want []string
	}{
		{
			name: "services with DR, NAT and TUN servers",
			snap: snap(
				director.Service{Key: web, Scheduler: "wrr", Backends: []director.Backend{
					be(rs1, 80, 1, director.MethodDR, true), be(rs2, 8080, 3, director.MethodNAT, true), be(rs3, 80, 2, director.MethodTUN, true)}},
				director.Service{Key: dns, Scheduler: "", Backends: []director.Backend{be(rs1, 53, 1, director.MethodDR, true)}},
				director.Service{Key: v6, Scheduler: "mh", Backends: []director.Backend{
					be(netip.MustParseAddr("2001:db8::11"), 443, 1, director.MethodDR, true)}},
			),
			want: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=1",
				"TCP 192.0.2.10:80 -> 10.0.0.2:8080 NAT w=3",
				"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=2",
				"TCP 192.0.2.10:80 wrr",
				"TCP [2001:db8::10]:443 -> [2001:db8::11]:443 DR w=1",
				"TCP [2001:db8::10]:443 mh",
				"UDP 192.0.2.20:53 -> 10.0.0.1:53 DR w=1",
				"UDP 192.0.2.20:53 wlc",
			},
		},
		{
			name: "weight change, failed server removed, inhibited server at weight 0, scheduler change, IPv6 gone",
			snap: snap(
				director.Service{Key: web, Scheduler: "rr", Backends: []director.Backend{
					be(rs1, 80, 5, director.MethodDR, true), be(rs2, 8080, 3, director.MethodNAT, false), be(rs3, 80, 0, director.MethodTUN, true)}},
				director.Service{Key: dns, Scheduler: "", Backends: []director.Backend{be(rs1, 53, 1, director.MethodNAT, true)}},
			),
			want: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=0",
				"TCP 192.0.2.10:80 rr",
				"UDP 192.0.2.20:53 -> 10.0.0.1:53 NAT w=1",
				"UDP 192.0.2.20:53 wlc",
			},
		},
		{
			name: "failed server back",
			snap: snap(
				director.Service{Key: web, Scheduler: "rr", Backends: []director.Backend{
					be(rs1, 80, 5, director.MethodDR, true), be(rs2, 8080, 3, director.MethodNAT, true), be(rs3, 80, 0, director.MethodTUN, true)}},
			),
			want: []string{
				"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
				"TCP 192.0.2.10:80 -> 10.0.0.2:8080 NAT w=3",
				"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=0",
				"TCP 192.0.2.10:80 rr",
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := dp.Apply(context.Background(), st.snap); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(st.want, kernelTable(t, path)); diff != "" {
				t.Errorf("kernel IPVS table (-want +got):\n%s", diff)
			}
			// Applying the same snapshot again must succeed without touching anything.
			if err := dp.Apply(context.Background(), st.snap); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
		})
	}

	t.Run("stats read back", func(t *testing.T) {
		st, err := dp.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if len(st) != 1 || st[0].Key != web || st[0].Scheduler != "rr" || len(st[0].Backends) != 3 {
			t.Fatalf("Stats = %+v, want web with 3 real servers", st)
		}
		if b := st[0].Backends[1]; b.Addr != rs2 || b.Port != 8080 || b.Weight != 3 || b.Method != director.MethodNAT {
			t.Errorf("second real server = %+v, want 10.0.0.2:8080 weight 3 NAT", b)
		}
	})

	t.Run("a restarted data plane adopts the table", func(t *testing.T) {
		dp2, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		s := snap(director.Service{Key: web, Scheduler: "rr", Backends: []director.Backend{
			be(rs1, 80, 5, director.MethodDR, true), be(rs2, 8080, 4, director.MethodNAT, true), be(rs3, 80, 0, director.MethodTUN, true)}})
		if err := dp2.Apply(context.Background(), s); err != nil {
			t.Fatalf("Apply over the existing table: %v", err)
		}
		want := []string{
			"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=5",
			"TCP 192.0.2.10:80 -> 10.0.0.2:8080 NAT w=4",
			"TCP 192.0.2.10:80 -> 10.0.0.3:80 TUN w=0",
			"TCP 192.0.2.10:80 rr",
		}
		if diff := cmp.Diff(want, kernelTable(t, path)); diff != "" {
			t.Errorf("kernel IPVS table (-want +got):\n%s", diff)
		}
		if err := dp2.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if got := kernelTable(t, path); len(got) != 0 {
			t.Errorf("table after Close = %q, want empty", got)
		}
	})
}

// TestKernelSchedulers creates a service with each IPVS scheduler this kernel ships.
func TestKernelSchedulers(t *testing.T) {
	path := ipvsNS(t)
	dp, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	tested := 0
	for _, name := range ipvsfallback.Schedulers {
		if _, err := os.Stat("/sys/module/ip_vs_" + name); err != nil {
			t.Logf("scheduler %s: not in this kernel (%v)", name, err)
			continue
		}
		tested++
		t.Run(name, func(t *testing.T) {
			s := snap(director.Service{Key: web, Scheduler: name, Backends: []director.Backend{be(rs1, 80, 2, director.MethodDR, true)}})
			if err := dp.Apply(context.Background(), s); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := []string{"TCP 192.0.2.10:80 -> 10.0.0.1:80 DR w=2", "TCP 192.0.2.10:80 " + name}
			if diff := cmp.Diff(want, kernelTable(t, path)); diff != "" {
				t.Errorf("kernel IPVS table (-want +got):\n%s", diff)
			}
		})
	}
	if tested < 10 {
		t.Errorf("only %d schedulers loaded; the VM should load every ip_vs_* module", tested)
	}
}

// TestUnavailableWithoutModule cannot be shown here (the module is loaded); New's error path
// is covered by the unit tests. This checks the opposite: New succeeds where IPVS exists.
func TestNewInRootNamespace(t *testing.T) {
	dp, err := ipvsfallback.New(ipvsfallback.Options{})
	if err != nil {
		t.Fatalf("New with ip_vs loaded: %v", err)
	}
	if err := dp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
