package loader

import (
	"errors"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestCompatibleWithoutSysAdmin checks the adoption check of the selection tables under the
// systemd unit's capabilities, which lack CAP_SYS_ADMIN: reading an inner table by id is then
// refused, and the pinned tables must still be kept rather than recreated (which would leave
// new flows without a table until the first Apply).
func TestCompatibleWithoutSysAdmin(t *testing.T) {
	l := newTestLoader(t, goldenResolver())
	apply(t, l, snap(svc(tcp80, "mh", be(beA, 1, true), be(beB, 1, true))))
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}

	errc := make(chan error, 1)
	go func() {
		// Capabilities are per thread: drop CAP_SYS_ADMIN from this one only, and let it
		// exit with the goroutine (no UnlockOSThread) so no other goroutine inherits it.
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
		var k, id uint32
		if !l.objs.SelTables.Iterate().Next(&k, &id) {
			errc <- errors.New("no selection table installed")
			return
		}
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); !errors.Is(err, unix.EPERM) {
			if m != nil {
				m.Close()
			}
			errc <- errors.New("opening a map by id without CAP_SYS_ADMIN was not refused; the test does not exercise the unit's case")
			return
		}
		errc <- compatible(spec.Maps[lbMapSelTables], l.objs.SelTables)
	}()
	if err := <-errc; err != nil {
		t.Errorf("compatible without CAP_SYS_ADMIN: %v", err)
	}
}
