package loader

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// withoutSysAdmin runs fn on a thread without CAP_SYS_ADMIN, as the systemd unit runs the
// daemon, and returns its error. Capabilities are per thread: the thread drops it alone and
// exits with the goroutine (no UnlockOSThread), so no other goroutine inherits it.
func withoutSysAdmin(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[unix.CAP_SYS_ADMIN/32].Effective &^= 1 << (unix.CAP_SYS_ADMIN % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// tableSlots returns the sel_tables slots holding a table.
func tableSlots(t *testing.T, m *ebpf.Map) []uint32 {
	t.Helper()
	var slots []uint32
	var k, id uint32
	it := m.Iterate()
	for it.Next(&k, &id) {
		slots = append(slots, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return slots
}

// TestCompatibleWithoutSysAdmin checks the adoption check of the selection tables under the
// systemd unit's capabilities, which lack CAP_SYS_ADMIN (reading an inner table by id is then
// refused): the pinned tables of this program must still be kept rather than recreated (which
// would leave new flows without a table until the first Apply), and the probe leaves no table
// behind.
func TestCompatibleWithoutSysAdmin(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true))))
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	before := tableSlots(t, l.objs.SelTables)
	err = withoutSysAdmin(func() error {
		var k, id uint32
		if !l.objs.SelTables.Iterate().Next(&k, &id) {
			return errors.New("no selection table installed")
		}
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); !errors.Is(err, unix.EPERM) {
			if m != nil {
				m.Close()
			}
			return errors.New("opening a map by id without CAP_SYS_ADMIN was not refused; the test does not exercise the unit's case")
		}
		return compatible(spec.Maps[lbMapSelTables], l.objs.SelTables)
	})
	if err != nil {
		t.Errorf("compatible without CAP_SYS_ADMIN: %v", err)
	}
	if after := tableSlots(t, l.objs.SelTables); len(after) != len(before) || after[0] != before[0] {
		t.Errorf("slots with a table: %v after the check, %v before", after, before)
	}
}

// TestCompatibleRefusesOtherTemplate: an outer map pinned by a version whose table template
// lacked BPF_F_MMAPABLE refuses this program's tables, so it must be recreated, also without
// CAP_SYS_ADMIN, whether it holds tables or not.
func TestCompatibleRefusesOtherTemplate(t *testing.T) {
	requireBPF(t)
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	old := spec.Maps[lbMapSelTables].Copy()
	old.InnerMap.Flags &^= unix.BPF_F_MMAPABLE
	outer, err := ebpf.NewMap(old)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	for _, tables := range []int{0, 2} {
		for i := range tables {
			tmpl := old.InnerMap.Copy()
			inner, err := ebpf.NewMap(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			err = outer.Put(uint32(i), inner)
			inner.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		err := withoutSysAdmin(func() error { return compatible(spec.Maps[lbMapSelTables], outer) })
		if !errors.Is(err, ebpf.ErrMapIncompatible) || !strings.Contains(err.Error(), "refuses a table of this program's template") {
			t.Errorf("%d tables: compatible = %v, want the probe to find it incompatible", tables, err)
		}
		if got := len(tableSlots(t, outer)); got != tables {
			t.Errorf("%d tables: %d slots hold a table after the check", tables, got)
		}
	}
}
