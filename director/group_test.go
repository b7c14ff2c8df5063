package director

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
)

const groupConf = `
virtual_server_group web {
  192.0.2.1-3 80
  192.0.2.9 443
  fwmark 7
}
virtual_server group web {
  protocol TCP
  lb_algo rr
  lb_kind DR
  delay_loop 5
  real_server 10.0.0.1 {
    TCP_CHECK {
      connect_port 80
    }
  }
  real_server 10.0.0.2 80 {
    weight 2
    TCP_CHECK {
      connect_port 80
    }
  }
}
virtual_server fwmark 5 inet6 {
  lb_algo wlc
  lb_kind DR
  real_server 2001:db8::1 {
  }
}
virtual_server fwmark 6 {
  protocol TCP
  lb_kind DR
  real_server 10.0.0.3 {
  }
}
virtual_server 192.0.2.50 3868 {
  protocol SCTP
  lb_kind NAT
  real_server 10.0.0.4 3868 {
  }
}
`

func parseConf(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// keyStrings lists a snapshot's services as "KEY -> backend:port/weight/up ...".
func keyStrings(s Snapshot) []string {
	var out []string
	for _, svc := range s.Services {
		line := svc.Key.String() + " " + svc.Scheduler
		for _, b := range svc.Backends {
			line += " " + netip.AddrPortFrom(b.Addr, b.Port).String() + "/" + b.Method.String()
			if !b.Eligible() {
				line += "/out"
			}
		}
		out = append(out, line)
	}
	return out
}

// TestGroupAndFWMarkSnapshot checks that a virtual_server group is served as one service per
// address and port (and mark) of its virtual_server_group, with the same real servers, that
// firewall-mark services get their family, and that SCTP is a protocol like the others.
func TestGroupAndFWMarkSnapshot(t *testing.T) {
	cfg := parseConf(t, groupConf)
	want := []string{
		"TCP 192.0.2.1:80 rr 10.0.0.1:80/DR 10.0.0.2:80/DR",
		"TCP 192.0.2.2:80 rr 10.0.0.1:80/DR 10.0.0.2:80/DR",
		"TCP 192.0.2.3:80 rr 10.0.0.1:80/DR 10.0.0.2:80/DR",
		"TCP 192.0.2.9:443 rr 10.0.0.1:443/DR 10.0.0.2:443/DR",
		"SCTP 192.0.2.50:3868 wlc 10.0.0.4:3868/NAT",
		"FWM 5 IPv6 wlc [2001:db8::1]:0/DR",
		"FWM 6 wlc 10.0.0.3:0/DR",
		"FWM 7 rr 10.0.0.1:0/DR 10.0.0.2:80/DR",
	}
	if diff := cmp.Diff(want, keyStrings(snapshotOf(cfg, nil))); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	// Building the snapshot leaves the parsed configuration as it was.
	if len(cfg.OtherVirtualServers) != 3 || cfg.OtherVirtualServers[0].Addr.IsValid() || len(cfg.VirtualServers) != 1 {
		t.Errorf("config modified: %+v", cfg.OtherVirtualServers)
	}
}

// TestGroupChecksEachRealServerOnce checks that a group of five services runs one health
// target per real server, not one per service, and that a real server's verdict applies to
// every service of the group.
func TestGroupChecksEachRealServerOnce(t *testing.T) {
	cfg := parseConf(t, groupConf)
	ts, err := targets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tg := range ts {
		ids = append(ids, tg.ID)
	}
	want := []string{
		"SCTP 192.0.2.50:3868 -> 10.0.0.4:3868",
		"TCP group web -> 10.0.0.1:0",
		"TCP group web -> 10.0.0.2:80",
		"FWM 5 IPv6 -> [2001:db8::1]:0",
		"FWM 6 -> 10.0.0.3:0",
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("health targets (-want +got):\n%s", diff)
	}

	up := map[string]verdict{"TCP group web -> 10.0.0.2:80": {down: true}}
	for _, svc := range snapshotOf(cfg, up).Services {
		for _, b := range svc.Backends {
			if b.Addr == netip.MustParseAddr("10.0.0.2") && b.Up {
				t.Errorf("service %s: real server 10.0.0.2 is up after its only check failed", svc.Key)
			}
		}
	}
}

// TestGroupEntryRepeatingAServiceIsServedOnce checks that a group entry naming a service that
// a virtual_server already defines is left out, so the data plane is never given one twice.
func TestGroupEntryRepeatingAServiceIsServedOnce(t *testing.T) {
	cfg := parseConf(t, `
virtual_server_group g {
  192.0.2.1-2 80
}
virtual_server 192.0.2.2 80 {
  protocol TCP
  lb_algo wrr
  real_server 10.0.0.9 80 {
  }
}
virtual_server group g {
  protocol TCP
  lb_algo rr
  real_server 10.0.0.1 80 {
  }
}
`)
	want := []string{
		"TCP 192.0.2.1:80 rr 10.0.0.1:80/NAT",
		"TCP 192.0.2.2:80 wrr 10.0.0.9:80/NAT",
	}
	if diff := cmp.Diff(want, keyStrings(snapshotOf(cfg, nil))); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

// countingHealth records the targets the director gives the health runner.
type countingHealth struct {
	mu      sync.Mutex
	targets []health.Target
}

func (c *countingHealth) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (c *countingHealth) Update(ts []health.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.targets = slices.Clone(ts)
	return nil
}

// TestRunServesGroup runs the director on a group: every service is applied, and the health
// runner is given one target per real server.
func TestRunServesGroup(t *testing.T) {
	cfg := parseConf(t, groupConf)
	rec := newRecorder()
	hr := &countingHealth{}
	startDirector(t, Options{Config: cfg, Dataplane: rec, Refresh: time.Hour,
		NewHealth: func(chan<- health.Event) HealthRunner { return hr }})
	s := waitFor(t, rec, "the group's services", func(s Snapshot) bool { return len(s.Services) == 8 })
	if got := len(keyStrings(s)); got != 8 {
		t.Errorf("services = %d, want 8", got)
	}
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if len(hr.targets) != 5 {
		t.Errorf("health targets = %d, want 5 (one per real server)", len(hr.targets))
	}
}
