package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// keptConn is one long-lived HTTP/1.1 connection through the VIP.
type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (k *keptConn) get() (string, error) {
	k.c.SetDeadline(time.Now().Add(lab.RequestTimeout))
	if _, err := fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", lab.VIP); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// TestReloadWithoutResets reloads the daemon 100 times, alternating two configurations whose
// selection tables differ (rr over equal weights, wrr with rs1 at weight 3), while new
// connections keep arriving and long-lived ones keep sending requests. Not one connection may
// fail, and every long-lived connection must stay on the real server it started on.
func TestReloadWithoutResets(t *testing.T) {
	d := startSluice(t)
	ctx := context.Background()

	confA, err := os.ReadFile(d.conf)
	if err != nil {
		t.Fatal(err)
	}
	// B schedules wrr with rs1 at weight 3: every reload rebuilds the selection table.
	confB := []byte(strings.Replace(strings.Replace(string(confA), "weight 1", "weight 3", 1), "lb_algo rr", "lb_algo wrr", 1))
	if string(confB) == string(confA) {
		t.Fatal("could not derive a second configuration")
	}

	const kept = 9
	conns := make([]*keptConn, kept)
	home := make([]string, kept)
	for i := range conns {
		c, err := d.lab.Client.Dial("tcp4", fmt.Sprintf("%s:%d", lab.VIP, lab.Port), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = &keptConn{c: c, br: bufio.NewReader(c)}
		if home[i], err = conns[i].get(); err != nil {
			t.Fatalf("long-lived connection %d: %v", i, err)
		}
	}

	var fresh lab.Tally
	moved, keptFailed := 0, 0
	mark := d.log.Mark()
	for i := range 100 {
		conf := confA
		if i%2 == 0 {
			conf = confB
		}
		// Written through a rename, as configuration management does, so a reload never reads
		// half a file. Odd reloads are SIGHUPs, even ones `sluice reload`, which returns once
		// the director has the new configuration.
		if err := writeAtomic(d.conf, conf); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, errOut, code := d.cli(t, "reload"); code != 0 {
				t.Fatalf("reload %d: %s", i, errOut)
			}
		} else if err := d.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			fresh.Add(d.lab.Get(ctx))
		}
		for j, k := range conns {
			server, err := k.get()
			switch {
			case err != nil:
				keptFailed++
				t.Errorf("reload %d: long-lived connection %d (on %s): %v", i, j, home[j], err)
			case server != home[j]:
				moved++
				t.Errorf("reload %d: long-lived connection %d moved from %s to %s", i, j, home[j], server)
			}
		}
		if t.Failed() && keptFailed+moved > 5 {
			t.FailNow()
		}
	}
	t.Logf("100 reloads: %d new connections (%v), %d long-lived connections × 100 requests",
		fresh.Total, fresh.ByServer, kept)
	if len(fresh.Failed) > 0 {
		t.Errorf("%d of %d new connections failed during reloads", len(fresh.Failed), fresh.Total)
		logFailures(t, fresh.Failed, fresh.Failed[0].Start, t.Errorf)
	}
	for _, rs := range d.lab.RealServers {
		if fresh.ByServer[rs.Name] == 0 {
			t.Errorf("%s got no new connections during the reloads", rs.Name)
		}
	}
	// Every `sluice reload` reached the director; SIGHUPs arriving while one is handled may
	// coalesce, as signals do.
	reloads := 0
	for _, line := range d.log.Since(mark) {
		if strings.Contains(line, "configuration reloaded") {
			reloads++
		}
	}
	if reloads < 50 {
		t.Errorf("the daemon logged %d reloads, want at least the 50 made with sluice reload", reloads)
	}
	t.Logf("the daemon applied %d reloads", reloads)
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
