package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// skeletonOpts compares only the fields the walking skeleton had; the typed fields added for
// VRRP and the other checkers have tests of their own (typed_test.go).
var skeletonOpts = append([]cmp.Option{
	cmpopts.IgnoreFields(VirtualServer{}, "Quorum", "Hysteresis", "QuorumUp", "QuorumDown", "SorryServer",
		"HASuspend", "PersistenceGranularity", "Alpha", "Omega", "Virtualhost", "SMTPAlert"),
	cmpopts.IgnoreFields(RealServer{}, "Checkers", "NotifyUp", "NotifyDown", "UThreshold", "LThreshold", "Alpha", "Virtualhost"),
	cmpopts.IgnoreFields(VRRPInstance{}, "VIPs", "ExcludedVIPs", "Version", "AdvertInt", "NoPreempt", "PreemptDelay",
		"Auth", "UnicastSrcIP", "UnicastPeers", "UnicastTTL", "McastSrcIP", "TrackInterfaces", "TrackScripts",
		"TrackFiles", "TrackProcesses", "TrackBFDs", "GARPMasterDelay", "GARPMasterRepeat", "GARPMasterRefresh",
		"GARPMasterRefreshRepeat", "Notify", "UseVMAC", "VMACName", "VMACXmitBase", "DontTrackPrimary", "Accept",
		"StrictMode", "SMTPAlert"),
	cmpopts.IgnoreFields(GlobalDefs{}, "NotificationEmail", "NotificationEmailFrom", "SMTPServer", "SMTPConnectTimeout",
		"SMTPHeloName", "SMTPAlert", "VRRPMcastGroup4", "VRRPMcastGroup6", "VRRPVersion", "VRRPStrict",
		"VRRPGARPMasterDelay", "VRRPGARPMasterRepeat", "VRRPGARPMasterRefresh", "VRRPGARPInterval", "VRRPGNAInterval",
		"VRRPSkipCheckAdvAddr", "VRRPStartupDelay", "ScriptUser", "ScriptGroup", "EnableScriptSecurity",
		"DynamicInterfaces", "MaxAutoPriority", "LVSSyncDaemon"),
	cmpopts.IgnoreFields(Config{}, "VRRPScripts", "VRRPSyncGroups", "TrackFiles", "SSL", "BFDInstances"),
}, cmpOpts...)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func pos(file string, line, col int) Pos { return Pos{File: file, Line: line, Col: col} }

func TestParseFileGolden(t *testing.T) {
	const dr = "testdata/dr.conf"
	const messy = "testdata/messy.conf"
	const inc = "testdata/include/"
	tests := []struct {
		file string
		want *Config
	}{
		{
			file: dr,
			want: &Config{
				Global: GlobalDefs{RouterID: "LB_WEB_1"},
				VirtualServers: []VirtualServer{{
					Pos: pos(dr, 26, 1), Addr: addr("192.0.2.10"), Port: 80, Protocol: TCP,
					LBAlgo: "wrr", LBKind: DR, DelayLoop: 6 * time.Second, Persistence: 50 * time.Second,
					RealServers: []RealServer{
						{
							Pos: pos(dr, 33, 5), Addr: addr("198.51.100.11"), Port: 80, Weight: 3, InhibitOnFailure: true,
							TCPChecks: []TCPCheck{{Pos: pos(dr, 36, 9), ConnectTimeout: 3 * time.Second, Retry: 3, DelayBeforeRetry: 2 * time.Second}},
						},
						{
							Pos: pos(dr, 42, 5), Addr: addr("198.51.100.12"), Port: 80, Weight: 2,
							TCPChecks: []TCPCheck{{Pos: pos(dr, 44, 9), ConnectPort: 8080, ConnectTimeout: 2500 * time.Millisecond, Retry: 1, DelayBeforeRetry: time.Second}},
						},
						{
							Pos: pos(dr, 49, 5), Addr: addr("198.51.100.13"), Port: 80, Weight: 1,
							TCPChecks: []TCPCheck{{
								Pos: pos(dr, 51, 9), ConnectIP: addr("198.51.100.113"), BindTo: addr("192.0.2.2"),
								ConnectTimeout: 5 * time.Second, Retry: 1, DelayBeforeRetry: time.Second, DelayLoop: 10 * time.Second,
							}},
						},
					},
				}},
				VRRPInstances: []VRRPInstance{{
					Pos: pos(dr, 10, 1), Name: "VI_WEB", Interface: "eth0", VirtualRouterID: 51, Priority: 150, State: "MASTER",
					VirtualAddresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/32")},
				}},
			},
		},
		{
			file: messy,
			want: &Config{
				Global: GlobalDefs{RouterID: "lb two"},
				VirtualServers: []VirtualServer{{
					Pos: pos(messy, 5, 1), Addr: addr("2001:db8::80"), Port: 443, Protocol: TCP,
					LBAlgo: "rr", LBKind: NAT, DelayLoop: DefaultDelayLoop,
					RealServers: []RealServer{
						{Pos: pos(messy, 9, 2), Addr: addr("2001:db8::1"), Port: 8443, Weight: 5},
						{
							Pos: pos(messy, 10, 2), Addr: addr("2001:db8::2"), Port: 8443, Weight: 4,
							TCPChecks: []TCPCheck{{Pos: pos(messy, 15, 3), ConnectTimeout: 1500 * time.Millisecond, Retry: 2, DelayBeforeRetry: time.Second}},
						},
					},
				}},
				Warnings: []Warning{
					{pos(messy, 13, 9), "non-breaking space (U+00A0) treated as a space; keepalived would make it part of a word"},
					{pos(messy, 14, 3), "nb_get_retry is a deprecated spelling of retry (keepalived 2.2 rejects it); use retry"},
				},
			},
		},
		{
			file: inc + "main.conf",
			want: &Config{
				Global: GlobalDefs{RouterID: "INC"},
				VirtualServers: []VirtualServer{
					{
						Pos: pos(inc+"conf.d/10-web.conf", 1, 1), Addr: addr("10.0.0.2"), Port: 80, Protocol: TCP, LBAlgo: "wlc", LBKind: NAT, DelayLoop: DefaultDelayLoop,
						RealServers: []RealServer{{Pos: pos(inc+"conf.d/10-web.conf", 3, 3), Addr: addr("10.0.2.1"), Port: 80, Weight: 1}},
					},
					{
						Pos: pos(inc+"conf.d/20-dns.conf", 1, 1), Addr: addr("10.0.0.3"), Port: 53, Protocol: UDP, LBAlgo: "wlc", LBKind: NAT, DelayLoop: DefaultDelayLoop,
						RealServers: []RealServer{{Pos: pos(inc+"conf.d/20-dns.conf", 3, 3), Addr: addr("10.0.3.1"), Port: 53, Weight: 1}},
					},
					{
						Pos: pos(inc+"main.conf", 5, 1), Addr: addr("10.0.0.1"), Port: 80, Protocol: TCP, LBAlgo: "wlc", LBKind: NAT, DelayLoop: DefaultDelayLoop,
						RealServers: []RealServer{{Pos: pos(inc+"rs.inc", 1, 1), Addr: addr("10.0.1.1"), Port: 80, Weight: 2}},
					},
				},
				Warnings: []Warning{{pos(inc+"main.conf", 9, 9), `include "missing/*.conf" matched no file`}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			got, err := ParseFile(tt.file)
			if err != nil {
				t.Fatalf("ParseFile(%q): %v", tt.file, err)
			}
			if diff := cmp.Diff(tt.want, got, skeletonOpts...); diff != "" {
				t.Errorf("ParseFile(%q) (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{
			file: "testdata/bad_braces.conf",
			want: []string{
				"testdata/bad_braces.conf:4:1: unexpected '}': no block is open here",
				"testdata/bad_braces.conf:5:28: unclosed '{': expected a matching '}' before the end of the file",
				"testdata/bad_braces.conf:7:27: unclosed '{': expected a matching '}' before the end of the file",
			},
		},
		{
			file: "testdata/bad_values.conf",
			want: []string{
				`testdata/bad_values.conf:1:16: invalid virtual_server address "10.0.0.300": expected an IPv4 or IPv6 address`,
				`testdata/bad_values.conf:4:25: invalid virtual_server port "http": expected an integer in 0..65535`,
				`testdata/bad_values.conf:8:12: invalid protocol "SCTPX": expected TCP, UDP or SCTP`,
				`testdata/bad_values.conf:9:11: invalid lb_algo "roundrobin": expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos`,
				`testdata/bad_values.conf:10:11: invalid lb_kind "DSR": expected NAT, DR or TUN`,
				`testdata/bad_values.conf:11:3: delay_loop needs a value: expected seconds in 0.000001..2147483647`,
				`testdata/bad_values.conf:12:23: persistence_timeout takes a value, not a block: expected an integer in 1..2678400`,
				`testdata/bad_values.conf:14:12: invalid weight "70000000000": out of range, expected an integer in 0..2147483647`,
				`testdata/bad_values.conf:15:5: TCP_CHECK needs a block: expected '{' after it`,
				`testdata/bad_values.conf:17:24: invalid real_server port "65536": out of range, expected an integer in 0..65535`,
				`testdata/bad_values.conf:20:23: invalid fwmark "0": out of range, expected an integer in 1..4294967295`,
				`testdata/bad_values.conf:24:25: virtual_server 10.0.0.3 has port 0: expected a port in 1..65535, or persistence_timeout for an all-ports service`,
			},
		},
		{
			file: "testdata/bad_duplicates.conf",
			want: []string{
				"testdata/bad_duplicates.conf:5:3: duplicate real_server 10.0.1.1 80 in virtual_server 10.0.0.1 80: first defined at testdata/bad_duplicates.conf:3:3",
			},
		},
		{
			file: "testdata/include/cycle_a.conf",
			want: []string{
				"testdata/include/cycle_b.conf:1:1: include cycle: testdata/include/cycle_a.conf is already being read (testdata/include/cycle_a.conf -> testdata/include/cycle_b.conf)",
			},
		},
		{
			file: "testdata/does-not-exist.conf",
			want: []string{"testdata/does-not-exist.conf: read configuration: open testdata/does-not-exist.conf: no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			cfg, err := ParseFile(tt.file)
			if cfg != nil {
				t.Errorf("ParseFile(%q) returned a Config with errors", tt.file)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("ParseFile(%q) error = %v, want an ErrorList", tt.file, err)
			}
			if diff := cmp.Diff(tt.want, errStrings(list)); diff != "" {
				t.Errorf("ParseFile(%q) errors (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

// vs wraps body in a valid virtual server so a case can focus on one keyword.
func vs(body string) string {
	return "virtual_server 10.0.0.1 80 {\nprotocol TCP\n" + body + "\n}\n"
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unexpected close brace", "}\n", []string{"t.conf:1:1: unexpected '}': no block is open here"}},
		{"unclosed brace points at the opening brace", "global_defs {\n router_id x\n", []string{"t.conf:1:13: unclosed '{': expected a matching '}' before the end of the file"}},
		{"brace without keyword", "{ a }\n", []string{"t.conf:1:1: unexpected '{': expected a keyword before it"}},
		{"block on its own line is fine, missing block is not", "global_defs\n", []string{"t.conf:1:1: global_defs needs a block: expected '{' after it"}},
		{"virtual_server without address", "virtual_server {\n}\n", []string{"t.conf:1:1: virtual_server needs an address: expected virtual_server IP [PORT] { ... }"}},
		{"virtual_server fwmark bad", "virtual_server fwmark x {\n}\nvirtual_server fwmark {\n}\n", []string{
			`t.conf:1:23: invalid fwmark "x": expected an integer in 1..4294967295`,
			"t.conf:3:16: virtual_server fwmark needs a value: expected virtual_server fwmark MARK",
		}},
		{"virtual_server_group bad entries", "virtual_server_group g {\n10.0.0.9-3 80\nfwmark 0\n10.0.0.1 99999\n}\n", []string{
			`t.conf:2:1: invalid virtual_server_group address "10.0.0.9-3": invalid range end "3": out of range, expected an integer in 9..255`,
			`t.conf:3:8: invalid fwmark "0": out of range, expected an integer in 1..4294967295`,
			`t.conf:4:10: invalid virtual_server_group port "99999": out of range, expected an integer in 0..65535`,
		}},
		{"address with zone", "virtual_server fe80::1%eth0 80 {\n}\n", []string{`t.conf:1:16: invalid virtual_server address "fe80::1%eth0": expected an IPv4 or IPv6 address without a %zone`}},
		{"port 0 without persistence", "virtual_server 10.0.0.1 {\nprotocol TCP\n}\n", []string{"t.conf:1:1: virtual_server 10.0.0.1 has port 0: expected a port in 1..65535, or persistence_timeout for an all-ports service"}},
		{"unknown protocol", vs("protocol ICMP"), []string{`t.conf:3:10: invalid protocol "ICMP": expected TCP, UDP or SCTP`}},
		{"scheduler names are lower case", vs("lvs_sched WRR"), []string{`t.conf:3:11: invalid lvs_sched "WRR": expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos`}},
		{"negative delay_loop", vs("delay_loop -1"), []string{`t.conf:3:12: invalid delay_loop "-1": expected seconds in 0.000001..2147483647 with at most 6 decimal places`}},
		{"delay_loop zero", vs("delay_loop 0"), []string{`t.conf:3:12: invalid delay_loop "0": out of range, expected seconds in 0.000001..2147483647 with at most 6 decimal places`}},
		{"delay_loop too precise", vs("delay_loop 0.0000001"), []string{`t.conf:3:12: invalid delay_loop "0.0000001": too many decimal places, expected seconds in 0.000001..2147483647 with at most 6 decimal places`}},
		{"delay_loop trailing dot", vs("delay_loop 1."), []string{`t.conf:3:12: invalid delay_loop "1.": expected seconds in 0.000001..2147483647 with at most 6 decimal places`}},
		{"delay_loop overflow", vs("delay_loop 99999999999999999999"), []string{`t.conf:3:12: invalid delay_loop "99999999999999999999": out of range, expected seconds in 0.000001..2147483647 with at most 6 decimal places`}},
		{"persistence out of range", vs("persistence_timeout 2678401"), []string{`t.conf:3:21: invalid persistence_timeout "2678401": out of range, expected an integer in 1..2678400`}},
		{"lb_kind missing", vs("lb_kind"), []string{"t.conf:3:1: lb_kind needs a value: expected NAT, DR or TUN"}},
		{"inhibit_on_failure bad bool", vs("inhibit_on_failure maybe"), []string{`t.conf:3:20: invalid inhibit_on_failure value "maybe": expected one of on, off, true, false, yes, no`}},
		{"real_server without block", vs("real_server 10.0.1.1 80"), []string{"t.conf:3:1: real_server needs a block: expected '{' after it"}},
		{"real_server bad address", vs("real_server host1 80 {\n}"), []string{`t.conf:3:13: invalid real_server address "host1": expected an IPv4 or IPv6 address`}},
		{"real_server family mismatch", vs("real_server 2001:db8::1 80 {\n}"), []string{"t.conf:3:13: real_server 2001:db8::1 is IPv6 but virtual_server 10.0.0.1 is IPv4: expected the same family (only TUN may mix)"}},
		{"negative weight", vs("real_server 10.0.1.1 80 {\nweight -1\n}"), []string{`t.conf:4:8: invalid weight "-1": negative number, expected an integer in 0..2147483647`}},
		{"weight is a block", vs("real_server 10.0.1.1 80 {\nweight { 1 }\n}"), []string{"t.conf:4:8: weight takes a value, not a block: expected an integer in 0..2147483647"}},
		{"duplicate real server after port defaulting", vs("real_server 10.0.1.1 {\n}\nreal_server 10.0.1.1 80 {\n}"), []string{"t.conf:5:1: duplicate real_server 10.0.1.1 80 in virtual_server 10.0.0.1 80: first defined at t.conf:3:1"}},
		{"connect_port 0", vs("real_server 10.0.1.1 80 {\nTCP_CHECK {\nconnect_port 0\n}\n}"), []string{`t.conf:5:14: invalid connect_port "0": out of range, expected an integer in 1..65535`}},
		{"connect_ip bad", vs("real_server 10.0.1.1 80 {\nTCP_CHECK {\nconnect_ip 10.0.0\n}\n}"), []string{`t.conf:5:12: invalid connect_ip address "10.0.0": expected an IPv4 or IPv6 address`}},
		{"connect_timeout too long", vs("real_server 10.0.1.1 80 {\nTCP_CHECK {\nconnect_timeout 5000\n}\n}"), []string{`t.conf:5:17: invalid connect_timeout "5000": out of range, expected seconds in 0.000001..4294.967295 with at most 6 decimal places`}},
		{"bindto family", vs("real_server 10.0.1.1 80 {\nTCP_CHECK {\nconnect_ip 10.0.1.9\nbindto ::1\n}\n}"), []string{"t.conf:4:1: TCP_CHECK bindto ::1 and connect_ip 10.0.1.9 differ in family: expected both IPv4 or both IPv6"}},
		{"retry not a number", vs("retry three"), []string{`t.conf:3:7: invalid retry "three": expected an integer in 0..4294967295`}},
		{"vrrp_instance without name", "vrrp_instance {\nvirtual_router_id 1\n}\n", []string{"t.conf:1:1: vrrp_instance needs a name: expected vrrp_instance NAME { ... }"}},
		{"vrrp_instance without vrid", "vrrp_instance VI {\ninterface eth0\n}\n", []string{"t.conf:1:1: vrrp_instance VI has no virtual_router_id: expected virtual_router_id 1..255"}},
		{"vrrp bad state", "vrrp_instance VI {\nvirtual_router_id 1\nstate PRIMARY\n}\n", []string{`t.conf:3:7: invalid state "PRIMARY": expected MASTER or BACKUP`}},
		{"vrrp duplicate", "vrrp_instance VI {\nvirtual_router_id 1\n}\nvrrp_instance VI {\nvirtual_router_id 2\n}\n", []string{"t.conf:4:1: duplicate vrrp_instance VI: first defined at t.conf:1:1"}},
		{"vip bad prefix", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1/x\n}\n}\n", []string{`t.conf:4:1: invalid virtual_ipaddress "10.0.0.1/x": invalid prefix length "x": expected an integer in 0..32`}},
		{"vip mixed family", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1\n2001:db8::1/64\n}\n}\n", []string{"t.conf:5:1: virtual_ipaddress 2001:db8::1/64 is IPv6 but 10.0.0.1/32 came first: expected one family per vrrp_instance"}},
		{"vip with block", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1 {\n}\n}\n}\n", []string{"t.conf:4:10: unexpected block in virtual_ipaddress: expected ADDRESS[/PREFIX] [options] on each line"}},
		{"undefined parameter", "$VIP\n", []string{`t.conf:1:1: undefined parameter "$VIP": expected a $NAME=VALUE definition before its use`}},
		{"conditional drops its brace", "@lb1 global_defs {\n}\n", []string{`t.conf:2:1: unexpected '}': no block is open here`}},
		{"bad sequence", "~SEQ(X, 1, 0, 5) a\n~SEQ(X a\n~LST({A,B}, {1}) a\n~FOO(x) a\n", []string{
			"t.conf:1:1: invalid ~SEQ(X, 1, 0, 5): step 0 never ends: expected a non-zero step",
			"t.conf:2:1: ~SEQ without a closing ')'",
			`t.conf:3:1: invalid ~LST({A,B}, {1}): "{1}" has 1 values for 2 variables`,
			`t.conf:4:1: invalid sequence "~FOO(x)": expected ~SEQ(var, start, step, end) or ~LST(var, values...)`,
		}},
		{"parameter bomb", "$P0=abcdefgh\n$P1=${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}${P0}\n$P2=${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}${P1}\n$P3=${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}${P2}\n$P4=${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}${P3}\n$P5=${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}${P4}\n$P6=${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}${P5}\nx ${P6}\n", []string{
			"t.conf:8:1: parameter expansion too large (a line over 1048576 bytes, or 268435456 in all): expected parameters that do not grow without end",
		}},
		{"self-referencing parameter", "$A=${A}x\n${A}\n", []string{
			"t.conf:2:1: parameter or sequence expansion nested more than 32 deep: expected a parameter that does not refer to itself",
		}},
		{"every error is collected", vs("lb_algo x\nlb_kind y\nreal_server 10.0.1.1 80 {\nweight z\n}"), []string{
			`t.conf:3:9: invalid lb_algo "x": expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos`,
			`t.conf:4:9: invalid lb_kind "y": expected NAT, DR or TUN`,
			`t.conf:6:8: invalid weight "z": expected an integer in 0..2147483647`,
		}},
		{"nesting bound", strings.Repeat("a {\n", 20) + strings.Repeat("}\n", 20), []string{
			"t.conf:16:3: blocks nested more than 16 deep: expected a '}' sooner",
		}},
		{"nesting bound unclosed", strings.Repeat("a {\n", 20), []string{
			"t.conf:1:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:2:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:3:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:4:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:5:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:6:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:7:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:8:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:9:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:10:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:11:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:12:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:13:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:14:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:15:3: unclosed '{': expected a matching '}' before the end of the file",
			"t.conf:16:3: blocks nested more than 16 deep: expected a '}' sooner",
			"t.conf:16:3: unclosed '{': expected a matching '}' before the end of the file",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(mapFS{}, "t.conf", []byte(tt.src), Options{ConfigID: "testhost"})
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

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown top-level keyword with suggestion", "virtual_sever 10.0.0.1 80 {\n}\n", []string{`t.conf:1:1: unknown keyword "virtual_sever" at the top level, ignored; did you mean virtual_server?`}},
		{"unknown keyword without suggestion", vs("frobnicate 1"), []string{"t.conf:1:1: virtual_server 10.0.0.1 80 has no real servers", `t.conf:3:1: unknown keyword "frobnicate" in virtual_server, ignored`}},
		{"typo suggests a supported keyword", vs("dealy_loop 5"), []string{"t.conf:1:1: virtual_server 10.0.0.1 80 has no real servers", `t.conf:3:1: unknown keyword "dealy_loop" in virtual_server, ignored; did you mean delay_loop?`}},
		{"case typo suggests a checker", vs("real_server 10.0.1.1 80 {\ntcp_check {\n}\n}"), []string{`t.conf:4:1: unknown keyword "tcp_check" in real_server, ignored; did you mean TCP_CHECK?`}},
		{"virtual_server group undefined", "virtual_server group web {\nprotocol TCP\nreal_server 10.0.0.1 80 {\n}\n}\n", []string{
			"t.conf:1:1: virtual_server group web: no virtual_server_group web is defined, so it serves no address",
		}},
		{"duplicate virtual_server", vs("protocol TCP\nreal_server 10.0.1.1 80 {\n}") + vs("protocol TCP"), []string{
			"t.conf:7:1: virtual_server 10.0.0.1 80 has no real servers",
			"t.conf:7:1: duplicate virtual_server 10.0.0.1 80 TCP ignored: first defined at t.conf:1:1",
		}},
		{"known top-level block", "static_routes {\n}\n", []string{"t.conf:1:1: static_routes parsed, not supported yet"}},
		{"tracking blocks are supported", "vrrp_script chk {\nscript x\n}\nvrrp_sync_group G {\n}\ntrack_file f {\nfile /x\n}\n", nil},
		{"BFD_CHECK without its bfd_instance", vs("real_server 10.0.1.1 80 {\nBFD_CHECK {\nname b1\n}\n}"), []string{"t.conf:4:1: BFD_CHECK bfd_instance b1 not found: checker ignored as keepalived does"}},
		{"BFD_CHECK with its bfd_instance", "bfd_instance b1 {\nneighbor_ip 10.0.1.1\n}\n" + vs("real_server 10.0.1.1 80 {\nBFD_CHECK {\nname b1\n}\n}"), nil},
		{"supported checker", vs("real_server 10.0.1.1 80 {\nMISC_CHECK {\nmisc_path /bin/true\n}\n}"), nil},
		{"unsupported checker option", vs("real_server 10.0.1.1 80 {\nTCP_CHECK {\nbind_port 1000\n}\n}"), []string{"t.conf:5:1: bind_port parsed, not supported yet"}},
		{"global_defs keyword", "global_defs {\nrouter_id a\nlvs_flush\n}\n", []string{"t.conf:3:1: lvs_flush parsed, not supported yet"}},
		{"no protocol defaults to UDP", "virtual_server 10.0.0.1 53 {\nreal_server 10.0.1.1 53 {\n}\n}\n", []string{"t.conf:1:1: virtual_server 10.0.0.1 53 has no protocol: using UDP as keepalived does; add protocol TCP if that was meant"}},
		{"no real servers", vs(""), []string{"t.conf:1:1: virtual_server 10.0.0.1 80 has no real servers"}},
		{"lower-case lb_kind", vs("lb_kind dr\nreal_server 10.0.1.1 80 {\n}"), []string{"t.conf:3:9: lb_kind dr accepted as DR; keepalived 2.2 only accepts upper case and would have used NAT"}},
		{"TUN gue is fine", vs("lb_kind TUN type gue port 6080\nreal_server 10.0.1.1 80 {\n}"), nil},
		{"TUN ipip is fine", vs("lb_kind TUN type ipip\nreal_server 10.0.1.1 80 {\n}"), nil},
		{"extra arguments", vs("delay_loop 5 10\nreal_server 10.0.1.1 80 {\nweight 1 inhibit_on_failure\n}"), []string{
			`t.conf:3:14: delay_loop takes 1 value(s); extra "10" and after ignored`,
			`t.conf:5:10: weight takes 1 value(s); extra "inhibit_on_failure" and after ignored`,
		}},
		{"DR port reset", vs("lb_kind DR\nreal_server 10.0.1.1 8080 {\n}"), []string{"t.conf:4:22: real_server 10.0.1.1 port 8080 differs from virtual_server port 80; DR cannot change ports, using 80 as keepalived does"}},
		{"lower-case state", "vrrp_instance VI {\nvirtual_router_id 1\nstate master\n}\n", []string{"t.conf:3:7: state master accepted as MASTER; keepalived 2.2 only accepts upper case and would have used BACKUP"}},
		// nopreempt, unicast_peer, track_interface and use_vmac are implemented; use_ipvlan not yet.
		{"vrrp keywords", "vrrp_instance VI {\nvirtual_router_id 1\nnopreempt\nunicast_peer {\n10.0.0.2\n}\ntrack_interface {\neth1 weight -10 reverse\n}\nhigher_prio_send_advert\nuse_vmac\nuse_ipvlan\n}\n", []string{
			"t.conf:12:1: use_ipvlan parsed, not supported yet",
		}},
		{"vip options applied are not warned about", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1/24 brd 10.0.0.255 dev eth0 scope link label eth0:1\n}\n}\n", nil},
		{"ignored vip options listed once", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1/24 dev eth0 label eth0:1 home no_track\n10.0.0.2 dev eth0 noprefixroute -nodad autojoin brd +\n}\n}\n", []string{
			"t.conf:4:1: virtual_ipaddress options (no_track, brd +) parsed, not supported: ignored",
		}},
		{"ignored excluded options", "vrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1\n}\nvirtual_ipaddress_excluded {\n10.0.0.3 dev lo\n10.0.0.2 peer 10.0.0.9 track_group G\n}\n}\n", []string{
			"t.conf:8:1: virtual_ipaddress_excluded options (track_group, peer) parsed, not supported: ignored",
		}},
		{"unicast keywords are supported", "global_defs {\nvrrp_check_unicast_src\n}\nvrrp_instance VI {\nvirtual_router_id 1\nvirtual_ipaddress {\n10.0.0.1\n}\ncheck_unicast_src\nunicast_fault_no_peer\nunicast_peer {\n10.0.0.2 min_ttl 1 max_ttl 9\n}\n}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(mapFS{}, "t.conf", []byte(tt.src), Options{ConfigID: "testhost"})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, warnStrings(cfg.Warnings)); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	src := `virtual_server 10.0.0.1 0 {
	persistence_timeout
	weight 7
	inhibit_on_failure
	connect_timeout 9
	retry 4
	delay_before_retry 0.5
	lvs_sched mh
	lvs_method NAT
	protocol UDP
	real_server 10.0.1.1 {
		inhibit_on_failure off
		retry 2
		lvs_method DR
		delay_loop 0.25
		TCP_CHECK {
			connect_port 53
		}
		TCP_CHECK {
			retry 0
			connect_timeout 0.000001
			delay_before_retry 0
		}
	}
	real_server 10.0.1.2 5353 {
		weight 0
	}
}
`
	want := []VirtualServer{{
		Pos: pos("t.conf", 1, 1), Addr: addr("10.0.0.1"), Port: 0, Protocol: UDP, LBAlgo: "mh", LBKind: NAT,
		DelayLoop: DefaultDelayLoop, Persistence: 360 * time.Second,
		RealServers: []RealServer{
			{
				Pos: pos("t.conf", 11, 2), Addr: addr("10.0.1.1"), Port: 0, Weight: 7, LBKind: DR, DelayLoop: 250 * time.Millisecond,
				TCPChecks: []TCPCheck{
					{Pos: pos("t.conf", 16, 3), ConnectPort: 53, ConnectTimeout: 9 * time.Second, Retry: 2, DelayBeforeRetry: 500 * time.Millisecond},
					{Pos: pos("t.conf", 19, 3), ConnectTimeout: time.Microsecond, Retry: 0, DelayBeforeRetry: 0},
				},
			},
			{Pos: pos("t.conf", 25, 2), Addr: addr("10.0.1.2"), Port: 5353, Weight: 0, InhibitOnFailure: true},
		},
	}}
	cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: "testhost"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if diff := cmp.Diff(want, cfg.VirtualServers, skeletonOpts...); diff != "" {
		t.Errorf("virtual servers (-want +got):\n%s", diff)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", cfg.Warnings)
	}
}

// mapFS is an in-memory fileSystem for include tests and the fuzzer.
type mapFS map[string]string

func (m mapFS) Glob(pattern string) ([]string, error) {
	if _, err := filepath.Match(pattern, ""); err != nil {
		return nil, err
	}
	var out []string
	for name := range m {
		if ok, _ := filepath.Match(pattern, name); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

func (m mapFS) ReadFile(name string) ([]byte, error) {
	s, ok := m[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return []byte(s), nil
}

func TestInclude(t *testing.T) {
	deep := mapFS{}
	for i := range 12 {
		deep[sprintf("d/%d.conf", i)] = sprintf("include %d.conf\n", i+1)
	}
	tests := []struct {
		name      string
		fs        mapFS
		src       string
		wantErrs  []string
		wantWarns []string
		wantVS    int
	}{
		{
			name:   "include inside a block, relative to the including file",
			fs:     mapFS{"etc/rs/a.conf": "real_server 10.0.1.1 80 {\n}\n", "etc/rs/b.conf": "real_server 10.0.1.2 80 {\n}\n"},
			src:    "virtual_server 10.0.0.1 80 {\nprotocol TCP\ninclude rs/*.conf\n}\n",
			wantVS: 1,
		},
		{
			name:      "checked include that matches nothing",
			src:       "includea nothing/*.conf\n",
			wantWarns: []string{`etc/t.conf:1:10: includea "nothing/*.conf" matched no file`},
		},
		{
			name:     "include without a pattern",
			src:      "include\n",
			wantErrs: []string{"etc/t.conf:1:1: include needs a file name or glob pattern"},
		},
		{
			name:     "bad pattern",
			src:      "include [\n",
			wantErrs: []string{`etc/t.conf:1:9: bad include pattern "[": syntax error in pattern`},
		},
		{
			name:     "errors in an included file carry its name",
			fs:       mapFS{"etc/x.conf": "virtual_server 10.0.0.1 80 {\nweight x\n}\n"},
			src:      "include x.conf\n",
			wantErrs: []string{`etc/x.conf:2:8: invalid weight "x": expected an integer in 0..2147483647`},
		},
		{
			name:     "an included file must balance its braces",
			fs:       mapFS{"etc/x.conf": "global_defs {\n"},
			src:      "include x.conf\n}\n",
			wantErrs: []string{"etc/t.conf:2:1: unexpected '}': no block is open here", "etc/x.conf:1:13: unclosed '{': expected a matching '}' before the end of the file"},
		},
		{
			name: "depth bound",
			fs:   deep,
			src:  "include d/0.conf\n",
			wantErrs: []string{
				"etc/d/7.conf:1:1: includes nested more than 8 deep: expected fewer levels of include",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := mapFS{}
			for k, v := range tt.fs {
				if strings.HasPrefix(k, "d/") {
					k = "etc/" + k
				}
				fsys[k] = v
			}
			cfg, err := parse(fsys, "etc/t.conf", []byte(tt.src), Options{ConfigID: "testhost"})
			var list ErrorList
			errors.As(err, &list)
			if diff := cmp.Diff(tt.wantErrs, errStrings(list)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if cfg == nil {
				return
			}
			if diff := cmp.Diff(tt.wantWarns, warnStrings(cfg.Warnings)); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if len(cfg.VirtualServers) != tt.wantVS {
				t.Errorf("got %d virtual servers, want %d", len(cfg.VirtualServers), tt.wantVS)
			}
		})
	}
}

func TestErrorListError(t *testing.T) {
	tests := []struct {
		name string
		l    ErrorList
		want string
	}{
		{"none", nil, "no errors"},
		{"one", ErrorList{{pos("f", 1, 2), "bad"}}, "f:1:2: bad"},
		{"many", ErrorList{{pos("f", 1, 2), "bad"}, {pos("f", 3, 4), "worse"}}, "f:1:2: bad (and 1 more errors)"},
		{"whole file", ErrorList{{Pos{File: "f"}, "unreadable"}}, "f: unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		word string
		want string
	}{
		{"delay_lop", "delay_loop"},
		{"lb_algos", "lb_algo"},
		{"Real_Server", "real_server"},
		{"persistance_timeout", "persistence_timeout"},
		{"xyz", ""},
		{"a", ""},
		{strings.Repeat("x", 100), ""},
	}
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			if got := suggest(tt.word, virtualServerSupported, virtualServerUnsupported); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.word, got, tt.want)
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	_, err := parse(mapFS{}, "t.conf", []byte(strings.Repeat("}\n", 150)), Options{ConfigID: "testhost"})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error = %v, want an ErrorList", err)
	}
	if len(list) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(list), maxErrors+1)
	}
	if got, want := list[maxErrors].Error(), "t.conf:100:1: too many errors: 50 more not shown, expected these fixed first"; got != want {
		t.Errorf("last error = %q, want %q", got, want)
	}
}
