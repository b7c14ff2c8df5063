package notify

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/config"
)

// InstanceLine is the line keepalived writes to notify_fifo and vrrp_notify_fifo for a
// vrrp_instance (kind "INSTANCE") or vrrp_sync_group ("GROUP", priority 0) entering state:
// `INSTANCE "VI_1" MASTER 100`.
func InstanceLine(kind, name, state string, priority int) string {
	return fmt.Sprintf("%s %q %s %d\n", kind, name, state, priority)
}

// RealServerLine is the line keepalived writes to notify_fifo and lvs_notify_fifo when a real
// server goes up or down: `RS [10.0.0.1]:tcp:80 [192.0.2.1]:tcp:80 UP`.
func RealServerLine(vs config.VirtualServer, rs config.RealServer, up bool) string {
	return fmt.Sprintf("RS %s %s %s\n", service(rs.Addr, rs.Port, vs.Protocol), service(vs.Addr, vs.Port, vs.Protocol), upDown(up))
}

// VirtualServerLine is the line for a virtual server gaining or losing quorum:
// `VS [192.0.2.1]:tcp:80 DOWN`.
func VirtualServerLine(vs config.VirtualServer, up bool) string {
	return fmt.Sprintf("VS %s %s\n", service(vs.Addr, vs.Port, vs.Protocol), upDown(up))
}

// service formats an address as keepalived's FMT_RS/FMT_VS do: [ADDR]:proto:PORT.
func service(a netip.Addr, port uint16, p config.Protocol) string {
	return fmt.Sprintf("[%s]:%s:%d", a, strings.ToLower(string(cmpProto(p))), port)
}

func cmpProto(p config.Protocol) config.Protocol {
	if p == "" {
		return config.UDP // keepalived's default
	}
	return p
}

func upDown(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

// fifo is an open notify FIFO. It is opened read-write and non-blocking, as keepalived does:
// opening never waits for a reader, and a write that would block (nobody reads and the pipe
// is full) fails at once and the line is dropped.
type fifo struct {
	cfg     config.NotifyFIFO
	fd      int
	created bool
	// dropping is set while lines are being dropped, so the log says it once per episode.
	dropping bool
}

// openFIFO creates the FIFO (mode 0600, owned by uid:gid when they are not -1) unless it
// exists, and opens it without following a symbolic link. Anything but a FIFO is refused.
func openFIFO(c config.NotifyFIFO, uid, gid int) (*fifo, error) {
	f := &fifo{cfg: c, fd: -1}
	switch err := unix.Mkfifo(c.Path, 0o600); {
	case err == nil:
		f.created = true
		if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
			if err := unix.Lchown(c.Path, uid, gid); err != nil {
				os.Remove(c.Path)
				return nil, fmt.Errorf("open notify fifo %s: set owner: %w", c.Path, err)
			}
		}
	case errors.Is(err, unix.EEXIST):
	default:
		return nil, fmt.Errorf("create notify fifo %s: %w", c.Path, err)
	}
	fd, err := unix.Open(c.Path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		f.remove()
		return nil, fmt.Errorf("open notify fifo %s: %w", c.Path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		f.remove()
		return nil, fmt.Errorf("open notify fifo %s: not a FIFO", c.Path)
	}
	f.fd = fd
	return f, nil
}

// write writes one line; it never blocks. Lines are shorter than PIPE_BUF, so each is
// written whole or not at all.
func (f *fifo) write(line string) error {
	_, err := unix.Write(f.fd, []byte(line))
	if errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("notify fifo %s is full: nobody reads it", f.cfg.Path)
	}
	return err
}

// close removes the FIFO if this process created it (first, so a reader looping on it
// cannot reopen it), then closes it.
func (f *fifo) close() {
	f.remove()
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}

func (f *fifo) remove() {
	if f.created {
		os.Remove(f.cfg.Path)
		f.created = false
	}
}
