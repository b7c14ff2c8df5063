// Package control serves Sluice's management API: newline-delimited JSON over a unix socket
// that only root may use. The socket lives in a root-only directory, and every connection's peer
// credentials are checked, so file permissions are not the only guard. The sluice CLI
// subcommands (status, list, reload) are its clients.
package control

import (
	"fmt"

	"github.com/sluice-lb/sluice/director"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultDir is the root-only directory that holds the control socket (and, later, dumps).
const DefaultDir = "/run/sluice"

// maxMessage bounds a request or response line; requests are tiny, responses hold the status.
const (
	maxRequest  = 64 << 10
	maxResponse = 64 << 20
)

// Commands understood by the server.
const (
	CmdStatus = "status"
	CmdReload = "reload"
	CmdPlan   = "plan"
)

// Request is one call.
type Request struct {
	Command string `json:"command"`
	// File is the configuration a plan compares with the running one (an absolute path).
	File string `json:"file,omitempty"`
}

// Response answers a Request; Error is set when the call failed.
type Response struct {
	Error  string            `json:"error,omitempty"`
	Status *Status           `json:"status,omitempty"`
	Plan   []director.Change `json:"plan,omitempty"`
}

// Status is the daemon's state as `sluice status` and `sluice list` show it.
type Status struct {
	Version string    `json:"version"`
	Config  string    `json:"config"`
	Started time.Time `json:"started"`
	// Applied is when the data plane last accepted the desired state; zero before the first apply.
	Applied    time.Time   `json:"applied"`
	Dataplane  string      `json:"dataplane"`
	Services   []Service   `json:"services"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Verdicts counts every packet the data plane saw by what it did and why.
	Verdicts map[string]uint64 `json:"verdicts,omitempty"`
	// VRRP is the state of each vrrp_instance, in the order they last changed.
	VRRP []VRRPInstance `json:"vrrp,omitempty"`
}

// VRRPInstance is one vrrp_instance's state.
type VRRPInstance struct {
	Name  string         `json:"name"`
	State string         `json:"state"` // INIT, BACKUP, MASTER or FAULT
	Since time.Time      `json:"since"`
	VIPs  []netip.Prefix `json:"vips"`
}

// Interface is a network interface the data plane is attached to.
type Interface struct {
	Name string `json:"name"`
	Mode string `json:"mode"` // e.g. "xdp native", "xdp generic"
}

// Service is one virtual service.
type Service struct {
	Protocol    string       `json:"protocol"` // "TCP" or "UDP"
	VIP         netip.Addr   `json:"vip"`
	Port        uint16       `json:"port"`
	Scheduler   string       `json:"scheduler"`
	Persistence int          `json:"persistence_timeout,omitempty"` // seconds
	Stats       *Counters    `json:"stats,omitempty"`
	RealServers []RealServer `json:"real_servers"`
}

// RealServer is one real server of a Service.
type RealServer struct {
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port"`
	Weight  int        `json:"weight"`
	// Forward is the method in ipvsadm's words: Route (DR), Masq (NAT), Tunnel (TUN).
	Forward string    `json:"forward"`
	Healthy bool      `json:"healthy"`
	Stats   *Counters `json:"stats,omitempty"`
}

// Counters are traffic totals in ipvsadm's --stats terms.
type Counters struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_packets"`
	OutPkts  uint64 `json:"out_packets"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
}

// SocketPath is where the daemon of the given instance listens: DefaultDir/INSTANCE.sock.
func SocketPath(instance string) string {
	return filepath.Join(DefaultDir, instance+".sock")
}

// Instance names this daemon instance after its network namespace, so one daemon per namespace
// (as in tests and containers) never collides with another: "sluice" in the host's namespace,
// the `ip netns` name when there is one, else "netns-INODE". The CLI, run in the same
// namespace, derives the same name.
func Instance() string {
	var self, host syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return "sluice"
	}
	if err := syscall.Stat("/proc/1/ns/net", &host); err == nil && host.Ino == self.Ino && host.Dev == self.Dev {
		return "sluice"
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil && st.Ino == self.Ino && st.Dev == self.Dev {
				return e.Name()
			}
		}
	}
	return fmt.Sprintf("netns-%d", self.Ino)
}
