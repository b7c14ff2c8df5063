package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	harness "github.com/sluice-lb/sluice/test/netns"
)

// requireBPF skips when the test cannot load BPF programs: not root, or a kernel without XDP.
// As root on a kernel with XDP, failures to load are failures, not skips.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		harness.SkipPrivileged(t, "needs root to load BPF programs")
	}
	if err := features.HaveProgramType(ebpf.XDP); errors.Is(err, ebpf.ErrNotSupported) {
		harness.SkipPrivileged(t, fmt.Sprintf("kernel lacks XDP: %v", err))
	}
}

// fakeResolver answers from fixed tables. Program.Run has no real interfaces behind it, and
// which MAC goes where is exactly what the golden tests check, so the answers must be fixed;
// NetlinkResolver is tested on real veths in resolve_test.go.
type fakeResolver struct {
	mu   sync.Mutex
	vips map[netip.Addr]int
	hops map[netip.Addr]NextHop
	errs map[netip.Addr]error
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{vips: map[netip.Addr]int{}, hops: map[netip.Addr]NextHop{}, errs: map[netip.Addr]error{}}
}

func (f *fakeResolver) VIPInterface(vip netip.Addr) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.vips[vip]; ok {
		return i, fmt.Sprintf("fake%d", i), nil
	}
	return 0, "", ErrNoVIPInterface
}

func (f *fakeResolver) NextHop(_ context.Context, addr netip.Addr) (NextHop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[addr]; err != nil {
		return NextHop{}, err
	}
	if h, ok := f.hops[addr]; ok {
		return h, nil
	}
	return NextHop{}, fmt.Errorf("fake: no next hop for %s", addr)
}

func (f *fakeResolver) set(addr netip.Addr, h NextHop) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hops[addr] = h
	delete(f.errs, addr)
}

func (f *fakeResolver) fail(addr netip.Addr, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[addr] = err
}

// newTestLoader loads the program with maps only, closing it when the test ends.
func newTestLoader(t testing.TB, res Resolver) *Loader {
	t.Helper()
	requireBPF(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	l, err := New(Options{Logger: log, Resolver: res, NoAttach: true, FlowTableSize: 4096})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// pinCPU keeps the test goroutine on one CPU until the test ends, so per-CPU round-robin
// cursors are deterministic. It picks the first CPU the test may run on, which in a container
// need not be CPU 0.
func pinCPU(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatalf("get CPU affinity: %v", err)
	}
	cpu := 0
	for !allowed.IsSet(cpu) {
		cpu++
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatalf("pin to CPU %d: %v", cpu, err)
	}
	// Unlocking would hand a pinned thread back to the scheduler: let it exit with the test.
}

// xdpMD is struct xdp_md, the context of an XDP program run.
type xdpMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// run runs the program on a copy of in arriving on ingress and returns the verdict and frame.
func run(t testing.TB, prog *ebpf.Program, in []byte, ingress uint32) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{
		Data:    append([]byte(nil), in...),
		DataOut: out,
		Context: xdpMD{DataEnd: uint32(len(in)), IngressIfindex: ingress},
	}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("run program: %v", err)
	}
	return ret, opts.DataOut
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
