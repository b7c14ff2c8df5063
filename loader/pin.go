package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/director"
)

// DefaultPinRoot holds one directory per daemon instance with its pinned maps and XDP links.
const DefaultPinRoot = "/sys/fs/bpf/sluice"

// bpffsMount is where bpffs is mounted when nothing is.
const bpffsMount = "/sys/fs/bpf"

// hostRoot reaches the root of PID 1's mount namespace: `ip netns exec` gives its command a
// private /sys without the host's bpffs, and pins made there would die with the process.
const hostRoot = "/proc/1/root"

// Names inside a pin directory: maps/NAME per map of the program, links/xdp-IFINDEX-MODE per
// XDP link.
const (
	mapsDir  = "maps"
	linksDir = "links"
)

// Attach modes, as Attachment.Mode names them.
const (
	ModeNative  = "native"
	ModeGeneric = "generic"
)

// ErrInUse means another daemon holds the pin directory: two would fight over the same data plane.
var ErrInUse = errors.New("pinned data plane is in use by another sluice")

// flowMaps are the maps whose loss re-balances established connections.
var flowMaps = []string{lbMapFlows, lbMapUnconfirmed, lbMapNatFlows, lbMapNatUnconfirmed}

// PinPath is the pin directory of the daemon instance named instance. bpffs refuses names with
// dots, so they become underscores, and slashes too.
func PinPath(instance string) string {
	return filepath.Join(DefaultPinRoot, strings.NewReplacer(".", "_", "/", "_").Replace(instance))
}

// Attachment is an interface the XDP program runs on.
type Attachment struct {
	Ifindex int
	// Name is the interface's name; empty for an adopted link until the first Apply names it.
	Name string
	// Mode is ModeNative or ModeGeneric.
	Mode string
	// Reason says why: "adopted" from a previous process, "--dataplane xdp-generic"
	// (Options.Generic), or "native XDP failed: ..." with native attach's error; empty when
	// native attach worked.
	Reason string
}

// lifecycle is the Loader's pinning state: where its objects are pinned, whether it adopted
// them from a previous process, and how each interface is attached.
type lifecycle struct {
	dir     string // pin directory as this process reaches it; "" when nothing is pinned
	keep    bool   // Options.KeepOnClose
	generic bool   // Options.Generic
	adopted bool   // New took over pinned state
	claimed bool   // adopted backends were matched to the first snapshot
	lock    *os.File
	modes   map[int]Attachment
	// tmp is the directory maps were pinned in before it was renamed to dir.
	tmp string
}

// isBPFFS reports whether path lies on a bpf filesystem.
func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// sameMountNS reports whether this process shares PID 1's mount namespace, and whether it could
// tell (reading PID 1's namespace needs ptrace rights over it).
func sameMountNS() (same, known bool) {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	host, err2 := os.Readlink("/proc/1/ns/mnt")
	if err1 != nil || err2 != nil {
		return false, false
	}
	return self == host, true
}

// pinLocation returns the path through which this process reaches dir, a path under
// /sys/fs/bpf as the host sees it, mounting bpffs at /sys/fs/bpf when nothing is mounted there.
// In a private mount namespace without bpffs (`ip netns exec`), it pins through /proc/1/root
// into the host's bpffs when that is mounted and reachable. Paths elsewhere must already be
// on a bpffs.
func pinLocation(dir string, log *slog.Logger) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("pin directory %q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if dir != bpffsMount && !strings.HasPrefix(dir, bpffsMount+"/") {
		if parent := filepath.Dir(dir); !isBPFFS(parent) {
			return "", fmt.Errorf("pin directory %s: %s is not on a bpf filesystem", dir, parent)
		}
		return dir, nil
	}
	if isBPFFS(bpffsMount) {
		return dir, nil
	}
	same, known := sameMountNS()
	if !same && isBPFFS(hostRoot+bpffsMount) {
		log.Info("pinning in the host's bpffs: this mount namespace has none at "+bpffsMount, "dir", dir)
		return hostRoot + dir, nil
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount bpffs at %s: %w", bpffsMount, err)
	}
	if known && !same {
		log.Warn("mounted bpffs in a private mount namespace: the pinned data plane lives only as long as it; mount bpffs on the host at "+bpffsMount, "dir", dir)
	} else {
		log.Info("mounted bpffs", "at", bpffsMount)
	}
	return dir, nil
}

// secureRoot creates root (mode 0700) or checks that an existing one is a directory (not a
// symlink) owned by this process's user, and makes it 0700. bpffs's own root is world-writable,
// so a directory someone else made first could hand us their maps.
func secureRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create pin root: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return fmt.Errorf("pin root: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("pin root %s is not a directory", root)
	}
	if st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("pin root %s is owned by uid %d, not by this process's uid %d", root, st.Uid, os.Geteuid())
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return fmt.Errorf("pin root: %w", err)
	}
	return nil
}

// lockDir takes an exclusive lock on dir, held until the returned file is closed, so that two
// daemons never adopt the same pinned data plane.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("pin directory %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", dir, err)
	}
	return f, nil
}

// openPins prepares pinning into dir: it locks an existing directory and returns the
// compatible maps to reuse, or creates a locked temporary directory that pinMaps renames into
// place once the maps are pinned in it. Maps it cannot reuse are logged.
func (lc *lifecycle) openPins(dir string, spec *ebpf.CollectionSpec, log *slog.Logger) (map[string]*ebpf.Map, error) {
	root := filepath.Dir(dir)
	if err := secureRoot(root); err != nil {
		return nil, err
	}
	removeStale(root, filepath.Base(dir), log)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		tmp, err := os.MkdirTemp(root, "tmp-"+filepath.Base(dir)+"-")
		if err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		if lc.lock, err = lockDir(tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		lc.tmp, lc.dir = tmp, dir
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("pin directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("pin directory %s is not a directory", dir)
	}
	if lc.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	lc.dir, lc.adopted = dir, true

	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // data sections (.rodata, ...) come with the new program
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, mapsDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			log.Warn("pinned data plane lacks a map; creating it", "map", name)
			continue
		}
		if err == nil {
			err = compatible(ms, m)
		}
		if err != nil {
			if m != nil {
				m.Close()
			}
			if slices.Contains(flowMaps, name) {
				log.Warn("pinned map does not fit this program: the flow table was not kept, established connections may move to another real server", "map", name, "err", err)
			} else {
				log.Warn("pinned map does not fit this program; recreating it", "map", name, "err", err)
			}
			continue
		}
		repl[name] = m
	}
	// Flows and persistence templates name backend ids, which are handed out afresh when the
	// services or backends are not kept (--max-services or --max-real-servers changed): kept,
	// they could send established connections to another real server of the same service.
	if repl[lbMapServices] == nil || repl[lbMapBackends] == nil {
		for _, name := range append(slices.Clone(flowMaps), lbMapPersist) {
			if m := repl[name]; m != nil {
				m.Close()
				delete(repl, name)
				what := "the flow table was not kept, established connections may move to another real server"
				if name == lbMapPersist {
					what = "the persistence templates were not kept"
				}
				log.Warn("pinned services or real servers were recreated, so their ids change: "+what, "map", name)
			}
		}
	}
	return repl, nil
}

// staleTmpAge is how old an unlocked temporary pin directory must be to be removed: younger
// ones may belong to a start between creating and locking it.
const staleTmpAge = time.Minute

// removeStale removes the pin directories under root, other than self, that no daemon holds and
// that cannot forward: every pinned link is defunct because its interface is gone, as when the
// network namespace of a killed daemon was deleted. It also removes temporary directories
// left by starts that died. Directories that still forward are kept, so a data plane left with
// --dont-release-dataplane or by a killed daemon runs until its next start takes it over.
func removeStale(root, self string, log *slog.Logger) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == self {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if strings.HasPrefix(e.Name(), "tmp-") {
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < staleTmpAge {
				continue
			}
		}
		lock, err := lockDir(dir)
		if err != nil {
			continue // in use
		}
		if !hasLiveLink(dir) {
			if err := os.RemoveAll(dir); err != nil {
				log.Warn("cannot remove stale pinned data plane", "dir", dir, "err", err)
			} else {
				log.Info("removed a stale pinned data plane: none of its interfaces exists any more", "dir", dir)
			}
		}
		lock.Close()
	}
}

// hasLiveLink reports whether a pin directory holds an XDP link still attached to an interface.
func hasLiveLink(dir string) bool {
	ents, _ := os.ReadDir(filepath.Join(dir, linksDir))
	for _, e := range ents {
		lk, err := link.LoadPinnedLink(filepath.Join(dir, linksDir, e.Name()), nil)
		if err != nil {
			return true // cannot tell: keep it
		}
		info, err := lk.Info()
		lk.Close()
		if err != nil || info.XDP() == nil || info.XDP().Ifindex != 0 {
			return true
		}
	}
	return false
}

// compatible reports whether pinned map m can stand in for spec: same type, sizes, entries
// and flags, and for a map of maps an outer map that accepts tables of this program's template.
func compatible(spec *ebpf.MapSpec, m *ebpf.Map) error {
	if err := spec.Compatible(m); err != nil {
		return err
	}
	if spec.InnerMap == nil {
		return nil
	}
	return probeInner(spec.InnerMap, m)
}

// probeInner checks that outer accepts a table made from template: the kernel checks every
// table installed against the outer map's own template (type, key and value sizes, flags),
// which cannot be read back, so probeInner installs a one-entry table in a free slot and
// removes it again. Unlike reading an installed table by id, this needs no CAP_SYS_ADMIN,
// which the systemd unit does not grant. A free slot is one no service points at, so the data
// path never sees the probe.
func probeInner(template *ebpf.MapSpec, outer *ebpf.Map) error {
	used := map[uint32]bool{}
	var k, id uint32
	it := outer.Iterate()
	for it.Next(&k, &id) {
		used[k] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read tables: %w", err)
	}
	free := uint32(0)
	for used[free] {
		free++
	}
	if free >= outer.MaxEntries() {
		return nil // every slot holds a table (never in practice: a service has at most two)
	}
	ps := template.Copy()
	ps.MaxEntries = 1
	probe, err := ebpf.NewMap(ps)
	if err != nil {
		return fmt.Errorf("create a table to probe with: %w", err)
	}
	defer probe.Close()
	if err := outer.Put(free, probe); err != nil {
		return fmt.Errorf("refuses a table of this program's template (%s %d/%d flags %#x): %v: %w",
			template.Type, template.KeySize, template.ValueSize, template.Flags, err, ebpf.ErrMapIncompatible)
	}
	if err := outer.Delete(free); err != nil {
		return fmt.Errorf("remove the probe table from slot %d: %w", free, err)
	}
	return nil
}

// collectionMaps returns the loaded maps by their names in the ELF, read from lbMaps' tags so
// that maps added to the program are pinned without a change here.
func (l *Loader) collectionMaps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&l.objs.lbMaps).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil && name != "" {
			out[name] = m
		}
	}
	return out
}

// pinMaps pins the loaded maps: all of them into the temporary directory, which is then renamed
// into place, so a directory at the final path always holds a complete set; or, when adopting,
// those that were recreated, each pinned beside its old pin and renamed over it.
func (l *Loader) pinMaps(reused map[string]*ebpf.Map) error {
	lc := l.life
	maps := l.collectionMaps()
	if lc.tmp != "" {
		for _, sub := range []string{mapsDir, linksDir} {
			if err := os.Mkdir(filepath.Join(lc.tmp, sub), 0o700); err != nil {
				return fmt.Errorf("create pin directory: %w", err)
			}
		}
		for name, m := range maps {
			if err := m.Pin(filepath.Join(lc.tmp, mapsDir, name)); err != nil {
				return fmt.Errorf("pin map %s: %w", name, err)
			}
		}
		if err := os.Rename(lc.tmp, lc.dir); err != nil {
			return fmt.Errorf("move pins into place: %w", err)
		}
		lc.tmp = ""
		return nil
	}
	for _, sub := range []string{mapsDir, linksDir} {
		if err := os.MkdirAll(filepath.Join(lc.dir, sub), 0o700); err != nil {
			return fmt.Errorf("create pin directory: %w", err)
		}
	}
	for name, m := range maps {
		if _, ok := reused[name]; ok {
			continue
		}
		final := filepath.Join(lc.dir, mapsDir, name)
		tmp := filepath.Join(lc.dir, mapsDir, name+"-new")
		os.Remove(tmp)
		if err := m.Pin(tmp); err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	// Pins of maps this program no longer has.
	ents, _ := os.ReadDir(filepath.Join(lc.dir, mapsDir))
	for _, e := range ents {
		if _, ok := maps[e.Name()]; !ok {
			os.Remove(filepath.Join(lc.dir, mapsDir, e.Name()))
		}
	}
	return nil
}

// linkPinName is the pin of the XDP link on ifindex in mode.
func linkPinName(ifindex int, mode string) string {
	return fmt.Sprintf("xdp-%d-%s", ifindex, mode)
}

// parseLinkPin reverses linkPinName.
func parseLinkPin(name string) (int, string, bool) {
	rest, ok := strings.CutPrefix(name, "xdp-")
	if !ok {
		return 0, "", false
	}
	idx, mode, ok := strings.Cut(rest, "-")
	n, err := strconv.Atoi(idx)
	if !ok || err != nil || n <= 0 || (mode != ModeNative && mode != ModeGeneric) {
		return 0, "", false
	}
	return n, mode, true
}

// adoptLinks points every pinned XDP link at the new program with one atomic update each, so the
// interfaces never run without a program. Links of vanished interfaces, and links in the wrong
// mode for Options.Generic, are removed (syncAttachments attaches anew).
func (l *Loader) adoptLinks() error {
	lc := l.life
	dir := filepath.Join(lc.dir, linksDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read pinned links: %w", err)
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		ifindex, mode, ok := parseLinkPin(e.Name())
		if !ok {
			continue
		}
		lk, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return fmt.Errorf("load pinned link %s: %w", e.Name(), err)
		}
		info, err := lk.Info()
		if err == nil && (info.XDP() == nil || int(info.XDP().Ifindex) != ifindex) {
			err = fmt.Errorf("link is no longer attached to ifindex %d", ifindex)
		}
		if err == nil && lc.generic && mode != ModeGeneric {
			err = errors.New("native link, but generic XDP is asked for")
		}
		if err != nil {
			l.log.Warn("dropping pinned XDP link", "ifindex", ifindex, "reason", err)
			lk.Unpin()
			lk.Close()
			continue
		}
		if err := lk.Update(l.objs.XdpLb); err != nil {
			// Detach it: the first Apply attaches the new program afresh.
			l.log.Warn("cannot swap the program on a pinned XDP link; detaching it, so forwarding on it pauses until it is attached again", "ifindex", ifindex, "err", err)
			lk.Unpin()
			lk.Close()
			continue
		}
		name := ""
		if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
			name = ifi.Name
		}
		l.links[ifindex] = lk
		lc.modes[ifindex] = Attachment{Ifindex: ifindex, Name: name, Mode: mode, Reason: "adopted"}
		l.log.Info("took over pinned XDP link; new program swapped in", "ifindex", ifindex, "interface", name, "mode", mode)
	}
	return nil
}

// pinLink pins a new XDP link, so it outlives the process.
func (l *Loader) pinLink(lk link.Link, a Attachment) {
	if l.life.dir == "" {
		return
	}
	if err := lk.Pin(filepath.Join(l.life.dir, linksDir, linkPinName(a.Ifindex, a.Mode))); err != nil {
		l.log.Warn("cannot pin XDP link: forwarding on it stops with this process", "interface", a.Name, "err", err)
	}
}

// detachLink unpins and closes an XDP link, which detaches the program.
func (l *Loader) detachLink(ifindex int, lk link.Link) error {
	if err := lk.Unpin(); err != nil {
		return fmt.Errorf("unpin xdp link on ifindex %d: %w", ifindex, err)
	}
	delete(l.life.modes, ifindex)
	return lk.Close()
}

// adoptState rebuilds what Loader remembers of services and backends from the maps a previous
// process left, so that the first Apply writes only differences and keeps every id that
// established flows name. Selection-table slots no service points at (an interrupted swap) are
// emptied; scheduler names are unknown, so the first Apply rebuilds each table into a free slot
// and switches the service to it in one update.
func (l *Loader) adoptState() error {
	byID := map[uint32]*service{}
	usedSvc, usedSlots, usedBE := map[uint32]bool{}, map[uint32]bool{}, map[uint32]bool{}
	var k lbSvcKey
	var v lbSvcValue
	it := l.objs.Services.Iterate()
	for it.Next(&k, &v) {
		key, ok := serviceKeyOf(k)
		if !ok || v.Id >= l.maxSvc || usedSvc[v.Id] || (v.SelSize > 0 && (v.SelSlot >= l.selSlots || usedSlots[v.SelSlot])) {
			l.log.Warn("pinned service entry is inconsistent; removing it", "service", key)
			if err := l.objs.Services.Delete(&k); err != nil {
				return fmt.Errorf("remove pinned service %s: %w", key, err)
			}
			continue
		}
		st := &service{key: key, val: v, written: true, hasTable: v.SelSize > 0, backends: map[netip.AddrPort]*backend{}}
		l.services[key] = st
		byID[v.Id] = st
		usedSvc[v.Id] = true
		if st.hasTable {
			usedSlots[v.SelSlot] = true
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read pinned services: %w", err)
	}

	var id uint32
	var bv lbBackendValue
	bit := l.objs.Backends.Iterate()
	for bit.Next(&id, &bv) {
		if bv.Family == 0 {
			continue
		}
		st := byID[bv.SvcId]
		addr, ok := addrOf(bv.Family, bv.Addr)
		if st == nil || !ok {
			// No service can reach it; flows naming it re-select.
			if err := l.put(l.objs.Backends, id, &lbBackendValue{}); err != nil {
				return fmt.Errorf("clear orphaned backend %d: %w", id, err)
			}
			continue
		}
		port := st.key.Port
		if bv.Method == methodNAT {
			port = ntohs(bv.Port)
		}
		ap := netip.AddrPortFrom(addr, port)
		for st.backends[ap] != nil && port != 0 {
			// Two DR/TUN backends of one address: keep both under distinct provisional keys.
			port--
			ap = netip.AddrPortFrom(addr, port)
		}
		st.backends[ap] = &backend{id: id, val: bv}
		usedBE[id] = true
		if bv.Method == methodDR && bv.Flags&beFlagUp != 0 && bv.Ifindex != 0 {
			if l.lastHops == nil {
				l.lastHops = map[netip.Addr]NextHop{}
			}
			l.lastHops[addr] = NextHop{Ifindex: int(bv.Ifindex), SrcMAC: slices.Clone(bv.Smac[:]), DstMAC: slices.Clone(bv.Dmac[:])}
		}
	}
	if err := bit.Err(); err != nil {
		return fmt.Errorf("read pinned backends: %w", err)
	}

	var slot, tid uint32
	var orphans []uint32
	sit := l.objs.SelTables.Iterate()
	for sit.Next(&slot, &tid) {
		if !usedSlots[slot] {
			orphans = append(orphans, slot)
		}
	}
	if err := sit.Err(); err != nil {
		return fmt.Errorf("read pinned selection tables: %w", err)
	}
	for _, s := range orphans {
		if err := l.objs.SelTables.Delete(s); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			usedSlots[s] = true // still holds a table: never hand it out
		}
	}
	l.svcIDs.reserve(usedSvc)
	l.beIDs.reserve(usedBE)
	l.slots.reserve(usedSlots)
	l.log.Info("took over the pinned data plane", "dir", l.life.dir, "services", len(l.services), "backends", len(usedBE))
	return nil
}

// claimAdopted matches, once, the backends adoptState read back to the first snapshot's: a DR
// or TUN backend's port is not in the maps, so a configured backend missing under its own key
// takes over an adopted one of the same service, address and method, keeping its id and with it
// the flows pinned to it.
func (l *Loader) claimAdopted(order []*director.Service) {
	lc := l.life
	if !lc.adopted || lc.claimed {
		return
	}
	lc.claimed = true
	for _, svc := range order {
		st := l.services[svc.Key]
		if st == nil {
			continue
		}
		want := map[netip.AddrPort]bool{}
		for _, b := range svc.Backends {
			want[netip.AddrPortFrom(b.Addr, b.Port)] = true
		}
		for _, b := range svc.Backends {
			ap := netip.AddrPortFrom(b.Addr, b.Port)
			if st.backends[ap] != nil {
				continue
			}
			for old, bs := range st.backends {
				if want[old] || old.Addr() != b.Addr || bs.val.Method != methodOf(b.Method) {
					continue
				}
				delete(st.backends, old)
				st.backends[ap] = bs
				break
			}
		}
	}
}

// reserve marks used ids taken and queues the others below the highest one for reuse.
func (p *idPool) reserve(used map[uint32]bool) {
	p.free, p.next = nil, 0
	for id := range used {
		p.next = max(p.next, id+1)
	}
	for id := uint32(0); id < p.next; id++ {
		if !used[id] {
			p.free = append(p.free, id)
		}
	}
}

// methodOf is the map's method code of m.
func methodOf(m director.Method) uint8 {
	switch m {
	case director.MethodTUN:
		return methodTUN
	case director.MethodNAT:
		return methodNAT
	}
	return methodDR
}

// serviceKeyOf reverses svcKey.
func serviceKeyOf(k lbSvcKey) (director.ServiceKey, bool) {
	addr, ok := addrOf(k.Family, k.Addr)
	return director.ServiceKey{VIP: addr, Port: ntohs(k.Port), Proto: director.Proto(k.Proto)}, ok
}

// addrOf reverses addrKey.
func addrOf(family uint8, b [16]uint8) (netip.Addr, bool) {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4])), true
	case afInet6:
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// ntohs reverses htons.
func ntohs(v uint16) uint16 { return htons(v) }

// Attachments lists the interfaces the program is attached to, by ifindex.
func (l *Loader) Attachments() []Attachment {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Attachment, 0, len(l.life.modes))
	for _, a := range l.life.modes {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Attachment) int { return a.Ifindex - b.Ifindex })
	return out
}

// PinDir is the directory holding the pinned maps and links as this process reaches it, "" when
// nothing is pinned.
func (l *Loader) PinDir() string { return l.life.dir }

// Adopted reports whether New took over a data plane a previous process left pinned.
func (l *Loader) Adopted() bool { return l.life.adopted }

// release closes what New opened for pinning and removes a temporary directory not yet renamed
// into place; with remove, it also deletes the pin directory, once it is ours (after the links
// were unpinned and closed, which detached them).
func (lc *lifecycle) release(remove bool) error {
	var errs []error
	if lc.tmp != "" {
		errs = append(errs, os.RemoveAll(lc.tmp))
		lc.tmp = ""
	} else if remove && lc.dir != "" {
		if err := os.RemoveAll(lc.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove pin directory: %w", err))
		}
	}
	if lc.lock != nil {
		errs = append(errs, lc.lock.Close())
		lc.lock = nil
	}
	return errors.Join(errs...)
}
