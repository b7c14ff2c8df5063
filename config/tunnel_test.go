package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTunnelValues checks that lb_kind TUN's type and options, as keepalived.conf(5) spells
// them, reach the typed config per virtual server and per real server.
func TestTunnelValues(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		want     Tunnel
		warnings []string
	}{
		{"plain TUN is ipip", "lb_kind TUN", Tunnel{}, nil},
		{"type ipip", "lb_kind TUN type ipip", Tunnel{}, nil},
		{"type gue", "lvs_method TUN type gue port 6080", Tunnel{Type: TunnelGUE, Port: 6080}, nil},
		{"gue nocsum", "lb_kind TUN type gue port 5555 nocsum", Tunnel{Type: TunnelGUE, Port: 5555, Csum: "nocsum"}, nil},
		{"gue csum", "lb_kind TUN type gue port 5555 csum", Tunnel{Type: TunnelGUE, Port: 5555, Csum: "csum"},
			[]string{"t.conf:3:32: lb_kind TUN csum parsed, not supported yet: Sluice sends tunnels without checksums (nocsum)"}},
		{"gue remcsum", "lb_kind TUN type gue port 5555 remcsum", Tunnel{Type: TunnelGUE, Port: 5555, Csum: "remcsum"},
			[]string{"t.conf:3:32: lb_kind TUN remcsum parsed, not supported yet: Sluice sends tunnels without checksums (nocsum)"}},
		{"gre", "lb_kind TUN type gre", Tunnel{Type: TunnelGRE}, nil},
		{"extra words", "lb_kind TUN type gue port 1 foo", Tunnel{Type: TunnelGUE, Port: 1},
			[]string{`t.conf:3:29: lb_kind TUN options: extra "foo" and after ignored`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, where := range []string{"virtual_server", "real_server"} {
				src := vs(tt.kind + "\nreal_server 10.0.1.1 80 {\n}")
				if where == "real_server" {
					src = vs("lb_kind DR\nreal_server 10.0.1.1 80 {\n" + tt.kind + "\n}")
				}
				cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
				if err != nil {
					t.Fatalf("%s: parse: %v", where, err)
				}
				got := cfg.VirtualServers[0].Tunnel
				if where == "real_server" {
					got = cfg.VirtualServers[0].RealServers[0].Tunnel
				} else if diff := cmp.Diff(tt.warnings, warnStrings(cfg.Warnings)); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s tunnel (-want +got):\n%s", where, diff)
				}
			}
		})
	}
}

// TestTunnelErrors checks that a malformed TUN type is an error naming what was expected.
func TestTunnelErrors(t *testing.T) {
	tests := []struct {
		name, kind string
		want       []string
	}{
		{"gue without port", "lb_kind TUN type gue", []string{"t.conf:3:18: lb_kind TUN type gue needs a port: expected type gue port N"}},
		{"gue port zero", "lb_kind TUN type gue port 0", []string{`t.conf:3:27: invalid lb_kind TUN gue port "0": expected 1-65535`}},
		{"gue port too big", "lb_kind TUN type gue port 65536", []string{`t.conf:3:27: invalid lb_kind TUN gue port "65536": expected 1-65535`}},
		{"unknown type", "lb_kind TUN type vxlan", []string{`t.conf:3:18: invalid lb_kind TUN type "vxlan": expected ipip, gue or gre`}},
		{"type without value", "lb_kind TUN type", []string{"t.conf:3:13: lb_kind TUN type needs a value: expected ipip, gue port N or gre"}},
		{"remcsum on gre", "lb_kind TUN type gre remcsum", []string{"t.conf:3:22: lb_kind TUN remcsum needs type gue"}},
		{"csum on ipip", "lb_kind TUN csum", []string{"t.conf:3:13: lb_kind TUN csum needs type gue or gre"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(mapFS{}, "t.conf", []byte(vs(tt.kind+"\nreal_server 10.0.1.1 80 {\n}")), Options{ConfigID: "testhost"})
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("parse error = %v (config %+v), want an ErrorList", err, cfg)
			}
			if diff := cmp.Diff(tt.want, errStrings(list)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
