package vm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/test/netns"
)

// The archive must be one another cpio implementation extracts as written: busybox's, the
// same family as the kernel's initramfs unpacker.
func TestImageExtracts(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		netns.SkipPrivileged(t, "busybox not installed (scripts/install-deps ipvs installs it)")
	}
	src := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(src, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	im := &Image{}
	for _, step := range []error{
		im.Dir("run"),
		im.Bytes("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n")),
		im.Bytes("/init", 0o755, []byte("#!/bin/sh\n")),
		im.Bytes("empty", 0o600, nil),
		im.File("usr/local/bin/tool", 0o755, src),
		im.Symlink("bin/sh", "busybox"),
		im.Dir("etc"), // directories may be added again
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if err := im.Bytes("etc/hosts", 0o644, nil); err == nil {
		t.Error("adding etc/hosts twice succeeded")
	}
	var archive bytes.Buffer
	if _, err := im.WriteTo(&archive); err != nil {
		t.Fatal(err)
	}
	if archive.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", archive.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command(busybox, "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = dir, &archive
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v: %s", err, out)
	}
	files := map[string]string{
		"etc/hosts":          "127.0.0.1 localhost\n",
		"init":               "#!/bin/sh\n",
		"empty":              "",
		"usr/local/bin/tool": "from the host\n",
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init: mode %v, %v; want 0755", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "run")); err != nil || !fi.IsDir() {
		t.Errorf("run is not a directory: %v", err)
	}
}

func TestParseConsole(t *testing.T) {
	console := strings.Join([]string{
		"\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16.2)",
		"\x1b[2JSLUICE-VM-BOOTED 6.1.0-56-amd64",
		"SLUICE-VM-INSMOD-FAILED /lib/modules/x/veth.ko",
		"=== RUN   TestA",
		"    a_test.go:1: hello",
		"=== RUN   TestA/sub",
		"    --- PASS: TestA/sub (0.00s)",
		"--- PASS: TestA (0.01s)",
		"=== RUN   TestB",
		"    b_test.go:9: broken\r",
		"--- FAIL: TestB (1.00s)",
		"=== RUN   TestC",
		"--- SKIP: TestC (0.00s)",
		"FAIL",
		"[    9.1] random kernel line SLUICE-VM-EXIT 1",
	}, "\n")
	got := parseConsole(strings.NewReader(console))
	want := Result{
		Release:      "6.1.0-56-amd64",
		InsmodFailed: []string{"/lib/modules/x/veth.ko"},
		Tests: []TestResult{
			{Name: "TestA", Status: "PASS", Output: []string{"    a_test.go:1: hello", "=== RUN   TestA/sub", "    --- PASS: TestA/sub (0.00s)"}},
			{Name: "TestB", Status: "FAIL", Output: []string{"    b_test.go:9: broken"}},
			{Name: "TestC", Status: "SKIP"},
		},
		Exited: true,
		Exit:   1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseConsole (-want +got):\n%s", diff)
	}
}

func TestKept(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"./boot/vmlinuz-6.1.0-56-amd64", true},
		{"./boot/System.map-6.1.0-56-amd64", false},
		{"./lib/modules/6.1.0-56-amd64/kernel/net/netfilter/ipvs/ip_vs.ko", true},
		{"./lib/modules/6.1.0-56-amd64/kernel/lib/libcrc32c.ko", true},
		{"./lib/modules/6.1.0-56-amd64/kernel/crypto/crc32c_generic.ko", true},
		{"./lib/modules/6.1.0-56-amd64/kernel/drivers/net/veth.ko", true},
		{"./lib/modules/6.1.0-56-amd64/kernel/drivers/gpu/drm/i915/i915.ko", false},
		{"./lib/modules/6.1.0-56-amd64/modules.builtin", false},
		{"./lib/modules/../../../etc/kernel/net/x.ko", false},
		{"./usr/share/doc/linux-image/changelog.gz", false},
	}
	for _, tt := range tests {
		if got := kept(tt.path); got != tt.want {
			t.Errorf("kept(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestInitScriptQuotesArguments(t *testing.T) {
	s := initScript([]string{"/lib/modules/r/a.ko"}, []string{"-test.run=Test'X", "-test.v"})
	for _, want := range []string{
		"insmod /lib/modules/r/a.ko || echo \"SLUICE-VM-INSMOD-FAILED /lib/modules/r/a.ko\"",
		`guest.test -test.v '-test.run=Test'\''X' '-test.v' 2>&1`,
		`echo "SLUICE-VM-EXIT $?"`,
		"poweroff -f",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
}
