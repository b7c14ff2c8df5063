package director

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/health"
)

func TestCheckersOfEveryKind(t *testing.T) {
	cfg := parse(t, `
track_file maint {
  file /run/maint
  weight 3
}
virtual_server 192.0.2.10 80 {
  delay_loop 2
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server 10.0.0.1 80 {
    TCP_CHECK { connect_port 81 }
    HTTP_GET {
      url {
        path /health
        status_code 200-204
      }
      connect_timeout 3
    }
    SSL_GET {
      url {
        path /
      }
    }
    SMTP_CHECK {
      connect_port 25
    }
    DNS_CHECK {
      type A
      name example.org
      connect_port 53
    }
    UDP_CHECK {
      connect_port 5000
      payload 00ff
      require_reply 01xx
    }
    PING_CHECK {
    }
    MISC_CHECK {
      misc_path "/usr/local/bin/check web 1"
      misc_dynamic
    }
    FILE_CHECK {
      track_file maint
    }
  }
}
`)
	rs := cfg.VirtualServers[0].RealServers[0]
	cs, err := checkersOf(cfg, rs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, fmt.Sprintf("%T %s", c, c))
	}
	want := []string{
		"health.TCPCheck TCP_CHECK 10.0.0.1:81",
		"*health.HTTPCheck HTTP_GET 10.0.0.1:80",
		"*health.HTTPCheck SSL_GET 10.0.0.1:80",
		"health.SMTPCheck SMTP_CHECK 10.0.0.1:25",
		"health.DNSCheck DNS_CHECK 10.0.0.1:53",
		"health.UDPCheck UDP_CHECK 10.0.0.1:5000",
		"health.PingCheck PING_CHECK 10.0.0.1",
		"health.MiscCheck MISC_CHECK",
		"health.FileCheck FILE_CHECK",
	}
	if len(got) != len(want) {
		t.Fatalf("checkers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("checker %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if m := cs[7].(health.MiscCheck); len(m.Path) != 3 || m.Path[0] != "/usr/local/bin/check" || !m.Dynamic {
		t.Errorf("MISC_CHECK mapped to %+v", m)
	}
	if f := cs[8].(health.FileCheck); f.Path != "/run/maint" || f.Weight != 3 {
		t.Errorf("FILE_CHECK mapped to %+v", f)
	}
	if u := cs[5].(health.UDPCheck); string(u.Payload) != "\x00\xff" || !u.RequireReply {
		t.Errorf("UDP_CHECK mapped to %+v", u)
	}
}

// TestHTTPGetDrivesSnapshot runs a parsed HTTP_GET block through the real scheduler against a
// real HTTP server: a 500 takes the real server out, a 200 brings it back.
func TestHTTPGetDrivesSnapshot(t *testing.T) {
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	cfg := parse(t, fmt.Sprintf(`
virtual_server 192.0.2.10 80 {
  delay_loop 0.05
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server %s 80 {
    HTTP_GET {
      url {
        path /health
      }
      connect_port %s
      connect_timeout 1
      retry 0
    }
  }
}
`, host, port))
	// DR keeps the service's port for the real server; the check goes to connect_port.
	rs := netip.AddrPortFrom(netip.MustParseAddr(host), 80)
	rec := newRecorder()
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour})
	waitFor(t, rec, "up", func(s Snapshot) bool { return upSet(s)[rs] })
	failing.Store(true)
	waitFor(t, rec, "down on HTTP 500", func(s Snapshot) bool { return !upSet(s)[rs] })
	failing.Store(false)
	waitFor(t, rec, "up again on HTTP 200", func(s Snapshot) bool { return upSet(s)[rs] })
}
