// Command noxdp runs a program with the bpf(2) system call denied: it installs a seccomp filter
// that makes every bpf() call fail with EPERM, as on a host where the daemon has no privilege
// for BPF, and execs the program. test/vm uses it to check that `sluice run --dataplane auto`
// falls back to kernel IPVS when XDP cannot be loaded.
//
//	noxdp PROGRAM [ARG...]
//
// It runs on linux/amd64 only; the filter kills a process that makes a system call under
// another architecture's convention, so a 32-bit bpf() cannot slip past it.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: noxdp PROGRAM [ARG...]")
		os.Exit(2)
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "noxdp: %v\n", err)
		os.Exit(127)
	}
	runtime.LockOSThread()
	if err := denyBPF(); err != nil {
		fmt.Fprintf(os.Stderr, "noxdp: %v\n", err)
		os.Exit(1)
	}
	err = syscall.Exec(path, os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "noxdp: exec %s: %v\n", path, err)
	os.Exit(126)
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
)

// filter is the classic BPF program: kill on a foreign architecture, EPERM for bpf(), allow
// everything else.
func filter() []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_BPF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
}

// denyBPF installs the filter on every thread of the process (TSYNC); exec keeps it.
func denyBPF() error {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return fmt.Errorf("runs on linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	f := filter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if errno != 0 {
		return fmt.Errorf("installing the seccomp filter: %w", errno)
	}
	return nil
}
