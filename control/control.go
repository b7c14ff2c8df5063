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
	// CmdExplain says what the data plane does with a packet of the flow Proto Src -> Dst.
	CmdExplain = "explain"
	// CmdRates is a status whose services and real servers carry Rates (sluice list --rate).
	CmdRates = "rates"
)

// Request is one call.
type Request struct {
	Command string `json:"command"`
	// File is the configuration a plan compares with the running one (an absolute path).
	File string `json:"file,omitempty"`
	// Proto ("tcp" or "udp"), Src and Dst name the flow an explain call asks about.
	Proto string         `json:"proto,omitempty"`
	Src   netip.AddrPort `json:"src,omitzero"`
	Dst   netip.AddrPort `json:"dst,omitzero"`
}

// PlanResult is what a reload to a candidate configuration would change.
type PlanResult struct {
	Changes []director.Change
	// Flows is the share of current flows that would move; nil when not counted.
	Flows *director.FlowShare
}

// Response answers a Request; Error is set when the call failed.
type Response struct {
	Error  string            `json:"error,omitempty"`
	Status *Status           `json:"status,omitempty"`
	Plan   []director.Change `json:"plan,omitempty"`
	// Flows answers CmdPlan: the share of current flows the reload would move; nil when the
	// data plane does not count flows.
	Flows *director.FlowShare `json:"flows,omitempty"`
	// Explain answers CmdExplain.
	Explain *Explanation `json:"explain,omitempty"`
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
	// Priority is the configured priority; EffectivePriority the one tracking made of it
	// (track_interface, track_script, track_file weights), which adverts carry.
	Priority          int `json:"priority,omitempty"`
	EffectivePriority int `json:"effective_priority,omitempty"`
	// Master is the current master's address: this node's while MASTER, else the source of
	// the last advert heard; absent when unknown.
	Master netip.Addr `json:"master,omitzero"`
	// Stats are the instance's counters; nil when the daemon does not track them.
	Stats *VRRPStats `json:"stats,omitempty"`
}

// VRRPStats are a vrrp_instance's counters since the daemon started.
type VRRPStats struct {
	// AdvertsReceived counts adverts that passed every check; AdvertsSent adverts sent.
	AdvertsReceived uint64 `json:"adverts_received"`
	AdvertsSent     uint64 `json:"adverts_sent"`
	Transitions     uint64 `json:"transitions"`
	// Errors counts failed sends, address changes and announcements.
	Errors uint64 `json:"errors"`
	// Dropped counts refused packets by reason ("ttl", "auth", "vrid", ...).
	Dropped map[string]uint64 `json:"dropped,omitempty"`
}

// Interface is a network interface the data plane is attached to.
type Interface struct {
	Name string `json:"name"`
	Mode string `json:"mode"` // e.g. "xdp native", "xdp generic"
	// Reason says why the mode is what it is: "adopted" from the previous process,
	// "--dataplane xdp-generic", or native XDP's error ("native XDP failed: ...").
	Reason string `json:"reason,omitempty"`
}

// Service is one virtual service.
type Service struct {
	Protocol    string       `json:"protocol"`         // "TCP", "UDP", "SCTP", or "FWM" for a firewall mark
	FWMark      uint32       `json:"fwmark,omitempty"` // a firewall-mark service's mark; VIP is then 0.0.0.0 or ::
	VIP         netip.Addr   `json:"vip"`
	Port        uint16       `json:"port"`
	Scheduler   string       `json:"scheduler"`
	Persistence int          `json:"persistence_timeout,omitempty"` // seconds
	Stats       *Counters    `json:"stats,omitempty"`
	Rates       *Rates       `json:"rates,omitempty"` // in a CmdRates status only
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
	// Rates are per-second traffic rates, in a CmdRates status only.
	Rates *Rates `json:"rates,omitempty"`
	// Check is the outcome of the real server's last health-check probe; nil before the
	// first one, or when the daemon does not track probes.
	Check *Check `json:"check,omitempty"`
}

// Check is one health-check probe's outcome.
type Check struct {
	At      time.Time     `json:"at"`
	Latency time.Duration `json:"latency_ns"`
	Checker string        `json:"checker"`
	Error   string        `json:"error,omitempty"`
	// Passed and Failed count the probes since the daemon started.
	Passed uint64 `json:"passed"`
	Failed uint64 `json:"failed"`
	// Reason is why health checks last took the real server down; empty while it is up.
	Reason string `json:"reason,omitempty"`
}

// Rates are traffic rates in ipvsadm's --rate terms, per second over Window: connections,
// packets and bytes. Out* stay 0 where replies bypass the director (DR, TUN).
type Rates struct {
	CPS    uint64        `json:"cps"`
	InPPS  uint64        `json:"in_pps"`
	OutPPS uint64        `json:"out_pps"`
	InBPS  uint64        `json:"in_bps"`
	OutBPS uint64        `json:"out_bps"`
	Window time.Duration `json:"window_ns"`
}

// Counters are traffic totals in ipvsadm's --stats terms.
type Counters struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_packets"`
	OutPkts  uint64 `json:"out_packets"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
	// ActiveConns and InactConns are ipvsadm's ActiveConn and InActConn columns.
	ActiveConns uint64 `json:"active_conns"`
	InactConns  uint64 `json:"inactive_conns"`
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
