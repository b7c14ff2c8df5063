package config

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/netns"
)

// diffConfigID is the config id both keepalived (-i) and Sluice use in the differential test,
// so @ID lines in the corpus select the same way.
const diffConfigID = "sluicetest"

// TestAgainstKeepalived is the differential test: for every sample keepalived ships and every
// file of the corpus in testdata/corpus, whatever `keepalived -t` accepts, Parse accepts.
// Corpus files named bad_*.conf must also be rejected by Parse (with an error, not a crash),
// and files named ok_*.conf accepted; lenient_*.conf are files keepalived -t flags (exit 5) for
// something it then corrects and runs, which Parse accepts with a warning. keepalived's verdict depends on the machine (its interface
// checks look at real interfaces), so as root it runs in a private network namespace holding
// lo, eth0 and eth1 only, the interfaces the corpus uses.
func TestAgainstKeepalived(t *testing.T) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		bin = "/usr/sbin/keepalived"
		if _, err := os.Stat(bin); err != nil {
			netns.SkipPrivileged(t, "keepalived is not installed (scripts/install-deps installs it)")
		}
	}
	files, err := filepath.Glob("testdata/corpus/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("corpus has %d files, want at least 100", len(files))
	}
	samples, _ := filepath.Glob("/usr/share/doc/keepalived/samples/keepalived.conf.*")
	if len(samples) == 0 {
		t.Logf("no keepalived samples under /usr/share/doc/keepalived/samples; corpus only")
	}
	tmp := t.TempDir()
	for _, s := range samples {
		if strings.HasSuffix(s, ".gz") {
			dst := filepath.Join(tmp, strings.TrimSuffix(filepath.Base(s), ".gz"))
			if err := gunzip(s, dst); err != nil {
				t.Fatalf("decompress %s: %v", s, err)
			}
			s = dst
		}
		files = append(files, s)
	}
	accepted := 0
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			kaOK, kaOut := keepalivedAccepts(t, bin, f)
			_, err := ParseFileWith(f, Options{ConfigID: diffConfigID})
			var list ErrorList
			if err != nil && !errors.As(err, &list) {
				t.Fatalf("Parse error %v is not an ErrorList", err)
			}
			if kaOK {
				accepted++
				if err != nil {
					t.Errorf("keepalived -t accepts %s but Parse rejects it: %v", name, err)
				}
			}
			switch {
			case strings.HasPrefix(name, "bad_") && err == nil:
				t.Errorf("Parse accepts %s, which the corpus says is broken (keepalived -t: %s)", name, kaOut)
			case strings.HasPrefix(name, "ok_") && err != nil:
				t.Errorf("Parse rejects %s: %v", name, err)
			}
		})
	}
	if accepted == 0 {
		t.Errorf("keepalived -t accepted no file at all: the harness is broken")
	}
}

// keepalivedAccepts runs `keepalived -t` on file and reports whether it exited 0, and its output.
func keepalivedAccepts(t *testing.T, bin, file string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{"-t", "-i", diffConfigID, "-f", file}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("unshare"); err == nil {
			script := `ip link set lo up && ip link add eth0 type veth peer name eth1 &&
ip link set eth0 up && ip link set eth1 up && exec "$0" "$@"`
			cmd = exec.CommandContext(ctx, "unshare", append([]string{"--net", "--", "sh", "-c", script, bin}, args...)...)
		}
	}
	if cmd == nil {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keepalived -t %s did not finish in time", file)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run keepalived: %v", err)
	}
	return err == nil, strings.TrimSpace(out.String())
}

func gunzip(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(z, MaxFileSize+1))
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
