package notify

import (
	"bufio"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

func TestLines(t *testing.T) {
	vs4 := config.VirtualServer{Addr: netip.MustParseAddr("192.168.201.15"), Port: 80, Protocol: config.TCP}
	vs6 := config.VirtualServer{Addr: netip.MustParseAddr("2001:db8::15"), Port: 53, Protocol: config.UDP}
	rs4 := config.RealServer{Addr: netip.MustParseAddr("1.2.3.4"), Port: 8080}
	rs6 := config.RealServer{Addr: netip.MustParseAddr("2001:db8::4"), Port: 53}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"instance", InstanceLine("INSTANCE", "VI_1", StateMaster, 100), "INSTANCE \"VI_1\" MASTER 100\n"},
		{"group", InstanceLine("GROUP", "G1", StateStop, 0), "GROUP \"G1\" STOP 0\n"},
		{"real server up", RealServerLine(vs4, rs4, true), "RS [1.2.3.4]:tcp:8080 [192.168.201.15]:tcp:80 UP\n"},
		{"real server down ipv6 udp", RealServerLine(vs6, rs6, false), "RS [2001:db8::4]:udp:53 [2001:db8::15]:udp:53 DOWN\n"},
		{"virtual server", VirtualServerLine(vs4, false), "VS [192.168.201.15]:tcp:80 DOWN\n"},
		{"virtual server without protocol is udp", VirtualServerLine(config.VirtualServer{Addr: vs4.Addr, Port: 80}, true), "VS [192.168.201.15]:udp:80 UP\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFIFO reads, as a keepalived FIFO consumer would, the lines a Notifier writes for VRRP
// and real server transitions, and checks the FIFO it created is private and removed on Close.
func TestFIFO(t *testing.T) {
	dir := t.TempDir()
	all, lvs := filepath.Join(dir, "all.fifo"), filepath.Join(dir, "lvs.fifo")
	cfg := &config.Config{
		Global:        config.GlobalDefs{NotifyFIFO: config.NotifyFIFO{Path: all}, LVSNotifyFIFO: config.NotifyFIFO{Path: lvs}},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 150}},
	}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	for _, p := range []string{all, lvs} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeNamedPipe || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a FIFO with mode 0600", p, fi.Mode())
		}
	}
	readAll, readLVS := openReader(t, all), openReader(t, lvs)

	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: config.TCP}
	rs := config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Master})
	n.VRRP(vrrp.Event{Instance: "not configured", Prev: vrrp.Backup, State: vrrp.Master})
	n.RealServer(vs, rs, false)
	n.Quorum(vs, false)

	want := []string{`INSTANCE "VI_1" MASTER 150`, "RS [10.0.0.1]:tcp:80 [192.0.2.1]:tcp:80 DOWN", "VS [192.0.2.1]:tcp:80 DOWN"}
	if diff := cmp.Diff(want, readLines(t, readAll, len(want))); diff != "" {
		t.Errorf("notify_fifo (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:], readLines(t, readLVS, 2)); diff != "" {
		t.Errorf("lvs_notify_fifo (-want +got):\n%s", diff)
	}
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{all, lvs} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Close (err %v)", p, err)
		}
	}
}

// TestFIFONoReader checks a FIFO nobody reads never blocks the caller: lines are dropped
// once the pipe is full.
func TestFIFONoReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.fifo")
	cfg := &config.Config{Global: config.GlobalDefs{NotifyFIFO: config.NotifyFIFO{Path: path}}}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	vs := config.VirtualServer{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: config.TCP}
	rs := config.RealServer{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	start := time.Now()
	for i := range 5000 { // 5000 lines of ~45 bytes overflow a 64 KiB pipe
		n.RealServer(vs, rs, i%2 == 0)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("5000 transitions took %v with nobody reading the FIFO", d)
	}
	if n.Stats().DroppedLines == 0 {
		t.Error("no line dropped although nobody reads the FIFO")
	}
}

func TestFIFORefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"symbolic link", link, "too many levels of symbolic links"},
		{"regular file", target, "not a FIFO"},
		{"missing directory", filepath.Join(dir, "nodir", "f"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openFIFO(config.NotifyFIFO{Path: tt.path}, -1, -1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("openFIFO(%s) = %v, want an error containing %q", tt.path, err, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(target); err != nil || len(b) != 0 {
		t.Errorf("target of the link changed: %q, %v", b, err)
	}
}

func openReader(t *testing.T, path string) *bufio.Reader {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Blocking reads with a deadline through the runtime poller.
	f := os.NewFile(uintptr(fd), path)
	t.Cleanup(func() { f.Close() })
	if err := f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return bufio.NewReader(f)
}

func readLines(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var got []string
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read fifo after %q: %v", got, err)
		}
		got = append(got, strings.TrimSuffix(line, "\n"))
	}
	return got
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// newLogger logs as text to w, safely from several goroutines.
func newLogger(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestFIFOEffectivePriority(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.fifo")
	cfg := &config.Config{
		Global:        config.GlobalDefs{VRRPNotifyFIFO: config.NotifyFIFO{Path: path}},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 100}},
	}
	n := New(cfg, Options{Hostname: "lb1"})
	r := openReader(t, path)
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Initialize, State: vrrp.Backup, Priority: 100})
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Fault, Priority: 80})
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Fault, State: vrrp.Fault, Priority: 80}) // no transition
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{`INSTANCE "VI_1" BACKUP 100`, `INSTANCE "VI_1" FAULT 80`, `INSTANCE "VI_1" STOP 80`}
	if diff := cmp.Diff(want, readLines(t, r, len(want))); diff != "" {
		t.Errorf("vrrp_notify_fifo (-want +got):\n%s", diff)
	}
}

// TestUpdateMovesFIFO checks a reload that renames the FIFO removes the old one it created and
// writes to the new one.
func TestUpdateMovesFIFO(t *testing.T) {
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.fifo"), filepath.Join(dir, "new.fifo")
	cfg := &config.Config{Global: config.GlobalDefs{NotifyFIFO: config.NotifyFIFO{Path: oldPath}},
		VRRPInstances: []config.VRRPInstance{{Name: "VI_1", Priority: 100}}}
	n := New(cfg, Options{Hostname: "lb1"})
	t.Cleanup(func() { n.Close(t.Context()) })
	next := *cfg
	next.Global.NotifyFIFO.Path = newPath
	n.Update(&next)
	if _, err := os.Lstat(oldPath); !os.IsNotExist(err) {
		t.Errorf("old FIFO still there after the reload (err %v)", err)
	}
	r := openReader(t, newPath)
	n.VRRP(vrrp.Event{Instance: "VI_1", Prev: vrrp.Backup, State: vrrp.Master})
	if diff := cmp.Diff([]string{`INSTANCE "VI_1" MASTER 100`}, readLines(t, r, 1)); diff != "" {
		t.Errorf("new FIFO (-want +got):\n%s", diff)
	}
}
