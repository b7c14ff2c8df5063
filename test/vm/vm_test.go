package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/bench"
	"github.com/sluice-lb/sluice/test/netns"
)

// guestTests are the tests the guest must run and pass; a guest test missing from the console
// output fails the host test, so a guest that silently runs fewer tests cannot pass.
var guestTests = []string{
	"TestXDPLoadsOnStockKernel",
	"TestKernelApply",
	"TestKernelSchedulers",
	"TestNewInRootNamespace",
	"TestSluiceDirectRouting",
	"TestSluiceNAT",
	"TestSluiceTunnel",
	"TestSluiceAutoFallback",
	"TestSluiceAutoPerInterface",
	"TestSluiceVRRPOwnership",
	"TestKernelSchedulerFlags",
	"TestConformance",
	"TestKernelFWMarkAndSCTP",
	"TestBenchBaselines",
}

// Bounds of the whole VM test: building, booting and running the guest.
const (
	vmTimeout   = 6 * time.Minute
	buildTimout = 3 * time.Minute
)

// cacheDir is where the Debian kernel is kept between runs: $SLUICE_VM_CACHE, else .cache/vm
// at the repository root (ignored by git).
func cacheDir() string {
	if d := os.Getenv("SLUICE_VM_CACHE"); d != "" {
		return d
	}
	return filepath.Join("..", "..", ".cache", "vm")
}

// goBuild builds a static binary for the guest.
func goBuild(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestIPVSInVM boots Debian's stock kernel under qemu, loads ip_vs and its schedulers, and
// runs the guest tests (test/vm/guest) there: ipvsfallback against the real kernel,
// `sluice run --dataplane ipvs` forwarding HTTP between namespaces with DR, NAT and TUN, the
// automatic fallback under test/vm/noxdp (bpf() denied), VRRP ownership of the IPVS services,
// the conformance suite (test/conformance) and a smoke-sized `sluice bench` with the IPVS
// baseline and the pktgen generator. The console is logged when anything fails;
// SLUICE_VM_CONSOLE=FILE also writes it to FILE. SLUICE_VM_RUN=REGEXP runs only the guest
// tests it matches (as go test -run), to iterate on one.
func TestIPVSInVM(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: resolves and fetches Debian's kernel with apt (scripts/install-deps ipvs installs qemu)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout+buildTimout)
	defer cancel()
	args := []string{"-test.timeout=" + (vmTimeout - 30*time.Second).String(), "-test.count=1"}
	only := regexp.MustCompile("")
	if run := os.Getenv("SLUICE_VM_RUN"); run != "" {
		var err error
		if only, err = regexp.Compile(run); err != nil {
			t.Fatalf("SLUICE_VM_RUN: %v", err)
		}
		args = append(args, "-test.run="+run)
	}
	res, console := runGuest(ctx, t, vmTimeout, 512, args)
	got := map[string]TestResult{}
	for _, r := range res.Tests {
		got[r.Name] = r
	}
	for _, name := range guestTests {
		if !only.MatchString(name) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			r, ok := got[name]
			switch {
			case !ok:
				t.Errorf("the guest did not run %s", name)
			case r.Status != "PASS":
				t.Errorf("%s in the VM (kernel %s):\n%s", r.Status, res.Release, strings.Join(r.Output, "\n"))
			}
		})
	}
	if res.Exit != 0 {
		t.Logf("VM console:\n%s", console)
		t.Errorf("guest test binary exited with status %d", res.Exit)
	}
}

// runGuest builds the guest (the test/vm/guest test binary run with testArgs, sluice, noxdp,
// ip, ethtool, nft when installed, and the modules the tests need), boots it with memMB of
// memory for at most bound, and returns what it reported and its console. It fails t when the
// guest could not be built or booted or did not finish.
func runGuest(ctx context.Context, t *testing.T, bound time.Duration, memMB int, testArgs []string) (Result, string) {
	t.Helper()
	kernel, err := FetchDebianKernel(ctx, cacheDir())
	if err != nil {
		t.Fatalf("fetch Debian kernel: %v", err)
	}
	t.Logf("kernel %s (%s)", kernel.Release, kernel.Package)

	dir := t.TempDir()
	guest, sluice, noxdp := filepath.Join(dir, "guest.test"), filepath.Join(dir, "sluice"), filepath.Join(dir, "noxdp")
	goBuild(ctx, t, "test", "-c", "-o", guest, "github.com/sluice-lb/sluice/test/vm/guest")
	goBuild(ctx, t, "build", "-o", sluice, "github.com/sluice-lb/sluice/cmd/sluice")
	goBuild(ctx, t, "build", "-o", noxdp, "github.com/sluice-lb/sluice/test/vm/noxdp")

	programs := map[string]string{}
	for _, p := range []string{"ip", "ethtool"} {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("%s (scripts/install-deps run installs it): %v", p, err)
		}
		programs["/usr/local/bin/"+p] = path
	}
	// crc32c_generic: libcrc32c (needed by nf_conntrack) asks the crypto API for crc32c at load,
	// which only a modprobe-capable system would load on demand. xfrm_user and nfnetlink: the
	// netlink library the namespace harness uses opens sockets of those protocols.
	// ipip: the real servers of the TUN test unwrap IPIP on tunl0; ip6_tunnel: the conformance
	// suite's TUN bed (test/lab.BuildTUN) gives them kernel ipip and ip6tnl endpoints.
	// pktgen: sluice bench's alternative generator (TestBenchBaselines).
	mods := []string{"crc32c_generic", "xfrm_user", "nfnetlink", "ip_vs", "veth", "bridge", "ipip", "ip6_tunnel", "pktgen"}
	// nft and the modules of its rules: sluice bench's nftables baseline (DNAT) and the
	// IPVS baseline's notrack rule.
	if path, err := exec.LookPath("nft"); err == nil {
		programs["/usr/local/bin/nft"] = path
		mods = append(mods, "nf_tables", "nft_chain_nat", "nft_nat", "nft_numgen", "nft_ct")
	}
	for _, s := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"} {
		if _, err := os.Stat(filepath.Join(kernel.Modules, "kernel/net/netfilter/ipvs/ip_vs_"+s+".ko")); err == nil {
			mods = append(mods, "ip_vs_"+s)
		}
	}
	im, err := BuildImage(Guest{
		Kernel:     kernel,
		Modules:    mods,
		TestBinary: guest,
		TestArgs:   testArgs,
		Files:      map[string]string{"/usr/local/bin/sluice": sluice, "/usr/local/bin/noxdp": noxdp},
		Programs:   programs,
	})
	if err != nil {
		t.Fatalf("build initramfs: %v", err)
	}
	initrd := filepath.Join(dir, "initrd")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.WriteTo(f); err != nil {
		f.Close()
		t.Fatalf("write initramfs: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	var console bytes.Buffer
	var log io.Writer = &console
	if path := os.Getenv("SLUICE_VM_CONSOLE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		log = io.MultiWriter(&console, f)
	}
	bootCtx, bootCancel := context.WithTimeout(ctx, bound)
	defer bootCancel()
	start := time.Now()
	res, err := Boot(bootCtx, BootConfig{Vmlinuz: kernel.Vmlinuz, Initrd: initrd, MemoryMB: memMB, CPUs: 2}, log)
	t.Logf("VM ran %v", time.Since(start).Round(time.Second))
	if err != nil || !res.Exited || len(res.InsmodFailed) > 0 {
		t.Logf("VM console:\n%s", console.String())
	}
	if err != nil {
		t.Fatalf("boot VM: %v", err)
	}
	if len(res.InsmodFailed) > 0 {
		t.Errorf("modules that did not load: %v", res.InsmodFailed)
	}
	return res, console.String()
}

// benchBound bounds TestBenchInVM's VM: sluice bench --quick under software emulation.
const benchBound = 30 * time.Minute

// TestBenchInVM runs `sluice bench --quick --json --throughput-only --generator pktgen` in the
// VM, whose kernel has IPVS and pktgen, and logs its table (make bench-vm). It runs only with
// SLUICE_VM_BENCH=1: it takes many minutes and measures, never asserts a rate.
func TestBenchInVM(t *testing.T) {
	if os.Getenv("SLUICE_VM_BENCH") != "1" {
		t.Skip("only with SLUICE_VM_BENCH=1 (make bench-vm)")
	}
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: resolves and fetches Debian's kernel with apt")
	}
	ctx, cancel := context.WithTimeout(context.Background(), benchBound+buildTimout)
	defer cancel()
	res, console := runGuest(ctx, t, benchBound, 1024,
		[]string{"-test.run=^TestBenchQuick$", "-bench-quick", "-test.timeout=" + (benchBound - time.Minute).String()})
	results, err := benchJSON(console)
	if err != nil || res.Exit != 0 {
		t.Fatalf("guest exit status %d, bench output: %v\nVM console:\n%s", res.Exit, err, console)
	}
	var table bytes.Buffer
	if err := bench.WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("sluice bench --quick in the VM (kernel %s). The VM runs under software emulation (no KVM here): "+
		"its absolute rates are far below the host's, and only the ratios within a row (forwarders taking turns "+
		"in the same run) mean anything.\n%s", res.Release, table.String())
	if path := os.Getenv("SLUICE_VM_BENCH_JSON"); path != "" {
		var js bytes.Buffer
		if err := bench.WriteJSON(&js, results); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, js.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// benchJSON reads the results the guest's TestBenchQuick printed on the console between its
// markers.
func benchJSON(console string) ([]bench.Result, error) {
	const begin, end = "SLUICE-BENCH-JSON-BEGIN\n", "SLUICE-BENCH-JSON-END"
	console = strings.ReplaceAll(console, "\r", "")
	i := strings.Index(console, begin)
	if i < 0 {
		return nil, errors.New("no " + strings.TrimSpace(begin) + " marker")
	}
	body := console[i+len(begin):]
	j := strings.Index(body, end)
	if j < 0 {
		return nil, errors.New("no " + end + " marker")
	}
	var results []bench.Result
	if err := json.Unmarshal([]byte(body[:j]), &results); err != nil {
		return nil, fmt.Errorf("decode bench JSON: %w", err)
	}
	return results, nil
}
