package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// keptCap is a capability `sluice run` keeps after start-up, and the work that needs it.
type keptCap struct {
	bit  int
	name string
	why  string
}

// keptCaps is everything the daemon needs once its data plane is open, its sockets bound and its
// XDP program attached; docs/operating.md ("Privileges") explains each. Every other capability is
// dropped from the permitted, effective, inheritable, ambient and (with CAP_SETPCAP) bounding sets.
var keptCaps = []keptCap{
	{unix.CAP_NET_ADMIN, "cap_net_admin", "VIPs and routes over netlink, XDP attach on reload, IPVS"},
	{unix.CAP_NET_RAW, "cap_net_raw", "VRRP and ARP/NA sockets of new instances, PING_CHECK"},
	{unix.CAP_BPF, "cap_bpf", "selection tables created on apply; every bpf() call on kernels before 6.5"},
	{unix.CAP_SETUID, "cap_setuid", "scripts run as script_user"},
	{unix.CAP_SETGID, "cap_setgid", "scripts run as script_user's group"},
	{unix.CAP_KILL, "cap_kill", "killing timed-out scripts that run as another user"},
}

// capNames names the capabilities in mask, lowest first, e.g. "cap_net_admin,cap_net_raw".
func capNames(mask uint64) string {
	var names []string
	for bit := 0; bit < 64; bit++ {
		if mask&(1<<bit) == 0 {
			continue
		}
		name := "cap_" + strconv.Itoa(bit)
		for _, k := range allCapNames {
			if k.bit == bit {
				name = k.name
			}
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// allCapNames names the capabilities a daemon started as root may hold, for the log line.
var allCapNames = append([]keptCap{
	{unix.CAP_CHOWN, "cap_chown", ""}, {unix.CAP_DAC_OVERRIDE, "cap_dac_override", ""},
	{unix.CAP_DAC_READ_SEARCH, "cap_dac_read_search", ""}, {unix.CAP_FOWNER, "cap_fowner", ""},
	{unix.CAP_FSETID, "cap_fsetid", ""}, {unix.CAP_SETPCAP, "cap_setpcap", ""},
	{unix.CAP_NET_BIND_SERVICE, "cap_net_bind_service", ""}, {unix.CAP_SYS_ADMIN, "cap_sys_admin", ""},
	{unix.CAP_SYS_RESOURCE, "cap_sys_resource", ""}, {unix.CAP_PERFMON, "cap_perfmon", ""},
}, keptCaps...)

// keptMask is the bit mask of keptCaps.
func keptMask() uint64 {
	var m uint64
	for _, k := range keptCaps {
		m |= 1 << k.bit
	}
	return m
}

// capState is a process's capability sets as bit masks.
type capState struct {
	effective, permitted, inheritable uint64
}

// capGet reads the calling thread's capability sets.
func capGet() (capState, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capState{}, fmt.Errorf("reading capabilities: %w", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }
	return capState{
		effective:   join(data[0].Effective, data[1].Effective),
		permitted:   join(data[0].Permitted, data[1].Permitted),
		inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return unix.CAP_LAST_CAP
	}
	return n
}

// dropCaps drops, in every thread of the process, each capability not in keptCaps: from the
// bounding set when the process may change it (CAP_SETPCAP; under systemd the unit's
// CapabilityBoundingSet and NoNewPrivileges already bound it), then from the ambient,
// inheritable, permitted and effective sets. It logs the kept set in one line. The uid stays 0.
func dropCaps(log *slog.Logger) error {
	before, err := capGet()
	if err != nil {
		return err
	}
	keep := keptMask() & before.permitted
	bounding := "unchanged (no cap_setpcap)"
	if before.effective&(1<<unix.CAP_SETPCAP) != 0 {
		bounding = capNames(keep)
		for c := 0; c <= lastCap(); c++ {
			if keep&(1<<c) != 0 {
				continue
			}
			in, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(c), 0)
			if errno != 0 || in == 0 {
				continue
			}
			if _, _, errno := psx.Syscall6(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0, 0); errno != 0 {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, errno)
			}
		}
	}
	if _, _, errno := psx.Syscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); errno != 0 && errno != unix.EINVAL {
		return fmt.Errorf("clearing the ambient capabilities: %w", errno)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	_, _, errno := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if errno != 0 {
		return fmt.Errorf("setting capabilities to %s: %w", capNames(keep), errno)
	}
	after, err := capGet()
	if err != nil {
		return err
	}
	if after.permitted != keep || after.effective != keep || after.inheritable != 0 {
		return fmt.Errorf("capabilities after the drop are %s, want %s", capNames(after.permitted), capNames(keep))
	}
	log.Info("dropped capabilities", "kept", capNames(keep), "dropped", capNames(before.permitted&^keep), "bounding", bounding)
	return nil
}
