package main

import (
	"bytes"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignumMatchesKeepalived(t *testing.T) {
	// keepalived 2.2.7 --signum on Linux x86-64: STOP 15, RELOAD 1, DATA 10, STATS 12, JSON 36.
	for name, want := range map[string]string{"STOP": "15", "RELOAD": "1", "DATA": "10", "STATS": "12", "JSON": "36", "json": "36"} {
		var out, errb bytes.Buffer
		if code := realMain([]string{"--signum=" + name}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != want {
			t.Errorf("--signum=%s: exit %d, %q; want %s", name, code, out.String(), want)
		}
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"--signum=NOPE"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "unknown signal function") {
		t.Errorf("--signum=NOPE: exit %d, stderr %q", code, errb.String())
	}
}

func TestLogFormatValidated(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"run", "-l", "--log-format", "xml", "-f", writeConf(t, validConf)}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), `--log-format "xml"`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestSyslogPriorities sends records through the handler to a real datagram socket speaking
// the syslog protocol and checks each level arrives at its syslog priority.
func TestSyslogPriorities(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := syslog.Dial("unixgram", path, syslog.LOG_DAEMON|syslog.LOG_INFO, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	log := slog.New(&syslogHandler{w: w, opts: opts, mk: func(w2 io.Writer) slog.Handler {
		return slog.NewJSONHandler(w2, opts)
	}}).With("vip", "10.0.0.1")

	// LOG_DAEMON is facility 3: priority = 3*8 + severity.
	for _, tc := range []struct {
		log  func(string, ...any)
		want string
	}{
		{log.Error, "<27>"}, {log.Warn, "<28>"}, {log.Info, "<30>"}, {log.Debug, "<31>"},
	} {
		tc.log("hello", "n", 1)
		buf := make([]byte, 2048)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, tc.want) || !strings.Contains(msg, `"msg":"hello"`) || !strings.Contains(msg, `"vip":"10.0.0.1"`) {
			t.Errorf("syslog message %q, want priority %s and the JSON record", msg, tc.want)
		}
	}
}

func TestPidFileReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := filepath.Join(dir, "sluice.pid")
	if err := os.Symlink(victim, pid); err != nil {
		t.Fatal(err)
	}
	remove, err := writePidFile(pid)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	fi, err := os.Lstat(pid)
	if err != nil || fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("pid file %v, mode %v", err, fi.Mode())
	}
	if b, _ := os.ReadFile(pid); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file holds %q", b)
	}
	remove()
	if _, err := os.Lstat(pid); !os.IsNotExist(err) {
		t.Errorf("pid file not removed: %v", err)
	}
}
