package vrrp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// checker returns an Instance as New would configure it, without sockets: check needs none.
func checker(t *testing.T, cfg Config) *Instance {
	t.Helper()
	if err := validate(&cfg); err != nil {
		t.Fatal(err)
	}
	in := &Instance{cfg: cfg, src: cfg.UnicastSrc}
	copy(in.auth[:], cfg.AuthPass)
	for _, p := range cfg.VIPs {
		in.vips = append(in.vips, p.Addr())
	}
	return in
}

func TestReceiveChecks(t *testing.T) {
	me, peer, other := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.9")
	vips := []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32"), netip.MustParsePrefix("10.0.0.101/32")}
	v2 := Config{Interface: "eth0", VRID: 7, Priority: 100, Version: 2, AuthPass: "secret123", VIPs: vips, UnicastSrc: me}
	v3 := Config{Interface: "eth0", VRID: 7, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond, VIPs: vips, UnicastSrc: me}
	good2 := Packet{Version: 2, VRID: 7, Priority: 150, Interval: time.Second, Addrs: []netip.Addr{vips[1].Addr(), vips[0].Addr()},
		AuthType: AuthPass, AuthData: pass("secret12")}
	good3 := Packet{Version: 3, VRID: 7, Priority: 150, Interval: 300 * time.Millisecond, Addrs: []netip.Addr{vips[0].Addr(), vips[1].Addr()}}
	edit := func(p Packet, f func(*Packet)) Packet { f(&p); return p }
	wire := func(p Packet) []byte {
		b, err := p.Marshal(peer, GroupIPv4)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mangle := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	tests := []struct {
		name string
		cfg  Config
		b    []byte
		src  netip.Addr
		ttl  int
		want Reason
		adv  Advert
	}{
		{"v2 good, addresses in any order", v2, wire(good2), peer, 255, "", Advert{Src: peer, Priority: 150, Interval: time.Second}},
		{"v3 good, master's interval taken", v3, wire(good3), peer, 255, "", Advert{Src: peer, Priority: 150, Interval: 300 * time.Millisecond}},
		{"ttl 254", v2, wire(good2), peer, 254, ReasonTTL, Advert{}},
		{"ttl unknown", v2, wire(good2), peer, -1, ReasonTTL, Advert{}},
		{"own advert", v2, wire(good2), me, 255, ReasonSelf, Advert{}},
		{"unicast from a peer over a router", func() Config { c := v3; c.UnicastPeers = []netip.Addr{peer}; return c }(), wire(good3), peer, 62, "", Advert{Src: peer, Priority: 150, Interval: 300 * time.Millisecond}},
		{"not a unicast peer, check_unicast_src", func() Config { c := v3; c.UnicastPeers, c.CheckUnicastSrc = []netip.Addr{other}, true; return c }(), wire(good3), peer, 255, ReasonPeer, Advert{}},
		{"not a unicast peer, accepted without check_unicast_src", func() Config { c := v3; c.UnicastPeers = []netip.Addr{other}; return c }(), wire(good3), peer, 255, "", Advert{Src: peer, Priority: 150, Interval: 300 * time.Millisecond}},
		{"not a unicast peer, a peer's TTL range turns the check on", func() Config {
			c := v3
			c.UnicastPeers, c.UnicastPeerTTL = []netip.Addr{other}, map[netip.Addr]TTLRange{other: {0, 255}}
			return c
		}(), wire(good3), peer, 255, ReasonPeer, Advert{}},
		{"unicast TTL below min_ttl", func() Config {
			c := v3
			c.UnicastPeers, c.UnicastPeerTTL = []netip.Addr{peer}, map[netip.Addr]TTLRange{peer: {250, 255}}
			return c
		}(), wire(good3), peer, 249, ReasonPeerTTL, Advert{}},
		{"unicast TTL above max_ttl", func() Config {
			c := v3
			c.UnicastPeers, c.UnicastPeerTTL = []netip.Addr{peer}, map[netip.Addr]TTLRange{peer: {60, 64}}
			return c
		}(), wire(good3), peer, 65, ReasonPeerTTL, Advert{}},
		{"unicast TTL inside min_ttl..max_ttl", func() Config {
			c := v3
			c.UnicastPeers, c.UnicastPeerTTL = []netip.Addr{peer}, map[netip.Addr]TTLRange{peer: {60, 64}}
			return c
		}(), wire(good3), peer, 64, "", Advert{Src: peer, Priority: 150, Interval: 300 * time.Millisecond}},
		{"excluded addresses are not compared", func() Config {
			c := v2
			c.ExcludedVIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.9/32"), netip.MustParsePrefix("fd00::9/128")}
			return c
		}(), wire(good2), peer, 255, "", Advert{Src: peer, Priority: 150, Interval: time.Second}},
		{"v3 to a v2 instance", v2, wire(good3), peer, 255, ReasonVersion, Advert{}},
		{"other VRID", v2, wire(edit(good2, func(p *Packet) { p.VRID = 8 })), peer, 255, ReasonVRID, Advert{}},
		{"no auth to a PASS instance", v2, wire(edit(good2, func(p *Packet) { p.AuthType = AuthNone })), peer, 255, ReasonAuthType, Advert{}},
		{"AH", v2, wire(edit(good2, func(p *Packet) { p.AuthType = AuthAH })), peer, 255, ReasonAuthType, Advert{}},
		{"wrong password", v2, wire(edit(good2, func(p *Packet) { p.AuthData = pass("secret13") })), peer, 255, ReasonAuth, Advert{}},
		{"v2 interval differs", v2, wire(edit(good2, func(p *Packet) { p.Interval = 2 * time.Second })), peer, 255, ReasonInterval, Advert{}},
		{"v3 interval 0", v3, mangle(wire(good3), func(b []byte) []byte { b[5] = 0; b[7] += 30; return b }), peer, 255, ReasonInterval, Advert{}},
		{"address list differs", v2, wire(edit(good2, func(p *Packet) { p.Addrs = p.Addrs[:1] })), peer, 255, ReasonAddresses, Advert{}},
		{"address list differs from the owner is accepted", v2, wire(edit(good2, func(p *Packet) { p.Addrs, p.Priority = p.Addrs[:1], 255 })), peer, 255, "", Advert{Src: peer, Priority: 255, Interval: time.Second}},
		{"we own the addresses", func() Config { c := v2; c.Priority = 255; return c }(), wire(good2), peer, 255, ReasonOwner, Advert{}},
		{"bad checksum", v2, mangle(wire(good2), func(b []byte) []byte { b[6]++; return b }), peer, 255, ReasonChecksum, Advert{}},
		{"truncated", v2, wire(good2)[:10], peer, 255, ReasonTruncated, Advert{}},
		{"trailing bytes", v2, append(wire(good2), 0, 0), peer, 255, ReasonLength, Advert{}},
		{"not an advertisement", v2, mangle(wire(good2), func(b []byte) []byte { b[0] = 0x22; return b }), peer, 255, ReasonType, Advert{}},
		{"IPv6 source", v2, wire(good2), netip.MustParseAddr("fe80::1"), 255, ReasonFamily, Advert{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adv, reason := checker(t, tt.cfg).check(received{b: tt.b, src: tt.src, dst: GroupIPv4, ttl: tt.ttl})
			if reason != tt.want {
				t.Errorf("reason %q, want %q", reason, tt.want)
			}
			if diff := cmp.Diff(tt.adv, adv, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("advert (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	vip4 := []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")}
	vip6 := []netip.Prefix{netip.MustParsePrefix("fd00::100/128")}
	ok := Config{Interface: "eth0", VRID: 1, Priority: 100, VIPs: vip4}
	tests := []struct {
		name   string
		edit   func(*Config)
		want   error  // a sentinel, or nil to match wantIn
		wantIn string // part of the message
	}{
		{"AH refused", func(c *Config) { c.AuthType, c.AuthPass = "AH", "x" }, ErrAuthAH, ""},
		{"IPv6 with v2", func(c *Config) { c.VIPs = vip6 }, ErrFamily, ""},
		{"mixed families", func(c *Config) { c.VIPs = append(vip4, vip6...) }, nil, "one family"},
		{"no VIPs", func(c *Config) { c.VIPs = nil }, nil, "no virtual_ipaddress"},
		{"VRID 0", func(c *Config) { c.VRID = 0 }, nil, "virtual_router_id"},
		{"version 4", func(c *Config) { c.Version = 4 }, nil, "vrrp_version"},
		{"v2 fractional advert_int", func(c *Config) { c.AdvertInterval = 500 * time.Millisecond }, ErrInterval, ""},
		{"PASS without password", func(c *Config) { c.AuthType = "PASS" }, nil, "without auth_pass"},
		{"unknown auth_type", func(c *Config) { c.AuthType = "MD5"; c.AuthPass = "x" }, nil, "auth_type"},
		{"IPv6 peer for IPv4 VIPs", func(c *Config) { c.UnicastPeers = []netip.Addr{netip.MustParseAddr("fe80::1")} }, ErrFamily, ""},
		{"TTL range of a non-peer", func(c *Config) {
			c.UnicastPeerTTL = map[netip.Addr]TTLRange{netip.MustParseAddr("10.0.0.1"): {0, 255}}
		}, nil, "not a unicast_peer"},
		{"min_ttl above max_ttl", func(c *Config) {
			p := netip.MustParseAddr("10.0.0.1")
			c.UnicastPeers, c.UnicastPeerTTL = []netip.Addr{p}, map[netip.Addr]TTLRange{p: {200, 100}}
		}, nil, "min_ttl 200 max_ttl 100"},
		{"options of an unknown address", func(c *Config) {
			c.VIPOptions = map[netip.Addr]VIPOptions{netip.MustParseAddr("10.0.0.7"): {Label: "eth0:x"}}
		}, nil, "not a virtual address"},
		{"IPv6 broadcast", func(c *Config) {
			a := netip.MustParseAddr("fd00::7")
			c.ExcludedVIPs = []netip.Prefix{netip.PrefixFrom(a, 64)}
			c.VIPOptions = map[netip.Addr]VIPOptions{a: {Broadcast: netip.MustParseAddr("10.0.0.255")}}
		}, nil, "IPv4 only"},
		{"label not of its device", func(c *Config) {
			c.VIPOptions = map[netip.Addr]VIPOptions{vip4[0].Addr(): {Dev: "eth1", Label: "eth0:vip"}}
		}, nil, `must be eth1 or start with "eth1:"`},
		{"label too long", func(c *Config) {
			c.VIPOptions = map[netip.Addr]VIPOptions{vip4[0].Addr(): {Label: "eth0:0123456789ab"}}
		}, nil, "longer than 15 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			_, err := New(c)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			if tt.want != nil && !errors.Is(err, tt.want) || tt.wantIn != "" && !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("New = %v, want %v %q", err, tt.want, tt.wantIn)
			}
		})
	}
}
