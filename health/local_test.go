package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/test/netns"
)

// script writes an executable shell script in a directory every user can read, so that it
// also runs as an unprivileged script user.
func script(t *testing.T, body string) string {
	t.Helper()
	dir := sharedTempDir(t)
	p := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// sharedTempDir returns a new temporary directory that every user may write to (its parent,
// the test's own temporary directory, is made searchable).
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSplitMiscPath(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"/bin/check", []string{"/bin/check"}},
		{"  /bin/check -p 80\t-v ", []string{"/bin/check", "-p", "80", "-v"}},
		{`/bin/check "a b" 'c d' e\ f`, []string{"/bin/check", "a b", "c d", "e f"}},
		{`/bin/check "" 'x\y' "q\"r"`, []string{"/bin/check", "", `x\y`, `q"r`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitMiscPath(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SplitMiscPath (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"", "   ", `/bin/x "open`, `/bin/x \`} {
		if _, err := SplitMiscPath(bad); err == nil {
			t.Errorf("SplitMiscPath(%q) succeeded", bad)
		}
	}
}

func TestMiscCheck(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		args      string
		dynamic   bool
		weight    int
		wantDelta int
		wantErr   error
	}{
		{name: "exit 0 passes", body: "exit 0"},
		{name: "exit 1 fails", body: "exit 1", wantErr: ErrMiscExit},
		{name: "exit 3 fails without misc_dynamic", body: "exit 3", wantErr: ErrMiscExit},
		{name: "misc_dynamic exit 12 sets weight 10", body: "exit 12", dynamic: true, weight: 4, wantDelta: 6},
		{name: "misc_dynamic exit 255 sets weight 253", body: "exit 255", dynamic: true, weight: 1, wantDelta: 252},
		{name: "misc_dynamic exit 0 keeps the weight", body: "exit 0", dynamic: true, weight: 4},
		{name: "misc_dynamic exit 1 fails", body: "exit 1", dynamic: true, wantErr: ErrMiscExit},
		{name: "arguments without a shell", body: `[ "$#" = 2 ] && [ "$1" = 'a b;$(x)' ] && [ "$2" = c ]`, args: `"a b;$(x)" c`},
		{name: "killed by a signal", body: "kill -9 $$", wantErr: ErrMiscExit},
		{name: "no environment leaks", body: `[ -z "$HOME$SLUICE_SECRET" ]`},
	}
	t.Setenv("SLUICE_SECRET", "x")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := script(t, tt.body)
			args, err := SplitMiscPath(path + " " + tt.args)
			if err != nil {
				t.Fatal(err)
			}
			c := MiscCheck{Path: args, Timeout: 5 * time.Second, Dynamic: tt.dynamic, Weight: tt.weight}
			delta, err := c.CheckWeight(context.Background())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("CheckWeight = %v, want %v", err, tt.wantErr)
			}
			if delta != tt.wantDelta {
				t.Errorf("delta = %d, want %d", delta, tt.wantDelta)
			}
		})
	}
	t.Run("missing program", func(t *testing.T) {
		if err := (MiscCheck{Path: []string{"/nonexistent/check"}}).Check(context.Background()); err == nil {
			t.Fatal("Check passed")
		}
	})
}

// TestMiscCheckTimeoutKillsGroup runs a script that starts a background child and hangs: the
// check must fail at its timeout and kill the child too.
func TestMiscCheckTimeoutKillsGroup(t *testing.T) {
	dir := sharedTempDir(t)
	pidFile := filepath.Join(dir, "child.pid")
	path := script(t, fmt.Sprintf("sleep 60 &\necho $! > %s\nsleep 60", pidFile))
	c := MiscCheck{Path: []string{path}, Timeout: 500 * time.Millisecond}
	start := time.Now()
	err := c.Check(context.Background())
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Check took %v with a timeout of 500ms", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check = %v, want %v", err, context.DeadlineExceeded)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		// A killed child of the script is a zombie until init reaps it; check its state.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the script's child %d outlived the check", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMiscCheckOutputBounded(t *testing.T) {
	path := script(t, "head -c 1000000 /dev/zero | tr '\\0' x\nexit 1")
	err := MiscCheck{Path: []string{path}, Timeout: 5 * time.Second}.Check(context.Background())
	if !errors.Is(err, ErrMiscExit) {
		t.Fatalf("Check = %v, want %v", err, ErrMiscExit)
	}
	if len(err.Error()) > maxMiscOutput+1024 {
		t.Errorf("error of %d bytes: the output is not bounded", len(err.Error()))
	}
}

func TestMiscCheckUser(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.SkipPrivileged(t, "needs root to run scripts as another user")
	}
	var want string
	for _, name := range DefaultScriptUsers {
		if _, err := user.Lookup(name); err == nil {
			want = name
			break
		}
	}
	if want == "" {
		t.Skip("neither keepalived_script nor nobody exists")
	}
	tests := []struct{ user, want string }{
		{"", want},
		{"root", "root"},
	}
	for _, tt := range tests {
		t.Run("user "+tt.user, func(t *testing.T) {
			path := script(t, fmt.Sprintf(`[ "$(id -un)" = %q ] || { id -un; exit 1; }`, tt.want))
			if err := (MiscCheck{Path: []string{path}, User: tt.user, Timeout: 5 * time.Second}).Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}
	if err := (MiscCheck{Path: []string{"/bin/true"}, User: "no-such-user-sluice"}).Check(context.Background()); err == nil {
		t.Error("Check as a missing user passed")
	}
}

func TestFileCheck(t *testing.T) {
	tests := []struct {
		name      string
		content   string // "-": no file
		weight    int
		reverse   bool
		wantDelta int
		wantErr   bool
	}{
		{name: "weight 0, value 0 passes", content: "0\n"},
		{name: "weight 0, non-zero value fails", content: "3", wantErr: true},
		{name: "multiplied", content: " 5 \n", weight: 3, wantDelta: 15},
		{name: "negative value", content: "-4", weight: 2, wantDelta: -8},
		{name: "reverse", content: "5", weight: 3, reverse: true, wantDelta: -15},
		{name: "not a number", content: "five", weight: 1, wantErr: true},
		{name: "empty", content: "", weight: 1, wantErr: true},
		{name: "too long", content: strings.Repeat("1", 100), weight: 1, wantErr: true},
		{name: "overflow", content: "2147483647", weight: 2, wantErr: true},
		{name: "missing file", content: "-", weight: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "weight")
			if tt.content != "-" {
				if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			delta, err := FileCheck{Path: p, Weight: tt.weight, Reverse: tt.reverse}.CheckWeight(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckWeight = %d, %v; want error %v", delta, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrTrackFile) {
				t.Errorf("error %v is not ErrTrackFile", err)
			}
			if delta != tt.wantDelta {
				t.Errorf("delta = %d, want %d", delta, tt.wantDelta)
			}
		})
	}
}

func TestPingCheck(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "::1"} {
		t.Run(a, func(t *testing.T) {
			err := PingCheck{Addr: netip.MustParseAddr(a), Timeout: 2 * time.Second}.Check(context.Background())
			if err != nil {
				netns.SkipPrivileged(t, fmt.Sprintf("cannot ping %s here: %v", a, err))
			}
		})
	}
}

// TestPingCheckNetns pings inside a namespace: with unprivileged and with raw ICMP sockets, and
// a host that ignores echo requests.
func TestPingCheckNetns(t *testing.T) {
	env := netns.ForTest(t)
	tests := []struct {
		name       string
		groupRange string // net.ipv4.ping_group_range; "1 0" allows no one, forcing a raw socket
		ignore     string // net.ipv4.icmp_echo_ignore_all
		wantErr    error
	}{
		{name: "unprivileged socket", groupRange: "0 2147483647", ignore: "0"},
		{name: "raw socket", groupRange: "1 0", ignore: "0"},
		{name: "no reply", groupRange: "0 2147483647", ignore: "1", wantErr: context.DeadlineExceeded},
		{name: "no reply on a raw socket", groupRange: "1 0", ignore: "1", wantErr: context.DeadlineExceeded},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := env.NewNS(fmt.Sprintf("p%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if err := ns.Sysctl("net.ipv4.ping_group_range", tt.groupRange); err != nil {
				t.Fatal(err)
			}
			if err := ns.Sysctl("net.ipv4.icmp_echo_ignore_all", tt.ignore); err != nil {
				t.Fatal(err)
			}
			const timeout = 300 * time.Millisecond
			var checkErr error
			start := time.Now()
			if err := ns.Do(func() error {
				checkErr = PingCheck{Addr: netip.MustParseAddr("127.0.0.1"), Timeout: timeout}.Check(context.Background())
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > timeout+time.Second {
				t.Errorf("Check took %v", time.Since(start))
			}
			if !errors.Is(checkErr, tt.wantErr) || (tt.wantErr == nil && checkErr != nil) {
				t.Fatalf("Check = %v, want %v", checkErr, tt.wantErr)
			}
		})
	}
}
