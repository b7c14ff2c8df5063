package loader

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink/nl"

	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/test/packets"
)

// testPinDir returns a fresh pin directory on the real bpffs (mounted at /sys/fs/bpf when it is
// not), removed with everything in it when the test ends.
func testPinDir(t *testing.T) string {
	t.Helper()
	requireBPF(t)
	if _, err := pinLocation(bpffsMount+"/probe", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("bpffs: %v", err)
	}
	root, err := os.MkdirTemp(bpffsMount, "sluice-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove %s: %v", root, err)
		}
	})
	return filepath.Join(root, "inst")
}

// crash drops every file descriptor the loader holds without unpinning or detaching anything,
// as the kernel does when the process is killed with SIGKILL.
func crash(t *testing.T, l *Loader) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, lk := range l.links {
		lk.Close()
	}
	l.objs.Close()
	if l.life.lock != nil {
		l.life.lock.Close()
	}
}

func newPinned(t *testing.T, opts Options) (*Loader, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &logs
}

// TestAdoptKeepsFlows pins a loader's maps, kills it, and checks that a second loader on the
// same pins forwards every established flow to the backend it had, with round robin, where a
// fresh table would have moved most of them, and keeps ids and counters.
func TestAdoptKeepsFlows(t *testing.T) {
	dir := testPinDir(t)
	res := goldenResolver()
	s := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true), be(beC, 1, true)))

	l1, _ := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 4096, PinDir: dir})
	if l1.Adopted() {
		t.Fatal("first loader says it adopted")
	}
	for _, sub := range []string{"", mapsDir, linksDir} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("pin directory %q: %v %v, want mode 0700", sub, fi, err)
		}
	}
	fi, err := os.Stat(filepath.Dir(dir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("pin root: %v %v, want mode 0700", fi, err)
	}
	for name := range l1.collectionMaps() {
		if _, err := os.Stat(filepath.Join(dir, mapsDir, name)); err != nil {
			t.Errorf("map %s not pinned: %v", name, err)
		}
	}
	apply(t, l1, s)

	// Ten established flows: a SYN, then the ACK that confirms the flow.
	want := map[uint16]string{}
	for sport := uint16(40000); sport < 40010; sport++ {
		want[sport] = forwardTo(t, l1, sport, packets.SYN).String()
		if got := forwardTo(t, l1, sport, packets.ACK).String(); got != want[sport] {
			t.Fatalf("flow %d: SYN to %s, ACK to %s", sport, want[sport], got)
		}
	}
	ids := backendIDs(l1, tcp80)
	before := readStats(t, l1)
	crash(t, l1)

	l2, logs := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 4096, PinDir: dir})
	if !l2.Adopted() {
		t.Fatalf("second loader did not adopt; log:\n%s", logs)
	}
	if diff := cmp.Diff(ids, backendIDs(l2, tcp80)); diff != "" {
		t.Errorf("backend ids after adoption (-want +got):\n%s", diff)
	}
	apply(t, l2, s)
	if diff := cmp.Diff(ids, backendIDs(l2, tcp80)); diff != "" {
		t.Errorf("backend ids after the first Apply (-want +got):\n%s", diff)
	}
	got := map[uint16]string{}
	for sport := range want {
		got[sport] = forwardTo(t, l2, sport, packets.ACK).String()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("established flows' backends after adoption (-want +got):\n%s", diff)
	}
	after := readStats(t, l2)
	if c := after.Services[tcp80]; c.Packets < before.Services[tcp80].Packets+10 {
		t.Errorf("service counters %+v after adoption, want at least %+v plus 10 packets", c, before.Services[tcp80])
	}

	// A clean Close removes everything.
	if err := l2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory after Close: %v, want it gone", err)
	}
}

// forwardTo runs a TCP packet of the client's flow from sport and returns the backend it went to.
func forwardTo(t *testing.T, l *Loader, sport uint16, flags uint8) netip.Addr {
	t.Helper()
	verdict, out := run(t, l.Program(), tcpTo(sport, func(o *packets.Options) { o.TCPFlags = flags }), loIfindex)
	if verdict != xdpTX {
		t.Fatalf("flow %d: verdict %d, want TX", sport, verdict)
	}
	for a, m := range beMACs {
		if string(out[0:6]) == string(m) {
			return a
		}
	}
	t.Fatalf("flow %d sent to unknown MAC %x", sport, out[0:6])
	return netip.Addr{}
}

func backendIDs(l *Loader, key director.ServiceKey) map[string]uint32 {
	out := map[string]uint32{}
	if st := l.services[key]; st != nil {
		for ap, b := range st.backends {
			out[ap.String()] = b.id
		}
	}
	return out
}

// TestAdoptRecreatesIncompatibleMaps: a flow table of another size cannot be reused, so it is
// recreated with a log line saying the flows were not kept, while services and backends are.
func TestAdoptRecreatesIncompatibleMaps(t *testing.T) {
	dir := testPinDir(t)
	res := goldenResolver()
	s := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)))
	l1, _ := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 4096, PinDir: dir})
	apply(t, l1, s)
	forwardTo(t, l1, 40000, packets.SYN)
	forwardTo(t, l1, 40000, packets.ACK)
	ids := backendIDs(l1, tcp80)
	crash(t, l1)

	l2, logs := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 8192, PinDir: dir})
	if !strings.Contains(logs.String(), "the flow table was not kept") || !strings.Contains(logs.String(), "map=flows") {
		t.Errorf("log does not say the flow table was not kept:\n%s", logs)
	}
	info, err := l2.objs.Flows.Info()
	if err != nil || info.MaxEntries != 8192 {
		t.Errorf("flow table: %+v %v, want 8192 entries", info, err)
	}
	var k lbFlowKey
	var v lbFlowValue
	if it := l2.objs.Flows.Iterate(); it.Next(&k, &v) {
		t.Errorf("recreated flow table holds a flow: %+v", k)
	}
	if _, err := os.Stat(filepath.Join(dir, mapsDir, lbMapFlows)); err != nil {
		t.Fatalf("flows not pinned again: %v", err)
	}
	if diff := cmp.Diff(ids, backendIDs(l2, tcp80)); diff != "" {
		t.Errorf("backend ids (-want +got):\n%s", diff)
	}
	apply(t, l2, s)
	forwardTo(t, l2, 40001, packets.SYN)

	// A third loader with the new size reuses the recreated pin.
	crash(t, l2)
	_, logs = newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 8192, PinDir: dir})
	if strings.Contains(logs.String(), "does not fit") {
		t.Errorf("third loader found incompatible maps:\n%s", logs)
	}
}

// TestPinDirLocked: while one loader owns a pin directory, another cannot take it over.
func TestPinDirLocked(t *testing.T) {
	dir := testPinDir(t)
	newPinned(t, Options{Resolver: goldenResolver(), NoAttach: true, FlowTableSize: 1024, PinDir: dir})
	_, err := New(Options{Logger: slog.New(slog.DiscardHandler), Resolver: goldenResolver(), NoAttach: true, FlowTableSize: 1024, PinDir: dir})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second New on a pin directory in use: %v, want an in-use error", err)
	}
}

// TestAdoptUpdatesLink attaches for real in a namespace, kills the loader, and checks that XDP
// stays attached, that a new loader swaps its program into the same link (new program id, same
// link id, never detached), keeps a DR backend whose port the maps do not hold, and that a
// clean Close then detaches and removes everything. It also checks Options.Generic and the
// attach modes Attachments reports.
func TestAdoptUpdatesLink(t *testing.T) {
	n := newTestNet(t)
	dir := testPinDir(t)
	key := director.ServiceKey{VIP: netip.MustParseAddr("10.99.0.100"), Port: 80, Proto: director.TCP}
	rs := director.Backend{Addr: netip.MustParseAddr("10.99.0.2"), Port: 8080, Weight: 1, Method: director.MethodDR, Up: true}
	s := director.Snapshot{Services: []director.Service{{Key: key, Scheduler: "rr", Backends: []director.Backend{rs}}}}
	xdp := func() (uint32, uint32) {
		t.Helper()
		x := n.link(t, n.hLB, "lb0").Attrs().Xdp
		if x == nil || !x.Attached {
			return nl.XDP_ATTACHED_NONE, 0
		}
		return x.AttachMode, x.ProgId
	}

	l1, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir, Generic: true})
	n.in(t, n.lb, func() { must(t, l1.Apply(context.Background(), s)) })
	ifindex := n.link(t, n.hLB, "lb0").Attrs().Index
	if diff := cmp.Diff([]Attachment{{Ifindex: ifindex, Name: "lb0", Mode: ModeGeneric, Reason: "--dataplane xdp-generic"}}, l1.Attachments()); diff != "" {
		t.Errorf("attachments with Generic (-want +got):\n%s", diff)
	}
	if mode, _ := xdp(); mode != nl.XDP_ATTACHED_SKB {
		t.Fatalf("lb0 XDP mode %d with Generic, want generic (%d)", mode, nl.XDP_ATTACHED_SKB)
	}
	crash(t, l1)
	if mode, _ := xdp(); mode != nl.XDP_ATTACHED_SKB {
		t.Fatalf("lb0 XDP mode %d after the loader died, want still generic", mode)
	}

	// A loader without Generic keeps the generic link it adopts.
	l2, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir})
	n.in(t, n.lb, func() { must(t, l2.Apply(context.Background(), s)) })
	if diff := cmp.Diff([]Attachment{{Ifindex: ifindex, Name: "lb0", Mode: ModeGeneric, Reason: "adopted"}}, l2.Attachments()); diff != "" {
		t.Errorf("attachments after adopting a generic link (-want +got):\n%s", diff)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if mode, _ := xdp(); mode != nl.XDP_ATTACHED_NONE {
		t.Fatalf("lb0 XDP mode %d after a clean Close, want detached", mode)
	}

	l3, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir})
	n.in(t, n.lb, func() { must(t, l3.Apply(context.Background(), s)) })
	if diff := cmp.Diff([]Attachment{{Ifindex: ifindex, Name: "lb0", Mode: ModeNative}}, l3.Attachments()); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
	pin := filepath.Join(dir, linksDir, linkPinName(ifindex, ModeNative))
	linkID := pinnedLinkID(t, pin)
	_, prog1 := xdp()
	ids := backendIDs(l3, key)
	crash(t, l3)

	mode, prog := xdp()
	if mode != nl.XDP_ATTACHED_DRV || prog != prog1 {
		t.Fatalf("after the loader died: XDP mode %d program %d, want native program %d still attached", mode, prog, prog1)
	}

	l4, logs := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir})
	mode, prog2 := xdp()
	if mode != nl.XDP_ATTACHED_DRV || prog2 == prog1 || prog2 != uint32(progID(t, l4)) {
		t.Errorf("after adoption: XDP mode %d program %d, want native with the new program %d (old %d)", mode, prog2, progID(t, l4), prog1)
	}
	if got := pinnedLinkID(t, pin); got != linkID {
		t.Errorf("link id %d after adoption, want the same link %d", got, linkID)
	}
	n.in(t, n.lb, func() { must(t, l4.Apply(context.Background(), s)) })
	if diff := cmp.Diff(ids, backendIDs(l4, key)); diff != "" {
		t.Errorf("backend ids after adoption and Apply (-want +got):\n%s", diff)
	}
	if got := pinnedLinkID(t, pin); got != linkID {
		t.Errorf("link id %d after Apply, want the same link %d", got, linkID)
	}
	if strings.Contains(logs.String(), "attached XDP") {
		t.Errorf("adopting loader attached anew:\n%s", logs)
	}

	// --dataplane xdp-generic after a native start: the native link is replaced.
	crash(t, l4)
	l5, logs := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir, Generic: true})
	if !strings.Contains(logs.String(), "dropping pinned XDP link") {
		t.Errorf("generic loader kept a native link:\n%s", logs)
	}
	n.in(t, n.lb, func() { must(t, l5.Apply(context.Background(), s)) })
	if mode, _ := xdp(); mode != nl.XDP_ATTACHED_SKB {
		t.Errorf("lb0 XDP mode %d with Generic after a native start, want generic", mode)
	}
	if err := l5.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if mode, _ := xdp(); mode != nl.XDP_ATTACHED_NONE {
		t.Errorf("lb0 XDP mode %d after Close, want detached", mode)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory after Close: %v, want it gone", err)
	}
}

// TestKeepOnClose: Close with KeepOnClose leaves the program attached and pinned, and the next
// loader takes it over.
func TestKeepOnClose(t *testing.T) {
	n := newTestNet(t)
	dir := testPinDir(t)
	key := director.ServiceKey{VIP: netip.MustParseAddr("10.99.0.100"), Port: 80, Proto: director.TCP}
	rs := director.Backend{Addr: netip.MustParseAddr("10.99.0.2"), Port: 80, Weight: 1, Method: director.MethodDR, Up: true}
	s := director.Snapshot{Services: []director.Service{{Key: key, Scheduler: "rr", Backends: []director.Backend{rs}}}}

	l1, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir, KeepOnClose: true})
	n.in(t, n.lb, func() { must(t, l1.Apply(context.Background(), s)) })
	if err := l1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	x := n.link(t, n.hLB, "lb0").Attrs().Xdp
	if x == nil || !x.Attached {
		t.Fatal("XDP detached by Close with KeepOnClose")
	}
	l2, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: dir})
	if !l2.Adopted() || len(l2.Attachments()) != 1 {
		t.Errorf("next loader: adopted %v, attachments %v; want the kept link", l2.Adopted(), l2.Attachments())
	}
	if err := l2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if x := n.link(t, n.hLB, "lb0").Attrs().Xdp; x != nil && x.Attached {
		t.Error("XDP still attached after a clean Close")
	}
}

func pinnedLinkID(t *testing.T, path string) link.ID {
	t.Helper()
	lk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		t.Fatalf("load pinned link: %v", err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func progID(t *testing.T, l *Loader) uint32 {
	t.Helper()
	info, err := l.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

func TestLinkPinNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ifindex int
		mode    string
		ok      bool
	}{
		{"xdp-3-native", 3, ModeNative, true},
		{"xdp-12-generic", 12, ModeGeneric, true},
		{"xdp-0-native", 0, "", false},
		{"xdp-3-offload", 0, "", false},
		{"xdp--native", 0, "", false},
		{"xdp-3", 0, "", false},
		{"maps", 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ifindex, mode, ok := parseLinkPin(tc.name)
			if ifindex != tc.ifindex || mode != tc.mode || ok != tc.ok {
				t.Errorf("parseLinkPin(%q) = %d %q %v, want %d %q %v", tc.name, ifindex, mode, ok, tc.ifindex, tc.mode, tc.ok)
			}
			if tc.ok && linkPinName(tc.ifindex, tc.mode) != tc.name {
				t.Errorf("linkPinName(%d, %q) = %q", tc.ifindex, tc.mode, linkPinName(tc.ifindex, tc.mode))
			}
		})
	}
}

func TestIDPoolReserve(t *testing.T) {
	p := newIDPool(8)
	p.reserve(map[uint32]bool{0: true, 2: true, 5: true})
	var got []uint32
	for {
		id, ok := p.get()
		if !ok {
			break
		}
		got = append(got, id)
	}
	if diff := cmp.Diff([]uint32{1, 3, 4, 6, 7}, got); diff != "" {
		t.Errorf("ids handed out after reserve (-want +got):\n%s", diff)
	}
}

func TestServiceKeyRoundTrip(t *testing.T) {
	for _, k := range []director.ServiceKey{
		{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Proto: director.TCP},
		{VIP: netip.MustParseAddr("2001:db8::1"), Port: 53, Proto: director.UDP},
		{VIP: netip.MustParseAddr("10.0.0.1"), Port: 0, Proto: director.TCP},
	} {
		t.Run(k.String(), func(t *testing.T) {
			got, ok := serviceKeyOf(svcKey(k))
			if !ok || got != k {
				t.Errorf("serviceKeyOf(svcKey(%v)) = %v %v", k, got, ok)
			}
		})
	}
	if _, ok := addrOf(0, [16]uint8{}); ok {
		t.Error("addrOf accepted family 0")
	}
}

func TestPinLocationRejects(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, dir := range []string{"relative/dir", t.TempDir() + "/inst"} {
		if _, err := pinLocation(dir, log); err == nil {
			t.Errorf("pinLocation(%q) accepted a directory not on bpffs", dir)
		}
	}
}

// TestRemoveStale: a start removes the pins of other instances that can no longer forward (no
// live link, as after a killed daemon's namespace was deleted) and keeps those that still do.
func TestRemoveStale(t *testing.T) {
	n := newTestNet(t)
	root := filepath.Dir(testPinDir(t))
	key := director.ServiceKey{VIP: netip.MustParseAddr("10.99.0.100"), Port: 80, Proto: director.TCP}
	rs := director.Backend{Addr: netip.MustParseAddr("10.99.0.2"), Port: 80, Weight: 1, Method: director.MethodDR, Up: true}
	s := director.Snapshot{Services: []director.Service{{Key: key, Scheduler: "rr", Backends: []director.Backend{rs}}}}
	exists := func(name string) bool {
		_, err := os.Lstat(filepath.Join(root, name))
		return err == nil
	}

	idle, _ := newPinned(t, Options{NoAttach: true, FlowTableSize: 1024, PinDir: filepath.Join(root, "idle")})
	crash(t, idle)
	live, _ := newPinned(t, Options{FlowTableSize: 1024, PinDir: filepath.Join(root, "live")})
	n.in(t, n.lb, func() { must(t, live.Apply(context.Background(), s)) })
	crash(t, live)

	newPinned(t, Options{NoAttach: true, FlowTableSize: 1024, PinDir: filepath.Join(root, "third")})
	if exists("idle") || !exists("live") {
		t.Errorf("after a start: idle pins exist %v (want removed), live pins exist %v (want kept)", exists("idle"), exists("live"))
	}

	must(t, n.hLB.LinkDel(n.link(t, n.hLB, "lb0")))
	newPinned(t, Options{NoAttach: true, FlowTableSize: 1024, PinDir: filepath.Join(root, "fourth")})
	if exists("live") {
		t.Error("pins whose interface is gone were kept")
	}
	if !exists("third") {
		t.Error("pins of a running loader were removed")
	}
}

// TestAttachmentsReportFallback: a bridge has no native XDP, so the program runs there in
// generic mode, and Attachments says so and why, next to the veth's native attachment.
func TestAttachmentsReportFallback(t *testing.T) {
	n := newTestNet(t)
	l, _ := newPinned(t, Options{FlowTableSize: 1024})
	rs := director.Backend{Addr: netip.MustParseAddr("10.99.0.2"), Port: 80, Weight: 1, Method: director.MethodDR, Up: true}
	s := director.Snapshot{Services: []director.Service{
		{Key: director.ServiceKey{VIP: netip.MustParseAddr("10.50.0.1"), Port: 80, Proto: director.TCP}, Scheduler: "rr", Backends: []director.Backend{rs}},
		{Key: director.ServiceKey{VIP: netip.MustParseAddr("10.99.0.100"), Port: 80, Proto: director.TCP}, Scheduler: "rr", Backends: []director.Backend{rs}},
	}}
	n.in(t, n.lb, func() { must(t, l.Apply(context.Background(), s)) })
	got := map[string]Attachment{}
	for _, a := range l.Attachments() {
		got[a.Name] = a
	}
	if a := got["lb0"]; a.Mode != ModeNative || a.Reason != "" {
		t.Errorf("lb0: %+v, want native", a)
	}
	if a := got["br0"]; a.Mode != ModeGeneric || !strings.HasPrefix(a.Reason, "native XDP failed: ") {
		t.Errorf("br0: %+v, want generic because native XDP failed", a)
	}
	if len(got) != 2 {
		t.Errorf("attachments %v, want lb0 and br0", got)
	}
}

// TestAdoptResized: a restart with other --max-services and --max-real-servers cannot keep the sized maps;
// they are recreated with a warning, and so is the flow table, whose flows name backend ids that
// are handed out afresh. A restart with the same sizes then adopts everything.
func TestAdoptResized(t *testing.T) {
	dir := testPinDir(t)
	res := goldenResolver()
	s := snap(svc(tcp80, "rr", be(beA, 1, true), be(beB, 1, true)))
	l1, _ := newPinned(t, Options{Resolver: res, NoAttach: true, FlowTableSize: 4096, PinDir: dir})
	apply(t, l1, s)
	forwardTo(t, l1, 40000, packets.SYN)
	forwardTo(t, l1, 40000, packets.ACK)
	crash(t, l1)

	opts := Options{Resolver: res, NoAttach: true, FlowTableSize: 4096, PinDir: dir, MaxServices: 512, MaxBackends: 2048}
	l2, logs := newPinned(t, opts)
	for _, want := range []string{"map=backends", "map=be_stats", "map=services", "map=sel_tables", "map=rr_pos", "map=svc_stats", "map=svc_confs"} {
		if !strings.Contains(logs.String(), "pinned map does not fit this program; recreating it") || !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %s was recreated:\n%s", want, logs)
		}
	}
	if !strings.Contains(logs.String(), "the flow table was not kept") || !strings.Contains(logs.String(), "map=flows") {
		t.Errorf("log does not say the flow table was not kept:\n%s", logs)
	}
	if got := l2.objs.Backends.MaxEntries(); got != 2048 {
		t.Errorf("backends has %d entries, want 2048", got)
	}
	var k lbFlowKey
	var v lbFlowValue
	if it := l2.objs.Flows.Iterate(); it.Next(&k, &v) {
		t.Errorf("flow table kept a flow naming an old backend id: %+v", k)
	}
	apply(t, l2, s)
	forwardTo(t, l2, 40001, packets.SYN)
	ids := backendIDs(l2, tcp80)
	crash(t, l2)

	l3, logs := newPinned(t, opts)
	if strings.Contains(logs.String(), "does not fit") || strings.Contains(logs.String(), "not kept") {
		t.Errorf("restart with the same sizes recreated maps:\n%s", logs)
	}
	if diff := cmp.Diff(ids, backendIDs(l3, tcp80)); diff != "" {
		t.Errorf("backend ids (-want +got):\n%s", diff)
	}
}
