package notify

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/test/netns"
)

const nobody = 65534

// TestCheckScript builds script paths with the owners and modes keepalived's
// enable_script_security rules look at, and checks each verdict. It needs root to give files
// away to another owner.
func TestCheckScript(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root: gives files to other owners")
	}
	tests := []struct {
		name string
		// setup makes the script's path under the (root-owned, 0755) dir and returns it.
		setup    func(t *testing.T, dir string) string
		uid, gid uint32
		want     error
	}{
		{"root script, safe path", func(t *testing.T, d string) string { return script(t, d, "ok.sh", 0o755) }, 0, 0, nil},
		{"root script, world-writable file", func(t *testing.T, d string) string { return script(t, d, "w.sh", 0o757) }, 0, 0, ErrInsecure},
		{"root script, group-writable file of a non-root group", func(t *testing.T, d string) string {
			p := script(t, d, "g.sh", 0o775)
			chown(t, p, 0, nobody)
			return p
		}, 0, 0, ErrInsecure},
		{"root script, group-writable file of root's group", func(t *testing.T, d string) string { return script(t, d, "rg.sh", 0o775) }, 0, 0, nil},
		{"root script, file owned by another user", func(t *testing.T, d string) string {
			p := script(t, d, "o.sh", 0o755)
			chown(t, p, nobody, 0)
			return p
		}, 0, 0, ErrInsecure},
		{"root script, world-writable directory", func(t *testing.T, d string) string {
			sub := mkdir(t, d, "open", 0o777)
			return script(t, sub, "s.sh", 0o755)
		}, 0, 0, ErrInsecure},
		{"root script, world-writable sticky directory", func(t *testing.T, d string) string {
			sub := mkdir(t, d, "sticky", 0o777|os.ModeSticky)
			return script(t, sub, "s.sh", 0o755)
		}, 0, 0, nil},
		{"root script, directory owned by another user", func(t *testing.T, d string) string {
			sub := mkdir(t, d, "theirs", 0o755)
			chown(t, sub, nobody, nobody)
			return script(t, sub, "s.sh", 0o755)
		}, 0, 0, ErrInsecure},
		{"root script through a link to an unsafe file", func(t *testing.T, d string) string {
			sub := mkdir(t, d, "open2", 0o777)
			target := script(t, sub, "real.sh", 0o755)
			link := filepath.Join(d, "link.sh")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, 0, 0, ErrInsecure},
		{"gid 0 alone needs protection", func(t *testing.T, d string) string { return script(t, d, "g0.sh", 0o757) }, nobody, 0, ErrInsecure},
		{"unprivileged script may live anywhere", func(t *testing.T, d string) string {
			sub := mkdir(t, d, "open3", 0o777)
			return script(t, sub, "s.sh", 0o757)
		}, nobody, nobody, nil},
		{"setuid root program run by nobody", func(t *testing.T, d string) string {
			return script(t, d, "suid.sh", 0o757|os.ModeSetuid)
		}, nobody, nobody, ErrInsecure},
		{"not executable by the user", func(t *testing.T, d string) string { return script(t, d, "x.sh", 0o750) }, nobody, nobody, ErrNotExecutable},
		{"not executable at all", func(t *testing.T, d string) string { return script(t, d, "n.sh", 0o644) }, 0, 0, ErrNotExecutable},
		{"directory, not a file", func(t *testing.T, d string) string { return mkdir(t, d, "adir", 0o755) }, 0, 0, ErrNotExecutable},
		{"missing", func(t *testing.T, d string) string { return filepath.Join(d, "missing.sh") }, 0, 0, ErrScriptNotFound},
		{"bare name found in PATH", func(*testing.T, string) string { return "true" }, 0, 0, nil},
		{"bare name not in PATH", func(*testing.T, string) string { return "sluice-no-such-script" }, 0, 0, ErrScriptNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := safeDir(t)
			p := tt.setup(t, dir)
			_, err := CheckScript(p, tt.uid, tt.gid)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CheckScript(%s, %d, %d) = %v, want %v", p, tt.uid, tt.gid, err, tt.want)
			}
		})
	}
}

// safeDir is a root-owned 0755 directory: t.TempDir under /tmp, whose sticky bit makes it safe.
func safeDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func script(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func chown(t *testing.T, p string, uid, gid int) {
	t.Helper()
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
}
