package netns

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// newEnv is ForTest without t.Cleanup, for tests that check what Close leaves behind.
func newEnv(t *testing.T) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipPrivileged(t, "needs root: creates network namespaces")
	}
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() }) // a no-op when the test closed it already
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// leftovers lists the entries of /run/netns that belong to e.
func leftovers(t *testing.T, e *Env) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join("/run/netns", e.Prefix()+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVethTCPAndCleanup(t *testing.T) {
	e := newEnv(t)
	a, err := e.NewNS("a")
	must(t, err)
	b, err := e.NewNS("b")
	must(t, err)
	must(t, e.Veth(a, "eth0", b, "eth0"))
	must(t, a.AddAddr("eth0", netip.MustParsePrefix("10.111.9.1/24")))
	must(t, b.AddAddr("eth0", netip.MustParsePrefix("10.111.9.2/24")))

	if _, err := os.Stat(filepath.Join("/run/netns", a.Name)); err != nil {
		t.Fatalf("namespace not visible to ip netns: %v", err)
	}

	l, err := b.Listen("tcp", "10.111.9.2:7000")
	must(t, err)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	c, err := a.Dial("tcp", "10.111.9.2:7000", 2*time.Second)
	must(t, err)
	defer c.Close()
	if got := c.LocalAddr().String(); !strings.HasPrefix(got, "10.111.9.1:") {
		t.Errorf("dialled from %s, want 10.111.9.1", got)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v; want \"ping\"", buf, err)
	}

	c.Close()
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if m := leftovers(t, e); len(m) != 0 {
		t.Errorf("namespaces left behind: %v", m)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(e.Prefix())) {
		t.Errorf("ip netns list still shows %s:\n%s", e.Prefix(), out)
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	e := ForTest(t)
	a, err := e.NewNS("a")
	must(t, err)
	before, err := netns.Get()
	must(t, err)
	defer before.Close()

	var inside netns.NsHandle
	must(t, a.Do(func() error {
		var err error
		inside, err = netns.Get()
		return err
	}))
	defer inside.Close()
	if !inside.Equal(a.handle) {
		t.Errorf("Do ran in %v, want %s", inside, a.Name)
	}

	wantErr := errors.New("from fn")
	if err := a.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do = %v, want %v", err, wantErr)
	}

	after, err := netns.Get()
	must(t, err)
	defer after.Close()
	if !after.Equal(before) {
		t.Errorf("namespace after Do = %v, want %v", after, before)
	}
}

func TestSysctlStaysInNamespace(t *testing.T) {
	e := ForTest(t)
	a, err := e.NewNS("a")
	must(t, err)
	const key = "net/ipv4/conf/lo/arp_ignore"
	host, err := os.ReadFile("/proc/sys/" + key)
	must(t, err)

	must(t, a.Sysctl("net.ipv4.conf.lo.arp_ignore", "1"))
	out, err := a.Command("cat", "/proc/sys/"+key).Output()
	must(t, err)
	if got := strings.TrimSpace(string(out)); got != "1" {
		t.Errorf("arp_ignore in namespace = %q, want 1", got)
	}
	now, err := os.ReadFile("/proc/sys/" + key)
	must(t, err)
	if !bytes.Equal(now, host) {
		t.Errorf("host arp_ignore changed from %q to %q", host, now)
	}
}

func TestSwitchXDPAndCommand(t *testing.T) {
	e := ForTest(t)
	sw, err := e.NewSwitch("switch")
	must(t, err)
	a, err := e.NewNS("a")
	must(t, err)
	b, err := e.NewNS("b")
	must(t, err)
	port, err := sw.Plug(a, "eth0")
	must(t, err)
	if port != "a" {
		t.Errorf("port = %q, want \"a\"", port)
	}
	_, err = sw.Plug(b, "eth0")
	must(t, err)
	must(t, a.AddAddr("eth0", netip.MustParsePrefix("10.111.9.1/24")))
	must(t, b.AddAddr("eth0", netip.MustParsePrefix("10.111.9.2/24")))
	must(t, a.TxOffloadOff("eth0"))

	x, err := sw.NS.XDP(port)
	must(t, err)
	if x != nil {
		t.Fatalf("XDP attached before AttachXDPPass: %+v", x)
	}
	must(t, sw.NS.AttachXDPPass(port))
	x, err = sw.NS.XDP(port)
	must(t, err)
	if x == nil || x.ProgId == 0 {
		t.Fatalf("XDP(%s) = %+v after AttachXDPPass", port, x)
	}
	t.Logf("xdp_pass on %s: %s, prog %d", port, XDPModeName(x.AttachMode), x.ProgId)

	// Through the bridge and its XDP_PASS port.
	l, err := b.Listen("tcp", ":7000")
	must(t, err)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from b\n"))
			c.Close()
		}
	}()
	resp, err := a.Command("bash", "-c", "exec 3<>/dev/tcp/10.111.9.2/7000 && head -n1 <&3").Output()
	must(t, err)
	if got := strings.TrimSpace(string(resp)); got != "hello from b" {
		t.Errorf("read %q through the switch, want \"hello from b\"", got)
	}

	// A process started with Start is stopped by SIGTERM.
	p, err := e.Start(a.Command("sleep", "30"))
	must(t, err)
	err = p.Stop(5 * time.Second)
	if !isSignalled(err) {
		t.Errorf("Stop = %v, want terminated by signal", err)
	}
}
