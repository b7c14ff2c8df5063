package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// noxdpBin is test/vm/noxdp in the VM: it runs a program with bpf(2) failing with EPERM.
func noxdpBin() string { return cmpOr(os.Getenv("SLUICE_NOXDP_BIN"), "/usr/local/bin/noxdp") }

// sluiceStatus runs `sluice status` against d's control socket.
func sluiceStatus(t *testing.T, d *daemon) string {
	t.Helper()
	out, err := exec.Command(sluiceBin(), "status", "--socket", d.socket).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice status: %v\n%s", err, out)
	}
	return string(out)
}

// TestSluiceAutoFallback runs `sluice run` with the default --dataplane auto under noxdp, a
// seccomp filter that fails every bpf() call with EPERM, as on a host where the daemon may not
// use BPF. The XDP program cannot load, so sluice must say so in one line, forward with kernel
// IPVS, serve the client through it, and report the choice and its reason in sluice status.
// First, as a control, the same command without noxdp must take XDP.
func TestSluiceAutoFallback(t *testing.T) {
	env := netns.ForTest(t)
	l, err := lab.Build(env, 2)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	rs1, rs2 := l.RealServers[0], l.RealServers[1]
	vs := fmt.Sprintf("TCP %s:80", lab.VIP)
	conf := keepalivedConf(lab.VIP, "rr", "DR", server{rs1.Addr, 1}, server{rs2.Addr, 1})

	// The control: the same command without noxdp takes XDP (the program passes this older
	// kernel's verifier), so the fallback below is the filter's doing.
	ctl := startSluiceWith(t, env, l.Director, conf, nil)
	var st string
	for i := 0; i < 100; i++ { // until it has applied its first snapshot, up to 20 s
		out, err := exec.Command(sluiceBin(), "status", "--socket", ctl.socket).CombinedOutput()
		if st = string(out); err == nil && strings.Contains(st, "last applied") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	switch first, _, _ := strings.Cut(st, "\n"); {
	case strings.Contains(st, "data plane xdp,"):
		if attached, desc, err := l.XDPState(); err != nil || !attached {
			t.Errorf("control: status says xdp but %s: %s (err %v)", lab.Iface, desc, err)
		}
	default:
		t.Fatalf("control: without noxdp, sluice status = %.400s, want data plane xdp", first)
	}
	ctl.stop(t)
	if attached, desc, err := l.XDPState(); err != nil || attached {
		t.Fatalf("after the control run: %s (err %v), want no XDP program", desc, err)
	}

	d := startSluiceWith(t, env, l.Director, conf, []string{noxdpBin()})
	d.waitTable(t, 20*time.Second, vs+" rr", vs+" -> "+rs1.Addr.String()+":80 DR w=1", vs+" -> "+rs2.Addr.String()+":80 DR w=1")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	checkTally(t, l.Run(ctx, 20), lab.ClientIP, map[string]int{"rs1": 10, "rs2": 10})

	if attached, desc, err := l.XDPState(); err != nil || attached {
		t.Errorf("director's %s: %s (err %v), want no XDP program", lab.Iface, desc, err)
	}
	if !d.log.Contains(0, "XDP is unavailable, forwarding with kernel IPVS instead") {
		t.Errorf("sluice did not log the fallback")
	}
	st = sluiceStatus(t, d)
	t.Logf("sluice status:\n%s", st)
	for _, want := range []string{"data plane ipvs (auto: XDP unavailable:", "operation not permitted"} {
		if !strings.Contains(st, want) {
			t.Errorf("sluice status does not say %q", want)
		}
	}
}

// TestSluiceVRRPOwnership runs two `sluice run --dataplane ipvs` directors sharing the VIP with
// VRRP (priorities 150 and 100). The MASTER holds the VIP and the IPVS service and serves; the
// BACKUP holds no IPVS service for the VIP at all (docs/ipvs.md, "VRRP"). When the MASTER
// stops, the BACKUP takes the VIP, programs the service and serves.
func TestSluiceVRRPOwnership(t *testing.T) {
	env := netns.ForTest(t)
	l, err := lab.BuildVRRP(env, 2)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	vs := fmt.Sprintf("TCP %s:80", lab.VIP)
	full := []string{vs + " rr", vs + " -> " + l.RealServers[0].Addr.String() + ":80 DR w=1",
		vs + " -> " + l.RealServers[1].Addr.String() + ":80 DR w=1"}
	master := startSluiceWith(t, env, l.Directors[0], l.KeepalivedConfVRRP(150), nil, "--dataplane", "ipvs")
	backup := startSluiceWith(t, env, l.Directors[1], l.KeepalivedConfVRRP(100), nil, "--dataplane", "ipvs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("MASTER holds the VIP and the service and serves, BACKUP holds no service", func(t *testing.T) {
		if err := l.WaitHolder(0, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		master.waitTable(t, 10*time.Second, full...)
		if err := l.WaitReady(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		checkTally(t, l.Run(ctx, 10), lab.ClientIP, map[string]int{"rs1": 5, "rs2": 5})
		if got := kernelTable(t, backup.nsPath); len(got) != 0 {
			t.Errorf("BACKUP's IPVS table = %q, want empty", got)
		}
	})

	t.Run("after the MASTER stops the BACKUP takes over and serves", func(t *testing.T) {
		master.stop(t)
		if err := l.WaitHolder(1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		backup.waitTable(t, 10*time.Second, full...)
		if err := l.WaitReady(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		checkTally(t, l.Run(ctx, 10), lab.ClientIP, map[string]int{"rs1": 5, "rs2": 5})
	})
}

// kernelFlags returns the IPVS service flags Sluice owns (persistent, SCHED1, SCHED2) of the
// service at vip:port in the namespace at nsPath, read with a netlink handle of its own.
func kernelFlags(t *testing.T, nsPath string, k director.ServiceKey) (sched string, flags uint32) {
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
	for _, s := range svcs {
		if s.Address.Equal(k.VIP.AsSlice()) && s.Port == k.Port && s.Protocol == uint16(k.Proto) {
			return s.SchedName, s.Flags & (0x0001 | 0x0008 | 0x0010)
		}
	}
	t.Fatalf("no service %v in the kernel", k)
	return "", 0
}

// TestKernelSchedulerFlags checks that sh-port/mh-port and sh-fallback/mh-fallback reach the
// kernel as IP_VS_SVC_F_SCHED2 (0x10) and IP_VS_SVC_F_SCHED1 (0x08), are changed in place and
// cleared, as keepalived's `lvs_sched sh` with `sh-port`/`sh-fallback` does.
func TestKernelSchedulerFlags(t *testing.T) {
	path := ipvsNS(t)
	dp, err := ipvsfallback.New(ipvsfallback.Options{NetnsPath: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	for _, st := range []struct {
		name      string
		sched     string
		flags     director.SchedFlags
		wantFlags uint32
	}{
		{"sh-port and sh-fallback", "sh", director.SchedPort | director.SchedFallback, 0x18},
		{"sh-fallback only", "sh", director.SchedFallback, 0x08},
		{"mh-port", "mh", director.SchedPort, 0x10},
		{"mh-port and mh-fallback", "mh", director.SchedPort | director.SchedFallback, 0x18},
		{"flags cleared", "mh", 0, 0},
	} {
		t.Run(st.name, func(t *testing.T) {
			s := snap(director.Service{Key: web, Scheduler: st.sched, SchedFlags: st.flags,
				Backends: []director.Backend{be(rs1, 80, 1, director.MethodDR, true), be(rs2, 80, 1, director.MethodDR, true)}})
			if err := dp.Apply(context.Background(), s); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			sched, flags := kernelFlags(t, path, web)
			if diff := cmp.Diff(fmt.Sprintf("%s %#x", st.sched, st.wantFlags), fmt.Sprintf("%s %#x", sched, flags)); diff != "" {
				t.Errorf("kernel scheduler and flags (-want +got):\n%s", diff)
			}
		})
	}
}
