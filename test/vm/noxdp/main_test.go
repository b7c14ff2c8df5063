package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bpfProgLoad calls bpf(BPF_PROG_LOAD) with an empty attribute: the kernel refuses it with
// EINVAL (or EPERM without privilege) when bpf() is allowed at all.
func bpfProgLoad() error {
	var attr [128]byte
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		return errno
	}
	return nil
}

// TestDenyBPF runs this test binary again with the filter installed (a seccomp filter stays
// with the process for good) and checks there that bpf() fails with EPERM while other system
// calls, exec included, still work.
func TestDenyBPF(t *testing.T) {
	if os.Getenv("NOXDP_CHILD") == "1" {
		if err := denyBPF(); err != nil {
			t.Fatalf("denyBPF: %v", err)
		}
		if err := bpfProgLoad(); !errors.Is(err, unix.EPERM) {
			t.Fatalf("bpf() under the filter = %v, want EPERM", err)
		}
		if _, err := os.Getwd(); err != nil {
			t.Fatalf("getcwd under the filter: %v", err)
		}
		out, err := exec.Command(os.Args[0], "-test.run=^TestExecChild$", "-test.v").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "bpf denied after exec") {
			t.Fatalf("exec under the filter: %v\n%s", err, out)
		}
		return
	}
	if os.Geteuid() == 0 {
		// As root, bpf() with a zeroed attribute fails with EINVAL, not EPERM: the filter,
		// not privilege, makes the difference.
		if err := bpfProgLoad(); errors.Is(err, unix.EPERM) {
			t.Fatalf("bpf() without the filter = %v, want another error than EPERM", err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDenyBPF$", "-test.v")
	cmd.Env = append(os.Environ(), "NOXDP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDenyBPF") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestExecChild is what the filtered child execs: it reports whether bpf() is still denied.
func TestExecChild(t *testing.T) {
	if os.Getenv("NOXDP_CHILD") != "1" {
		t.Skip("runs only as TestDenyBPF's child")
	}
	if err := bpfProgLoad(); errors.Is(err, unix.EPERM) {
		t.Log("bpf denied after exec")
		return
	}
	t.Fatal("bpf() allowed after exec")
}

func TestFilterShape(t *testing.T) {
	f := filter()
	if len(f) == 0 || f[len(f)-1].K != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("filter must end by allowing what it does not deny: %+v", f)
	}
}
