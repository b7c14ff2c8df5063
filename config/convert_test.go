package config

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const ipvsadmSave = `-A -t 192.0.2.10:80 -s wrr -p 300
-a -t 192.0.2.10:80 -r 198.51.100.11:80 -g -w 3
-a -t 192.0.2.10:80 -r 198.51.100.12:80 -g -w 1 -x 100 -y 10
-A -u 192.0.2.10:53 -s rr
-a -u 192.0.2.10:53 -r 10.0.0.1:5353 -m -w 1
-A -t [2001:db8::10]:443 -s mh -b mh-port
-a -t [2001:db8::10]:443 -r [2001:db8::11]:443 -i -w 2
-A -f 7 -s sh
-a -f 7 -r 198.51.100.13:0 -g -w 1
`

const ldirectordCF = `# global
checktimeout=3
checkinterval=5
quiescent=yes

virtual=192.0.2.20:80
	real=198.51.100.21:80 gate 2
	real=198.51.100.22:80 gate
	fallback=127.0.0.1:80 gate
	service=http
	request="health.html"
	receive="OK"
	virtualhost=www.example.com
	scheduler=rr
	persistent=600
	protocol=tcp
	checktype=negotiate

virtual=192.0.2.21:25
	real=198.51.100.23:25 masq
	checktype=connect
	scheduler=wlc
	quiescent=no
logfile="/var/log/x"
`

func TestConvertIPVSADM(t *testing.T) {
	out, err := ConvertIPVSADM("rules", strings.NewReader(ipvsadmSave))
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConverted(t, out)
	type rs struct {
		addr           string
		port           uint16
		weight         int
		kind           LBKind
		uthres, lthres int
	}
	type svc struct {
		addr  string
		port  uint16
		proto Protocol
		algo  string
		kind  LBKind
		pers  time.Duration
		rs    []rs
	}
	var got []svc
	for _, vs := range append(cfg.VirtualServers, cfg.OtherVirtualServers...) {
		s := svc{vs.Addr.String(), vs.Port, vs.Protocol, vs.LBAlgo, vs.LBKind, vs.Persistence, nil}
		if vs.FWMark != 0 {
			s.addr = "fwmark"
		}
		for _, r := range vs.RealServers {
			s.rs = append(s.rs, rs{r.Addr.String(), r.Port, r.Weight, r.LBKind, r.UThreshold, r.LThreshold})
		}
		got = append(got, s)
	}
	want := []svc{
		{"192.0.2.10", 80, TCP, "wrr", DR, 300 * time.Second, []rs{{"198.51.100.11", 80, 3, "", 0, 0}, {"198.51.100.12", 80, 1, "", 100, 10}}},
		{"192.0.2.10", 53, UDP, "rr", NAT, 0, []rs{{"10.0.0.1", 5353, 1, "", 0, 0}}},
		{"2001:db8::10", 443, TCP, "mh", TUN, 0, []rs{{"2001:db8::11", 443, 2, "", 0, 0}}},
		{"fwmark", 0, UDP, "sh", DR, 0, []rs{{"198.51.100.13", 0, 1, "", 0, 0}}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(svc{}, rs{})); diff != "" {
		t.Errorf("converted services (-want +got):\n%s\n%s", diff, out)
	}
}

func TestConvertLdirectord(t *testing.T) {
	out, err := ConvertLdirectord("ldirectord.cf", strings.NewReader(ldirectordCF))
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConverted(t, out)
	if len(cfg.VirtualServers) != 2 {
		t.Fatalf("virtual servers: %+v\n%s", cfg.VirtualServers, out)
	}
	web := cfg.VirtualServers[0]
	if web.LBAlgo != "rr" || web.LBKind != DR || web.Persistence != 600*time.Second || web.DelayLoop != 5*time.Second ||
		web.SorryServer == nil || web.SorryServer.Addr != addr("127.0.0.1") || web.SorryServer.Port != 80 {
		t.Errorf("web service = %+v", web)
	}
	r := web.RealServers[0]
	if r.Weight != 2 || !r.InhibitOnFailure || len(r.Checkers) != 1 {
		t.Fatalf("web real server = %+v", r)
	}
	c := r.Checkers[0]
	if c.Kind != KindHTTP || c.ConnectTimeout != 3*time.Second || c.HTTP.Virtualhost != "www.example.com" ||
		len(c.HTTP.URLs) != 1 || c.HTTP.URLs[0].Path != "/health.html" || c.HTTP.URLs[0].Regex != "OK" {
		t.Errorf("web checker = %+v %+v", c, c.HTTP)
	}
	mail := cfg.VirtualServers[1]
	if mail.LBKind != NAT || mail.LBAlgo != "wlc" || mail.RealServers[0].InhibitOnFailure ||
		mail.RealServers[0].Checkers[0].Kind != KindTCP {
		t.Errorf("mail service = %+v", mail)
	}
	if !strings.Contains(string(out), "# ldirectord option logfile=/var/log/x has no keepalived equivalent; dropped.") {
		t.Errorf("dropped option not noted:\n%s", out)
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct {
		name string
		conv func(string, *strings.Reader) ([]byte, error)
		src  string
		want []string
	}{
		{"ipvsadm unknown command", ipvs, "-Z\n", []string{`in:1: unsupported ipvsadm command "-Z": expected -A (add service) or -a (add server) lines, as ipvsadm -Sn prints`}},
		{"ipvsadm server before service", ipvs, "-a -t 1.2.3.4:80 -r 5.6.7.8:80\n", []string{"in:1: server for a service not added before it: expected its -A line first"}},
		{"ipvsadm bad address and scheduler", ipvs, "-A -t 1.2.3:80 -s fastest\n", []string{
			`in:1: invalid address "1.2.3:80": expected IP:PORT or [IPv6]:PORT`,
			`in:1: unknown scheduler "fastest": expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos`,
		}},
		{"ipvsadm missing value", ipvs, "-A -t\n", []string{"in:1: ipvsadm option -t needs a value", `in:1: invalid address "": expected IP:PORT or [IPv6]:PORT`}},
		{"ldirectord bad real", ldir, "virtual=1.2.3.4:80\n\treal=1.2.3.5:80 bridge\n", []string{`in:2: invalid forwarding method "bridge": expected gate, masq or ipip`}},
		{"ldirectord unknown option", ldir, "frob=1\nvirtual=1.2.3.4:80\n\tchecktype=smoke\n", []string{
			`in:1: unknown ldirectord option "frob"`,
			`in:2: unknown checktype "smoke": expected connect, negotiate, ping, external, off or on`,
		}},
		{"ldirectord not key=value", ldir, "virtual\n", []string{"in:1: expected KEY=VALUE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.conv("in", strings.NewReader(tt.src))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v is not an ErrorList", err)
			}
			if diff := cmp.Diff(tt.want, errStrings(list)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func ipvs(n string, r *strings.Reader) ([]byte, error) { return ConvertIPVSADM(n, r) }
func ldir(n string, r *strings.Reader) ([]byte, error) { return ConvertLdirectord(n, r) }

// parseConverted parses converter output with Parse and, when keepalived is installed, checks
// `keepalived -t` accepts it too.
func parseConverted(t *testing.T, out []byte) *Config {
	t.Helper()
	cfg, err := Parse("converted.conf", out)
	if err != nil {
		t.Fatalf("converted output does not parse: %v\n%s", err, out)
	}
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		bin = "/usr/sbin/keepalived"
	}
	if _, err := os.Stat(bin); err != nil {
		return cfg
	}
	f := filepath.Join(t.TempDir(), "converted.conf")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, msg := keepalivedAccepts(t, bin, f); !ok {
		t.Errorf("keepalived -t rejects the converted output: %s\n%s", msg, out)
	}
	return cfg
}
