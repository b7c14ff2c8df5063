package ipvsfallback

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
)

// fakeIPVS is an in-memory IPVS table behind the Handle seam. The unit tests use it because the
// kernels they run on usually have no IPVS (this project's CI VM has none); the real kernel is
// exercised by the tests in test/vm, which boot Debian's kernel with ip_vs under qemu. It
// enforces what the kernel enforces for the calls Sluice makes (EEXIST, ESRCH, ENOENT) and
// records every write.
type fakeIPVS struct {
	mu     sync.Mutex
	svcs   []*fakeSvc
	calls  []string
	fail   map[string]error // a write whose call string starts with the key fails once
	reads  int
	closed bool
	down   error // GetServices fails with it (no IPVS)
}

type fakeSvc struct {
	s     ipvs.Service
	dests []*ipvs.Destination
}

func svcID(s *ipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("FWM %d af=%d", s.FWMark, s.AddressFamily)
	}
	p := map[uint16]string{6: "TCP", 17: "UDP", 132: "SCTP"}[s.Protocol]
	return fmt.Sprintf("%s %s", p, net.JoinHostPort(s.Address.String(), fmt.Sprint(s.Port)))
}

func destID(d *ipvs.Destination) string {
	return net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port))
}

func fwdName(f uint32) string {
	return map[uint32]string{ipvs.ConnFwdDirectRoute: "DR", ipvs.ConnFwdTunnel: "TUN", ipvs.ConnFwdMasq: "NAT"}[f&ipvs.ConnFwdMask]
}

func (f *fakeIPVS) find(s *ipvs.Service) *fakeSvc {
	for _, fs := range f.svcs {
		if s.FWMark != 0 || fs.s.FWMark != 0 {
			// The kernel keys a firewall-mark service by mark and family alone.
			if fs.s.FWMark == s.FWMark && fs.s.AddressFamily == s.AddressFamily {
				return fs
			}
			continue
		}
		if fs.s.Protocol == s.Protocol && fs.s.Port == s.Port && fs.s.Address.Equal(s.Address) {
			return fs
		}
	}
	return nil
}

// write records call and returns the injected failure for it, if any.
func (f *fakeIPVS) write(call string) error {
	f.calls = append(f.calls, call)
	for prefix, err := range f.fail {
		if strings.HasPrefix(call, prefix) {
			delete(f.fail, prefix)
			return err
		}
	}
	return nil
}

// takeCalls returns the writes since the last call and forgets them.
func (f *fakeIPVS) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// table renders the fake's state, one line per service and per real server, sorted.
func (f *fakeIPVS) table() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, fs := range f.svcs {
		out = append(out, fmt.Sprintf("%s %s flags=%#x", svcID(&fs.s), fs.s.SchedName, fs.s.Flags))
		for _, d := range fs.dests {
			out = append(out, fmt.Sprintf("%s -> %s %s w=%d", svcID(&fs.s), destID(d), fwdName(d.ConnectionFlags), d.Weight))
		}
	}
	slices.Sort(out)
	return out
}

func (f *fakeIPVS) GetServices() ([]*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.down != nil {
		return nil, f.down
	}
	var out []*ipvs.Service
	for _, fs := range f.svcs {
		s := fs.s
		out = append(out, &s)
	}
	return out, nil
}

func (f *fakeIPVS) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.find(s)
	if fs == nil {
		return nil, syscall.ESRCH
	}
	var out []*ipvs.Destination
	for _, d := range fs.dests {
		c := *d
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeIPVS) NewService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(fmt.Sprintf("NewService %s %s af=%d mask=%#x%s", svcID(s), s.SchedName, s.AddressFamily, s.Netmask, persistCall(s))); err != nil {
		return err
	}
	if f.find(s) != nil {
		return syscall.EEXIST
	}
	c := *s
	if c.FWMark != 0 {
		// As the kernel reports it: no address, port or protocol (netlink carries none).
		c.Address, c.Port, c.Protocol = nil, 0, 0
	}
	f.svcs = append(f.svcs, &fakeSvc{s: c})
	return nil
}

func (f *fakeIPVS) UpdateService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(fmt.Sprintf("UpdateService %s %s%s", svcID(s), s.SchedName, persistCall(s))); err != nil {
		return err
	}
	fs := f.find(s)
	if fs == nil {
		return syscall.ESRCH
	}
	fs.s.SchedName, fs.s.Flags, fs.s.Timeout, fs.s.Netmask = s.SchedName, s.Flags, s.Timeout, s.Netmask
	return nil
}

func (f *fakeIPVS) DelService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("DelService " + svcID(s)); err != nil {
		return err
	}
	fs := f.find(s)
	if fs == nil {
		return syscall.ESRCH
	}
	f.svcs = slices.DeleteFunc(f.svcs, func(x *fakeSvc) bool { return x == fs })
	return nil
}

func (f *fakeIPVS) destCall(op string, s *ipvs.Service, d *ipvs.Destination) string {
	return fmt.Sprintf("%s %s -> %s %s w=%d", op, svcID(s), destID(d), fwdName(d.ConnectionFlags), d.Weight)
}

func (f *fakeIPVS) findDest(fs *fakeSvc, d *ipvs.Destination) int {
	return slices.IndexFunc(fs.dests, func(x *ipvs.Destination) bool { return x.Port == d.Port && x.Address.Equal(d.Address) })
}

func (f *fakeIPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(f.destCall("NewDest", s, d)); err != nil {
		return err
	}
	fs := f.find(s)
	if fs == nil {
		return syscall.ESRCH
	}
	if f.findDest(fs, d) >= 0 {
		return syscall.EEXIST
	}
	c := *d
	fs.dests = append(fs.dests, &c)
	return nil
}

func (f *fakeIPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(f.destCall("UpdateDest", s, d)); err != nil {
		return err
	}
	fs := f.find(s)
	if fs == nil {
		return syscall.ESRCH
	}
	i := f.findDest(fs, d)
	if i < 0 {
		return syscall.ENOENT
	}
	c := *d
	fs.dests[i] = &c
	return nil
}

func (f *fakeIPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write(fmt.Sprintf("DelDest %s -> %s", svcID(s), destID(d))); err != nil {
		return err
	}
	fs := f.find(s)
	if fs == nil {
		return syscall.ESRCH
	}
	i := f.findDest(fs, d)
	if i < 0 {
		return syscall.ENOENT
	}
	fs.dests = slices.Delete(fs.dests, i, i+1)
	return nil
}

// persistCall describes a service's flags, persistence timeout and netmask when it has any.
func persistCall(s *ipvs.Service) string {
	if s.Flags == 0 && s.Timeout == 0 {
		return ""
	}
	return fmt.Sprintf(" flags=%#x timeout=%d mask=%#x", s.Flags, s.Timeout, s.Netmask)
}

func (f *fakeIPVS) SetConfig(c *ipvs.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.write(fmt.Sprintf("SetConfig tcp=%v tcpfin=%v udp=%v", c.TimeoutTCP, c.TimeoutTCPFin, c.TimeoutUDP))
}

func (f *fakeIPVS) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}
