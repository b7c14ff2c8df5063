package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func parseOK(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

func TestVRRPInstanceTyped(t *testing.T) {
	src := `global_defs {
  vrrp_garp_master_repeat 2
  vrrp_mcast_group4 224.0.0.19
  script_user nobody nogroup
  enable_script_security
}
vrrp_script chk {
  script "/bin/check --fast"
  interval 2
  weight -20
  fall 3
}
track_file tf {
  file /run/prio
  weight -1
}
vrrp_instance VI_1 {
  interface eth0
  state BACKUP
  virtual_router_id 51
  priority 150
  advert_int 2
  nopreempt
  preempt_delay 30
  authentication {
    auth_type PASS
    auth_pass 1234567890
  }
  virtual_ipaddress {
    192.0.2.10/24 dev eth1 brd 192.0.2.255 scope link label eth1:vip
    192.0.2.11 home -nodad
  }
  virtual_ipaddress_excluded {
    198.51.100.1/32
  }
  unicast_src_ip 192.0.2.1
  unicast_peer {
    192.0.2.2
    192.0.2.3 min_ttl 2 max_ttl 64
  }
  track_interface {
    eth0
    eth2 weight -10
  }
  track_script {
    chk weight 5
  }
  track_file {
    tf weight -3 reverse
  }
  garp_master_delay 3
  notify_master "/bin/notify master"
  notify /bin/notify-all
  use_vmac vrrp51
  dont_track_primary
  no_accept
}
vrrp_sync_group G {
  group {
    VI_1
  }
  notify_backup /bin/backup
}
`
	cfg := parseOK(t, src)
	five := 5
	want := VRRPInstance{
		Pos: pos("t.conf", 17, 1), Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, Priority: 150, State: "BACKUP",
		VirtualAddresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/32")},
		VIPs: []VirtualIP{
			{Pos: pos("t.conf", 30, 5), Prefix: netip.MustParsePrefix("192.0.2.10/24"), Broadcast: addr("192.0.2.255"), Dev: "eth1", Scope: "link", Label: "eth1:vip"},
			{Pos: pos("t.conf", 31, 5), Prefix: netip.MustParsePrefix("192.0.2.11/32"), Options: []string{"home", "-nodad"}},
		},
		ExcludedVIPs: []VirtualIP{{Pos: pos("t.conf", 34, 5), Prefix: netip.MustParsePrefix("198.51.100.1/32")}},
		Version:      2, AdvertInt: 2 * time.Second, NoPreempt: true, PreemptDelay: 30 * time.Second,
		Auth:            &VRRPAuth{Type: "PASS", Pass: "12345678"},
		UnicastSrcIP:    addr("192.0.2.1"),
		UnicastPeers:    []UnicastPeer{{Addr: addr("192.0.2.2")}, {Addr: addr("192.0.2.3"), MinTTL: 2, MaxTTL: 64}},
		TrackInterfaces: []TrackInterface{{Name: "eth0"}, {Name: "eth2", Weight: -10}},
		TrackScripts:    []TrackRef{{Name: "chk", Weight: &five}},
		TrackFiles:      []TrackRef{{Name: "tf", Weight: ptr(-3), Reverse: true}},
		GARPMasterDelay: 3 * time.Second, GARPMasterRepeat: 2,
		Notify:  Notify{Master: "/bin/notify master", Any: "/bin/notify-all"},
		UseVMAC: true, VMACName: "vrrp51", DontTrackPrimary: true, Accept: ptr(false),
	}
	if diff := cmp.Diff([]VRRPInstance{want}, cfg.VRRPInstances, cmpOpts...); diff != "" {
		t.Errorf("vrrp_instance (-want +got):\n%s", diff)
	}
	wantScript := []VRRPScript{{Pos: pos("t.conf", 7, 1), Name: "chk", Script: "/bin/check --fast", Interval: 2 * time.Second, Weight: -20, Rise: 1, Fall: 3}}
	if diff := cmp.Diff(wantScript, cfg.VRRPScripts, cmpOpts...); diff != "" {
		t.Errorf("vrrp_script (-want +got):\n%s", diff)
	}
	wantTF := []TrackFile{{Pos: pos("t.conf", 13, 1), Name: "tf", File: "/run/prio", Weight: -1}}
	if diff := cmp.Diff(wantTF, cfg.TrackFiles, cmpOpts...); diff != "" {
		t.Errorf("track_file (-want +got):\n%s", diff)
	}
	wantSG := []VRRPSyncGroup{{Pos: pos("t.conf", 58, 1), Name: "G", Group: []string{"VI_1"}, Notify: Notify{Backup: "/bin/backup"}}}
	if diff := cmp.Diff(wantSG, cfg.VRRPSyncGroups, cmpOpts...); diff != "" {
		t.Errorf("vrrp_sync_group (-want +got):\n%s", diff)
	}
	g := cfg.Global
	if g.VRRPMcastGroup4 != addr("224.0.0.19") || g.ScriptUser != "nobody" || g.ScriptGroup != "nogroup" || !g.EnableScriptSecurity {
		t.Errorf("global_defs = %+v", g)
	}
}

// TestVRRPSemantics checks the corrections keepalived applies after reading an instance are
// applied, and reported as keepalived reports them.
func TestVRRPSemantics(t *testing.T) {
	inst := func(body string) string {
		return "vrrp_instance VI {\ninterface eth0\nvirtual_router_id 1\n" + body + "\nvirtual_ipaddress {\n192.0.2.1\n}\n}\n"
	}
	tests := []struct {
		name  string
		src   string
		check func(VRRPInstance) bool
		warn  string
	}{
		{"nopreempt with state MASTER is cleared", inst("state MASTER\nnopreempt"),
			func(v VRRPInstance) bool { return !v.NoPreempt && v.State == "MASTER" },
			"t.conf:1:1: (VI) nopreempt does not work with initial state MASTER: cleared as keepalived does"},
		{"nopreempt with priority 255 is cleared", inst("priority 255\nnopreempt"),
			func(v VRRPInstance) bool { return !v.NoPreempt },
			"t.conf:1:1: (VI) nopreempt is incompatible with priority 255: cleared as keepalived does"},
		{"version 3 drops authentication", inst("version 3\nauthentication {\nauth_type PASS\nauth_pass x\n}"),
			func(v VRRPInstance) bool { return v.Auth == nil && v.Version == 3 },
			"t.conf:1:1: (VI) VRRP version 3 does not support authentication: ignored as keepalived does"},
		{"VRRPv2 rounds a fractional advert_int", inst("advert_int 1.6"),
			func(v VRRPInstance) bool { return v.AdvertInt == 2*time.Second },
			"t.conf:1:1: (VI) VRRPv2 advertisement interval 1.6s must be whole seconds: rounded to 2s as keepalived does"},
		{"VRRPv3 keeps a fractional advert_int", "global_defs {\nvrrp_version 3\n}\n" + inst("advert_int 0.25"),
			func(v VRRPInstance) bool { return v.AdvertInt == 250*time.Millisecond && v.Version == 3 }, ""},
		{"auth_pass is truncated to 8", inst("authentication {\nauth_type AH\nauth_pass abcdefghij\n}"),
			func(v VRRPInstance) bool { return v.Auth.Pass == "abcdefgh" && v.Auth.Type == "AH" },
			"t.conf:6:11: auth_pass longer than 8 characters: truncated as keepalived does"},
		{"track_script naming no vrrp_script is dropped", inst("track_script {\nnosuch weight 10\n}"),
			func(v VRRPInstance) bool { return len(v.TrackScripts) == 0 },
			"t.conf:1:1: (VI) track_script nosuch not found: ignored as keepalived does"},
		{"defaults", inst(""),
			func(v VRRPInstance) bool {
				return v.Version == 2 && v.AdvertInt == time.Second && v.GARPMasterDelay == 5*time.Second && v.GARPMasterRepeat == 5
			}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseOK(t, tt.src)
			if !tt.check(cfg.VRRPInstances[0]) {
				t.Errorf("instance = %+v", cfg.VRRPInstances[0])
			}
			if tt.warn == "" {
				return
			}
			found := false
			for _, w := range cfg.Warnings {
				found = found || w.String() == tt.warn
			}
			if !found {
				t.Errorf("warning %q missing; got %v", tt.warn, warnStrings(cfg.Warnings))
			}
		})
	}
}

func TestCheckersTyped(t *testing.T) {
	src := `virtual_server 192.0.2.1 80 {
  protocol TCP
  delay_loop 10
  connect_timeout 7
  virtualhost vs.example
  alpha
  quorum 2
  hysteresis 1
  quorum_up "/bin/up now"
  sorry_server 192.0.2.99 8080
  sorry_server_inhibit
  persistence_timeout 60
  persistence_granularity 255.255.255.0
  real_server 192.0.2.2 80 {
    retry 4
    notify_up /bin/rs-up
    HTTP_GET {
      url {
        path /health
        status_code 200 300-399
      }
      url {
        path /x
        digest 9B3A0C85A887A256D6939DA88AABD8CD
      }
    }
    SSL_GET {
      enable_sni
      virtualhost ssl.example
      url {
        path /
      }
    }
    MISC_CHECK {
      misc_path "/bin/check arg"
      misc_dynamic
      user nobody
    }
    DNS_CHECK {
      type aaaa
      name example.org
      delay_loop 3
    }
    UDP_CHECK {
      payload 0102 3
      require_reply 01x2
    }
    SMTP_CHECK {
      helo_name lb.example
      host {
        connect_ip 192.0.2.25
        connect_port 587
      }
    }
    PING_CHECK {
      warmup 0
    }
    FILE_CHECK {
      track_file tf
      weight -5 reverse
    }
    TCP_CHECK {
      connect_port 81
      bind_port 2000
    }
  }
}
track_file tf {
  file /tmp/x
}
`
	cfg := parseOK(t, src)
	vs := cfg.VirtualServers[0]
	if vs.Quorum != 2 || vs.Hysteresis != 1 || vs.QuorumUp != "/bin/up now" || !vs.Alpha || vs.PersistenceGranularity != 24 ||
		vs.SorryServer == nil || *vs.SorryServer != (SorryServer{Addr: addr("192.0.2.99"), Port: 8080, Inhibit: true}) {
		t.Errorf("virtual server extras = %+v", vs)
	}
	rs := vs.RealServers[0]
	if rs.NotifyUp != "/bin/rs-up" || !rs.Alpha || rs.Virtualhost != "vs.example" {
		t.Errorf("real server extras = %+v", rs)
	}
	d := 10 * time.Second
	common := func(k CheckerKind, line int) Checker {
		return Checker{Pos: pos("t.conf", line, 5), Kind: k, ConnectTimeout: 7 * time.Second, Retry: 4,
			DelayBeforeRetry: time.Second, DelayLoop: d, Warmup: d, Alpha: true}
	}
	http := common(KindHTTP, 17)
	http.DelayBeforeRetry = 3 * time.Second
	http.HTTP = &HTTPCheck{Virtualhost: "vs.example", URLs: []URL{
		{Path: "/health", StatusCodes: []StatusRange{{200, 200}, {300, 399}}},
		{Path: "/x", Digest: "9b3a0c85a887a256d6939da88aabd8cd"},
	}}
	ssl := common(KindSSL, 27)
	ssl.DelayBeforeRetry = 3 * time.Second
	ssl.HTTP = &HTTPCheck{Virtualhost: "ssl.example", EnableSNI: true, URLs: []URL{{Path: "/", StatusCodes: []StatusRange{{200, 299}}}}}
	misc := common(KindMisc, 34)
	misc.Misc = &MiscCheck{Path: "/bin/check arg", Dynamic: true, User: "nobody"}
	dns := common(KindDNS, 39)
	dns.DelayLoop, dns.Warmup, dns.DelayBeforeRetry = 3*time.Second, 3*time.Second, 3*time.Second
	dns.DNS = &DNSCheck{Type: "AAAA", Name: "example.org"}
	udp := common(KindUDP, 44)
	udp.UDP = &UDPCheck{Payload: []byte{1, 2, 3}, RequireReply: true, ReplyData: []byte{1, 2}, ReplyMask: []byte{0xff, 0x0f}, MaxReplyLength: 255}
	smtp := common(KindSMTP, 48)
	smtp.SMTP = &SMTPCheck{HeloName: "lb.example", Hosts: []SMTPHost{{ConnectIP: addr("192.0.2.25"), ConnectPort: 587}}}
	ping := common(KindPing, 55)
	ping.Warmup = 0
	file := Checker{Pos: pos("t.conf", 58, 5), Kind: KindFile, ConnectTimeout: 7 * time.Second, Retry: 4,
		DelayBeforeRetry: time.Second, DelayLoop: d, Warmup: d, Alpha: true,
		File: &FileCheck{TrackFile: "tf", Weight: -5, Reverse: true}}
	tcp := common(KindTCP, 62)
	tcp.ConnectPort, tcp.BindPort = 81, 2000
	want := []Checker{http, ssl, misc, dns, udp, smtp, ping, file, tcp}
	if diff := cmp.Diff(want, rs.Checkers, cmpOpts...); diff != "" {
		t.Errorf("checkers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string(nil), rs.UnsupportedCheckers); diff != "" {
		t.Errorf("UnsupportedCheckers (-want +got):\n%s", diff)
	}
	if len(rs.TCPChecks) != 1 || rs.TCPChecks[0].ConnectPort != 81 {
		t.Errorf("TCPChecks = %+v", rs.TCPChecks)
	}
}

func TestFileCheckWithoutTrackFile(t *testing.T) {
	cfg := parseOK(t, "virtual_server 192.0.2.1 80 {\nprotocol TCP\nreal_server 192.0.2.2 80 {\nFILE_CHECK {\ntrack_file nosuch\n}\nTCP_CHECK {\n}\n}\n}\n")
	rs := cfg.VirtualServers[0].RealServers[0]
	if len(rs.Checkers) != 1 || rs.Checkers[0].Kind != KindTCP || len(rs.UnsupportedCheckers) != 0 {
		t.Errorf("checkers = %+v, unsupported = %v", rs.Checkers, rs.UnsupportedCheckers)
	}
	want := "t.conf:4:1: FILE_CHECK track_file nosuch not found: checker ignored as keepalived does"
	if got := warnStrings(cfg.Warnings); !contains(got, want) {
		t.Errorf("warnings %v lack %q", got, want)
	}
}

func TestVirtualServerGroup(t *testing.T) {
	cfg := parseOK(t, `virtual_server_group G {
  10.0.0.1 80
  10.0.0.3-10 80
  2001:db8::1-ff 443
  10.0.1.0/30
  10.0.2.1-10.0.2.5 53
  fwmark 7 inet6
}
virtual_server group G {
  protocol TCP
  real_server 10.0.0.100 80 {
  }
}
virtual_server fwmark 9 {
  protocol TCP
  real_server 10.0.0.100 80 {
  }
}
`)
	want := []VirtualServerGroup{{Pos: pos("t.conf", 1, 1), Name: "G", Entries: []VSGroupEntry{
		{First: addr("10.0.0.1"), Last: addr("10.0.0.1"), Port: 80},
		{First: addr("10.0.0.3"), Last: addr("10.0.0.10"), Port: 80},
		{First: addr("2001:db8::1"), Last: addr("2001:db8::ff"), Port: 443},
		{First: addr("10.0.1.0"), Last: addr("10.0.1.3")},
		{First: addr("10.0.2.1"), Last: addr("10.0.2.5"), Port: 53},
		{FWMark: 7, Family: "inet6"},
	}}}
	if diff := cmp.Diff(want, cfg.VirtualServerGroups, cmpOpts...); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if len(cfg.VirtualServers) != 0 || len(cfg.OtherVirtualServers) != 2 ||
		cfg.OtherVirtualServers[0].Group != "G" || cfg.OtherVirtualServers[1].FWMark != 9 ||
		len(cfg.OtherVirtualServers[1].RealServers) != 1 {
		t.Errorf("virtual servers = %+v, other = %+v", cfg.VirtualServers, cfg.OtherVirtualServers)
	}
}
