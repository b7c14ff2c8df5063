package loader

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNet is a veth pair between two fresh network namespaces: lb0 (10.99.0.1/24) in lb, where
// the director runs, and rs0 (10.99.0.2/24) in rs, a real server. lb also has a bridge br0 with
// 10.0.0.0/8, a device without native XDP, and a route to 10.98.0.0/24 via the real server.
type testNet struct {
	lb, rs   netns.NsHandle
	hLB, hRS *netlink.Handle
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireBPF(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()

	var rnd [4]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	n := &testNet{}
	for _, ns := range []struct {
		h    *netns.NsHandle
		name string
	}{{&n.lb, "sluice-lb-" + suffix}, {&n.rs, "sluice-rs-" + suffix}} {
		h, err := netns.NewNamed(ns.name) // also switches this thread into it
		if err != nil {
			netns.Set(orig)
			t.Fatalf("create netns %s: %v", ns.name, err)
		}
		*ns.h = h
		name := ns.name
		t.Cleanup(func() {
			h.Close()
			if err := netns.DeleteNamed(name); err != nil {
				t.Errorf("delete netns %s: %v", name, err)
			}
		})
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to netns: %v", err)
	}

	if n.hLB, err = netlink.NewHandleAt(n.lb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.hLB.Close)
	if n.hRS, err = netlink.NewHandleAt(n.rs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.hRS.Close)

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lb0"}, PeerName: "rs0", PeerNamespace: netlink.NsFd(n.rs)}
	must(t, n.hLB.LinkAdd(veth))
	must(t, n.hLB.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}))
	n.addr(t, n.hLB, "lb0", "10.99.0.1/24")
	n.addr(t, n.hLB, "br0", "10.0.0.1/8")
	n.addr(t, n.hRS, "rs0", "10.99.0.2/24")
	for _, l := range []struct {
		h    *netlink.Handle
		name string
	}{{n.hLB, "lo"}, {n.hLB, "lb0"}, {n.hLB, "br0"}, {n.hRS, "lo"}, {n.hRS, "rs0"}} {
		lk, err := l.h.LinkByName(l.name)
		must(t, err)
		must(t, l.h.LinkSetUp(lk))
	}
	_, dst, _ := net.ParseCIDR("10.98.0.0/24")
	must(t, n.hLB.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("10.99.0.2")}))
	return n
}

func (n *testNet) addr(t *testing.T, h *netlink.Handle, link, cidr string) {
	t.Helper()
	lk, err := h.LinkByName(link)
	must(t, err)
	a, err := netlink.ParseAddr(cidr)
	must(t, err)
	must(t, h.AddrAdd(lk, a))
}

func (n *testNet) link(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	lk, err := h.LinkByName(name)
	must(t, err)
	return lk
}

// in runs fn on a thread switched into ns, where the kernel calls of NetlinkResolver, ARP and
// XDP attachment resolve names and indexes.
func (n *testNet) in(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatalf("enter netns: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked so that it dies with the goroutine, not reused elsewhere.
			t.Errorf("leave netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
