package config

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPreprocess(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		want      []string // non-empty output lines, trimmed
		wantLines []int    // source line of each
	}{
		{"plain lines pass unchanged", "a b\n  c \"$x\"\n", []string{"a b", `c "$x"`}, []int{1, 2}},
		{"conditional", "@main router_id m\n@backup router_id b\n@^main x\n@^backup y\n",
			[]string{"router_id m", "y"}, []int{1, 4}},
		{"parameter, bare and braced", "$P=240\npriority $P\naddr 10.${P}.1\nkeep $Pq\n",
			[]string{"priority 240", "addr 10.240.1", "keep $Pq"}, []int{2, 3, 4}},
		{"undefined stays", "x ${NOPE} $NOPE\n", []string{"x ${NOPE} $NOPE"}, []int{1}},
		{"substitution at use time, recursive", "$B=10.2.${SUB}\n$SUB=0\n${B}.100/32\n$SUB=10\n${B}.100/32\n",
			[]string{"10.2.0.100/32", "10.2.10.100/32"}, []int{3, 5}},
		{"parameter that is a conditional", "$IF_MAIN=@main\n$IF_MAIN priority 240\n$IF_B=@b\n$IF_B priority 1\n",
			[]string{"priority 240"}, []int{2}},
		{"conditional definition", "@main $PRIO=240\n@backup $PRIO=200\npriority $PRIO\n",
			[]string{"priority 240"}, []int{3}},
		{"multi-line definition", "$INST= \\\nvrrp_instance VI_${NUM} { \\\n  @main priority 130 \\\n  @other priority 120 \\\n}\n$NUM=0\n$INST\n$NUM=1\n$INST\n",
			[]string{"vrrp_instance VI_0 {", "priority 130", "}", "vrrp_instance VI_1 {", "priority 130", "}"},
			[]int{7, 7, 7, 9, 9, 9}},
		{"nested multi-line", "$RS= \\\nreal_server 10.0.${V}.${R} 80 { \\\n} \\\n\n$VS= \\\nvirtual_server 10.0.${V}.4 80 { \\\n$R=1 \\\n$RS \\\n$R=2 \\\n$RS \\\n}\n$V=7\n$VS\n",
			[]string{"virtual_server 10.0.7.4 80 {", "real_server 10.0.7.1 80 {", "}", "real_server 10.0.7.2 80 {", "}", "}"},
			[]int{13, 13, 13, 13, 13, 13}},
		{"conditional multi-line definitions", "@main $A= \\\na1 \\\na2\n@other $A= \\\nb1 \\\nb2\n$A\n",
			[]string{"a1", "a2"}, []int{7, 7}},
		{"predefined", "a ${_HASH} ${_BANG} ${_INSTANCE}\n", []string{`a \# \! inst`}, []int{1}},
		{"random in range", "r ${_RANDOM 5 5}\n", []string{"r 5"}, []int{1}},
		{"seq", "~SEQ(S, 0, 3) ip 10.0.${S}.1\n", []string{"ip 10.0.0.1", "ip 10.0.1.1", "ip 10.0.2.1", "ip 10.0.3.1"}, []int{1, 1, 1, 1}},
		{"seq defaults", "~SEQ(S, 3) a$S\n~SEQ(S, -2) b${S}\n~SEQ(S, 3, 1) c${S}\n",
			[]string{"a1", "a2", "a3", "b-1", "b-2", "c3", "c2", "c1"}, []int{1, 1, 1, 2, 2, 3, 3, 3}},
		{"seqx", "~SEQx(S, 0x90, 0x10, 0xc0) fe80::20:${S}:1\n",
			[]string{"fe80::20:90:1", "fe80::20:a0:1", "fe80::20:b0:1", "fe80::20:c0:1"}, []int{1, 1, 1, 1}},
		{"nested seq", "~SEQx(A, 0x90, 0x10, 0xa0) ~SEQx(B, 0x12, -1, 0x11) f::${A}:${B}\n",
			[]string{"f::90:12", "f::90:11", "f::a0:12", "f::a0:11"}, []int{1, 1, 1, 1}},
		{"lst", "~LST(IP, 1, 2) ~LST(IP1, 5,6) 192.169.${IP}.${IP1}\n",
			[]string{"192.169.1.5", "192.169.1.6", "192.169.2.5", "192.169.2.6"}, []int{1, 1, 1, 1}},
		{"lst of tuples with seq", "~LST({IP, IP1}, {10,1},{20,4}) ~SEQ(IP2,168,2,170) 192.${IP2}.${IP}.${IP1}\n",
			[]string{"192.168.10.1", "192.170.10.1", "192.168.20.4", "192.170.20.4"}, []int{1, 1, 1, 1}},
		{"seq variable gone after the line", "~SEQ(S, 1) a${S}\nb${S}\n", []string{"a1", "b${S}"}, []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := newPreprocessor(Options{ConfigID: "main", Instance: "inst"})
			text, lines := pp.process("/etc/keepalived/t.conf", []byte(tt.src))
			if len(pp.errs) > 0 {
				t.Fatalf("errors: %v", pp.errs)
			}
			var got []string
			var gotLines []int
			for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
				if s := strings.TrimSpace(l); s != "" {
					got = append(got, s)
					gotLines = append(gotLines, lines[i])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLines, gotLines); diff != "" {
				t.Errorf("source lines (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPreprocessPWD checks ${_PWD} is the directory of the file being read, includes too.
func TestPreprocessPWD(t *testing.T) {
	fsys := mapFS{"/etc/k/inc/x.conf": "global_defs {\nrouter_id ${_PWD}\n}\n"}
	cfg, err := parse(fsys, "/etc/k/main.conf", []byte("include inc/x.conf\n"), Options{ConfigID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Global.RouterID, "/etc/k/inc"; got != want {
		t.Errorf("router_id = %q, want %q", got, want)
	}
}

// TestParseAdvanced parses a file using every construct and checks the typed result, with
// positions pointing at the source lines.
func TestParseAdvanced(t *testing.T) {
	src := `@main $PRIO=150
@^main $PRIO=50
$VIPS= \
  ~SEQ(N, 1, 3) 192.0.2.${N}/32
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority $PRIO
  virtual_ipaddress {
    $VIPS
  }
}
$RS= \
real_server 10.0.0.${R} 80 { \
  TCP_CHECK { \
  } \
}
virtual_server 192.0.2.1 80 {
  protocol TCP
  ~SEQ(R, 1, 2) $RS
}
`
	for _, id := range []string{"main", "other"} {
		t.Run(id, func(t *testing.T) {
			cfg, err := parse(mapFS{}, "t.conf", []byte(src), Options{ConfigID: id})
			if err != nil {
				t.Fatal(err)
			}
			vi := cfg.VRRPInstances[0]
			wantPrio := map[string]int{"main": 150, "other": 50}[id]
			if vi.Priority != wantPrio {
				t.Errorf("priority = %d, want %d", vi.Priority, wantPrio)
			}
			var vips []string
			for _, v := range vi.VirtualAddresses {
				vips = append(vips, v.String())
			}
			if diff := cmp.Diff([]string{"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"}, vips); diff != "" {
				t.Errorf("vips (-want +got):\n%s", diff)
			}
			vs := cfg.VirtualServers[0]
			if len(vs.RealServers) != 2 || vs.RealServers[1].Addr.String() != "10.0.0.2" {
				t.Fatalf("real servers = %+v", vs.RealServers)
			}
			if got := vs.RealServers[1].Pos.Line; got != 20 {
				t.Errorf("real server position line %d, want 20 (the ~SEQ line)", got)
			}
			if len(vs.RealServers[0].TCPChecks) != 1 {
				t.Errorf("TCP checks = %+v", vs.RealServers[0].TCPChecks)
			}
		})
	}
}

// TestDefaultConfigID checks that without Options the config id is the host name up to its
// first dot, as keepalived's default, and ${_INSTANCE} the host name.
func TestDefaultConfigID(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	id, _, _ := strings.Cut(host, ".")
	cfg, err := Parse("t.conf", []byte("global_defs {\n@"+id+" router_id ${_INSTANCE}\n@^"+id+" router_id wrong\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global.RouterID != host {
		t.Errorf("router_id = %q, want %q", cfg.Global.RouterID, host)
	}
}
