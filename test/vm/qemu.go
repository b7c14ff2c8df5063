package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Guest is what the VM runs: the kernel, the modules it loads at boot, and one static Go test
// binary whose go test -v output comes back over the serial console.
type Guest struct {
	Kernel Kernel
	// Modules are loaded at boot, with their dependencies, in a working order.
	Modules []string
	// TestBinary is a host path to a static (CGO_ENABLED=0) go test binary; the guest runs it
	// with TestArgs and the environment variable SLUICE_VM_GUEST=1.
	TestBinary string
	TestArgs   []string
	// Files are static host files to copy, by guest path (such as /usr/local/bin/sluice).
	Files map[string]string
	// Programs are dynamically linked host programs to copy with their shared libraries, by
	// guest path.
	Programs map[string]string
}

// Console markers the init script prints.
const (
	markBooted  = "SLUICE-VM-BOOTED"
	markInsmod  = "SLUICE-VM-INSMOD-FAILED"
	markExit    = "SLUICE-VM-EXIT"
	guestBinDir = "/usr/local/bin"
)

// BuildImage assembles the initramfs for g.
func BuildImage(g Guest) (*Image, error) {
	mods, err := ModuleOrder(g.Kernel.Modules, g.Modules...)
	if err != nil {
		return nil, err
	}
	im := &Image{}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc", "sbin", "usr/bin", "usr/sbin"} {
		if err := im.Dir(d); err != nil {
			return nil, err
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox (Debian package busybox-static): %w", err)
	}
	if err := im.Program("bin/busybox", busybox); err != nil {
		return nil, err
	}
	if err := im.Bytes("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n")); err != nil {
		return nil, err
	}
	for dst, src := range g.Programs {
		if err := im.Program(dst, src); err != nil {
			return nil, err
		}
	}
	for dst, src := range g.Files {
		if err := im.File(dst, 0o755, src); err != nil {
			return nil, err
		}
	}
	if err := im.File(guestBinDir+"/guest.test", 0o755, g.TestBinary); err != nil {
		return nil, err
	}
	var insmod []string
	for _, m := range mods {
		rel, err := filepath.Rel(g.Kernel.Modules, m.Path)
		if err != nil {
			return nil, err
		}
		dst := "/lib/modules/" + g.Kernel.Release + "/" + filepath.ToSlash(rel)
		if err := im.File(dst, 0o644, m.Path); err != nil {
			return nil, err
		}
		insmod = append(insmod, dst)
	}
	if err := im.Bytes("init", 0o755, []byte(initScript(insmod, g.TestArgs))); err != nil {
		return nil, err
	}
	return im, nil
}

// initScript mounts the pseudo file systems, loads the modules, runs the test binary and
// powers off; every step's outcome is printed on the console for the host to read.
func initScript(insmod, testArgs []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=` + guestBinDir + `:/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
export HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mkdir -p /run/netns /var
ln -s /run /var/run
ip link set lo up
echo "` + markBooted + ` $(uname -r)"
`)
	for _, m := range insmod {
		fmt.Fprintf(&b, "insmod %s || echo \"%s %s\"\n", m, markInsmod, m)
	}
	b.WriteString("cd /tmp\nSLUICE_VM_GUEST=1 guest.test -test.v")
	for _, a := range testArgs {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(" 2>&1\necho \"" + markExit + " $?\"\npoweroff -f\n")
	return b.String()
}

// BootConfig is how qemu boots the image.
type BootConfig struct {
	Vmlinuz  string
	Initrd   string
	MemoryMB int
	CPUs     int
}

// Result is what the guest reported.
type Result struct {
	// Release is the guest's kernel release, once it booted.
	Release string
	// Tests are the guest's top-level tests in the order they finished.
	Tests []TestResult
	// InsmodFailed lists modules that did not load.
	InsmodFailed []string
	// Exited is true when the test binary finished; Exit is its exit status.
	Exited bool
	Exit   int
}

// TestResult is one top-level go test result from the guest.
type TestResult struct {
	Name   string
	Status string // PASS, FAIL or SKIP
	// Output is what the test printed between its RUN and result lines.
	Output []string
}

var (
	runRE    = regexp.MustCompile(`^=== RUN\s+(\S+)$`)
	resultRE = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(`)
)

// maxConsole bounds what is read from the guest.
const maxConsole = 64 << 20

// Boot runs qemu until the guest powers off or ctx ends, copying the console to log, and
// returns what the guest reported. The error is non-nil when qemu failed or the guest did not
// finish; test failures are in the Result.
func Boot(ctx context.Context, c BootConfig, log io.Writer) (Result, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return Result{}, fmt.Errorf("qemu (Debian package qemu-system-x86): %w", err)
	}
	args := []string{
		"-kernel", c.Vmlinuz, "-initrd", c.Initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
		"-m", strconv.Itoa(max(c.MemoryMB, 256)), "-smp", strconv.Itoa(max(c.CPUs, 1)),
		"-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
	}
	if _, err := os.Stat("/dev/kvm"); err == nil {
		args = append(args, "-enable-kvm", "-cpu", "host")
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start qemu: %w", err)
	}
	res := parseConsole(io.TeeReader(io.LimitReader(out, maxConsole), log))
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("VM did not finish: %w", context.Cause(ctx))
	case werr != nil:
		return res, fmt.Errorf("qemu: %w", werr)
	case res.Release == "":
		return res, errors.New("VM powered off before its init ran")
	case !res.Exited:
		return res, errors.New("VM powered off before the guest tests finished")
	}
	return res, nil
}

// parseConsole reads go test -v output and the init script's markers from the console.
func parseConsole(r io.Reader) Result {
	var res Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur string
	var buf []string
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		// Kernel messages and init output may share a console line with escape codes.
		if i := strings.Index(line, "SLUICE-VM-"); i > 0 {
			line = line[i:]
		}
		switch {
		case strings.HasPrefix(line, markBooted+" "):
			res.Release = strings.TrimSpace(strings.TrimPrefix(line, markBooted))
		case strings.HasPrefix(line, markInsmod+" "):
			res.InsmodFailed = append(res.InsmodFailed, strings.TrimSpace(strings.TrimPrefix(line, markInsmod)))
		case strings.HasPrefix(line, markExit+" "):
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, markExit)))
			if err == nil {
				res.Exited, res.Exit = true, n
			}
		}
		if m := runRE.FindStringSubmatch(line); m != nil && !strings.Contains(m[1], "/") {
			cur, buf = m[1], nil
			continue
		}
		if m := resultRE.FindStringSubmatch(line); m != nil {
			res.Tests = append(res.Tests, TestResult{Name: m[2], Status: m[1], Output: buf})
			cur, buf = "", nil
			continue
		}
		if cur != "" && len(buf) < 2000 {
			buf = append(buf, line)
		}
	}
	return res
}
