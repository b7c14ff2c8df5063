package control

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/director"
	"golang.org/x/sys/unix"
)

type fakeHandler struct {
	st        Status
	reloadErr error
	reloads   int
}

func (h *fakeHandler) Status() Status               { return h.st }
func (h *fakeHandler) Reload(context.Context) error { h.reloads++; return h.reloadErr }
func (h *fakeHandler) Plan(file string) (PlanResult, error) {
	return PlanResult{Changes: []director.Change{{Op: "+", Service: "TCP 10.0.0.1:80", Detail: file}}}, nil
}
func (h *fakeHandler) Explain(proto string, src, dst netip.AddrPort) (Explanation, error) {
	return Explanation{Proto: proto, Src: src, Dst: dst, Explanation: director.Explanation{Verdict: "pass"}}, nil
}
func (h *fakeHandler) StatusRates(context.Context) (Status, error) { return h.st, nil }

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		// The server checks for uid 0; as another user every call is refused by design.
		t.Skip("needs root: the control API serves root only")
	}
}

// serve starts a server on a socket in a fresh root-only directory.
func serve(t *testing.T, h Handler) *Server {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	s, err := Listen(filepath.Join(dir, "test.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

var sample = Status{
	Version: "test", Config: "/etc/keepalived/keepalived.conf", Dataplane: "xdp",
	Services: []Service{{
		Protocol: "TCP", VIP: netip.MustParseAddr("10.0.0.3"), Port: 80, Scheduler: "rr",
		Stats: &Counters{Conns: 8, InPkts: 132, InBytes: 34840},
		RealServers: []RealServer{
			{Address: netip.MustParseAddr("10.0.0.7"), Port: 80, Weight: 1, Forward: "Route", Healthy: true,
				Stats: &Counters{Conns: 4, InPkts: 90, InBytes: 24476, ActiveConns: 3, InactConns: 12}},
			{Address: netip.MustParseAddr("10.0.0.8"), Port: 80, Weight: 1, Forward: "Route", Healthy: true,
				Stats: &Counters{Conns: 4, InPkts: 42, InBytes: 10364}},
			{Address: netip.MustParseAddr("10.0.0.9"), Port: 80, Weight: 1, Forward: "Route", Healthy: false},
		},
	}},
}

func TestStatusRoundTrip(t *testing.T) {
	requireRoot(t)
	s := serve(t, &fakeHandler{st: sample})
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode %v, want 0600", got)
	}
	if di, _ := os.Stat(filepath.Dir(s.Path())); di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
	resp, err := Call(context.Background(), s.Path(), Request{Command: CmdStatus})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&sample, resp.Status, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestReloadReportsRefusal(t *testing.T) {
	requireRoot(t)
	h := &fakeHandler{reloadErr: errors.New("keepalived.conf:3:9: invalid lb_algo")}
	s := serve(t, h)
	_, err := Call(context.Background(), s.Path(), Request{Command: CmdReload})
	if err == nil || !strings.Contains(err.Error(), "keepalived.conf:3:9") {
		t.Errorf("reload error %v, want the config error", err)
	}
	h.reloadErr = nil
	if _, err := Call(context.Background(), s.Path(), Request{Command: CmdReload}); err != nil {
		t.Errorf("reload: %v", err)
	}
	if h.reloads != 2 {
		t.Errorf("%d reloads, want 2", h.reloads)
	}
	if _, err := Call(context.Background(), s.Path(), Request{Command: "rm -rf"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command answered %v", err)
	}
}

// asUser runs fn on a thread whose effective uid is uid, by a raw setresuid that affects only
// this thread (Go's syscall.Setresuid changes every thread). The saved uid stays 0, so the
// thread can switch back; if it cannot, it stays locked and dies with the goroutine.
func asUser(t *testing.T, uid int, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			t.Errorf("setresuid: %v", e)
			runtime.UnlockOSThread()
			return
		}
		fn()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e == 0 {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

func TestNonRootRefused(t *testing.T) {
	requireRoot(t)
	s := serve(t, &fakeHandler{st: sample})
	const nobody = 65534

	// The socket's mode keeps other users out...
	asUser(t, nobody, func() {
		_, err := net.Dial("unix", s.Path())
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("non-root connect to the 0600 socket: %v, want EACCES", err)
		}
	})
	// ...and should the mode ever be wrong, the peer credential check still refuses them.
	if err := os.Chmod(filepath.Dir(s.Path()), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	asUser(t, nobody, func() {
		_, err := Call(context.Background(), s.Path(), Request{Command: CmdStatus})
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("non-root call: %v, want permission denied", err)
		}
	})
}

func TestListenSocketLifecycle(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "x.sock")

	s1, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s1.Serve(ctx, &fakeHandler{}) }()
	if _, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "another sluice") {
		t.Errorf("second Listen on a live socket: %v, want refusal", err)
	}
	cancel()
	<-done
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after Serve returned: %v", err)
	}

	// A stale socket (its daemon died without cleaning up) is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	s2, err := Listen(path, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s2.Close()

	// A regular file where the socket should be is not removed.
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
}

func TestListenRefusesUnsafeDirectory(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(dir, "x.sock"), nil); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Listen in a world-writable directory: %v", err)
	}
}

func TestCallNotRunning(t *testing.T) {
	_, err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Command: CmdStatus})
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call without a daemon: %v, want ErrNotRunning", err)
	}
}

func TestOversizedRequestRefused(t *testing.T) {
	requireRoot(t)
	s := serve(t, &fakeHandler{st: sample})
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(bytes.Repeat([]byte("x"), 2*maxRequest))
	line, err := readLine(c, maxResponse)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(line), "longer than") {
		t.Errorf("response to an oversized request: %s", line)
	}
}

func TestWriteListMatchesIpvsadm(t *testing.T) {
	// Expected text is ipvsadm 1.31's layout (ipvsadm -Ln and -Ln --stats) for the same state;
	// the failed real server is absent, as keepalived removes it from IPVS.
	for _, tc := range []struct {
		name string
		opts ListOptions
		want string
	}{
		{"plain", ListOptions{}, "" +
			"IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
			"TCP  10.0.0.3:80 rr\n" +
			"  -> 10.0.0.7:80                  Route   1      3          12        \n" +
			"  -> 10.0.0.8:80                  Route   1      0          0         \n"},
		{"stats", ListOptions{Stats: true}, "" +
			"IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
			"  -> RemoteAddress:Port\n" +
			"TCP  10.0.0.3:80                         8      132        0    34840        0\n" +
			"  -> 10.0.0.7:80                         4       90        0    24476        0\n" +
			"  -> 10.0.0.8:80                         4       42        0    10364        0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteList(&b, sample, tc.opts); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("list (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLargenum(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "        0"},
		{99_999_999, " 99999999"},
		{830_843_123, "  830843K"},
		{1_135_000_000, "    1135M"},
		{2_938_000_000, "    2938M"},
		{123_456_789_012_345, "     123T"},
	} {
		if got := largenum(tc.in); got != tc.want {
			t.Errorf("largenum(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPersistenceFlag(t *testing.T) {
	st := Status{Services: []Service{{Protocol: "TCP", VIP: netip.MustParseAddr("10.232.132.244"), Port: 80, Scheduler: "wrr", Persistence: 50}}}
	var b strings.Builder
	WriteList(&b, st, ListOptions{})
	if !strings.Contains(b.String(), "\nTCP  10.232.132.244:80 wrr persistent 50\n") {
		t.Errorf("service line with persistence:\n%s", b.String())
	}
}

func TestParseServices(t *testing.T) {
	in := "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb HTTP\nhttp 80/udp\nhttps 443/tcp\nwww-alt 80/tcp\nbroken\n"
	want := map[string]string{"tcp/80": "http", "udp/80": "http", "tcp/443": "https"}
	if diff := cmp.Diff(want, parseServices(strings.NewReader(in))); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

func TestDumpIsPrivateAndDoesNotFollowSymlinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "x.data")); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	st := sample
	st.Started, st.Applied = now.Add(-time.Hour), now.Add(-2*time.Second)
	for _, kind := range []string{DumpData, DumpStats, DumpJSON} {
		path, err := Dump(dir, "x", kind, st, now)
		if err != nil {
			t.Fatalf("dump %s: %v", kind, err)
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Fatalf("dump %s: %v mode %v, want a regular 0600 file", kind, err, fi.Mode())
		}
		b, _ := os.ReadFile(path)
		want := map[string]string{
			DumpData:  "TCP 10.0.0.3:80 rr: 2 of 3 real servers healthy",
			DumpStats: "TCP  10.0.0.3:80                         8      132",
			DumpJSON:  `"scheduler": "rr"`,
		}[kind]
		if !strings.Contains(string(b), want) {
			t.Errorf("dump %s lacks %q:\n%s", kind, want, b)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("dump followed the symlink: victim now %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("dump directory holds %d files, want 3 (no temporaries left)", len(ents))
	}
}

func TestWriteMetrics(t *testing.T) {
	st := Status{Version: `dev"1`, Started: time.Unix(1700000000, 0), Applied: time.Unix(1700000100, 500_000_000),
		Verdicts: map[string]uint64{"tx_dr": 264, "pass_not_vip": 7},
		Services: []Service{{Protocol: "TCP", VIP: netip.MustParseAddr("10.0.0.3"), Port: 80, Scheduler: "rr",
			Stats: &Counters{Conns: 8, InPkts: 132, InBytes: 34840},
			RealServers: []RealServer{
				{Address: netip.MustParseAddr("10.0.0.7"), Port: 80, Weight: 2, Forward: "Route", Healthy: true, Stats: &Counters{Conns: 8, InPkts: 132, InBytes: 34840, ActiveConns: 5, InactConns: 2}},
				{Address: netip.MustParseAddr("10.0.0.9"), Port: 80, Weight: 1, Forward: "Route"},
			}}}}
	want := `# HELP sluice_build_info Always 1; the version label says which Sluice runs.
# TYPE sluice_build_info gauge
sluice_build_info{version="dev\"1"} 1
# HELP sluice_start_time_seconds When the daemon started, in seconds since the epoch.
# TYPE sluice_start_time_seconds gauge
sluice_start_time_seconds 1.7e+09
# HELP sluice_last_apply_timestamp_seconds When the data plane last accepted the desired state.
# TYPE sluice_last_apply_timestamp_seconds gauge
sluice_last_apply_timestamp_seconds 1.7000001005e+09
# HELP sluice_service_packets_total Packets forwarded. Per virtual service.
# TYPE sluice_service_packets_total counter
sluice_service_packets_total{protocol="TCP",vip="10.0.0.3",port="80"} 132
# HELP sluice_service_bytes_total Bytes forwarded, Ethernet frames included. Per virtual service.
# TYPE sluice_service_bytes_total counter
sluice_service_bytes_total{protocol="TCP",vip="10.0.0.3",port="80"} 34840
# HELP sluice_service_new_flows_total Flows (connections) scheduled. Per virtual service.
# TYPE sluice_service_new_flows_total counter
sluice_service_new_flows_total{protocol="TCP",vip="10.0.0.3",port="80"} 8
# HELP sluice_real_server_packets_total Packets forwarded. Per real server of a virtual service.
# TYPE sluice_real_server_packets_total counter
sluice_real_server_packets_total{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 132
# HELP sluice_real_server_bytes_total Bytes forwarded, Ethernet frames included. Per real server of a virtual service.
# TYPE sluice_real_server_bytes_total counter
sluice_real_server_bytes_total{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 34840
# HELP sluice_real_server_new_flows_total Flows (connections) scheduled. Per real server of a virtual service.
# TYPE sluice_real_server_new_flows_total counter
sluice_real_server_new_flows_total{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 8
# HELP sluice_real_server_healthy 1 when the real server's health checks pass, else 0.
# TYPE sluice_real_server_healthy gauge
sluice_real_server_healthy{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 1
sluice_real_server_healthy{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.9",real_port="80"} 0
# HELP sluice_real_server_weight The real server's weight in its virtual service.
# TYPE sluice_real_server_weight gauge
sluice_real_server_weight{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 2
sluice_real_server_weight{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.9",real_port="80"} 1
# HELP sluice_real_server_active_connections Connections established now (ipvsadm's ActiveConn). Per real server of a virtual service.
# TYPE sluice_real_server_active_connections gauge
sluice_real_server_active_connections{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 5
# HELP sluice_real_server_inactive_connections Connections open now in any other state: closing, handshaking, UDP (ipvsadm's InActConn). Per real server of a virtual service.
# TYPE sluice_real_server_inactive_connections gauge
sluice_real_server_inactive_connections{protocol="TCP",vip="10.0.0.3",port="80",real_server="10.0.0.7",real_port="80"} 2
# HELP sluice_dataplane_packets_total Packets the data plane saw, by verdict and reason (pass_*, drop_*, tx_*, redirect_*).
# TYPE sluice_dataplane_packets_total counter
sluice_dataplane_packets_total{reason="pass_not_vip"} 7
sluice_dataplane_packets_total{reason="tx_dr"} 264
`
	var b strings.Builder
	WriteMetrics(&b, st)
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}
