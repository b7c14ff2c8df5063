package director

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/config"
)

// Explainer is implemented by data planes that can say what they would do with a packet of a
// flow (sluice explain). Explain only reads state: it never creates, confirms or moves a flow.
type Explainer interface {
	Explain(proto Proto, src, dst netip.AddrPort) (Explanation, error)
}

// Where a flow was found, in Explanation.Flow.
const (
	// FlowConfirmed: in the table of established flows.
	FlowConfirmed = "confirmed"
	// FlowUnconfirmed: seen once, waiting for a second packet (a handshake's ACK).
	FlowUnconfirmed = "unconfirmed"
	// FlowNone: in no flow table; the next packet is scheduled as a new flow.
	FlowNone = "none"
)

// Selection methods, in Selection.Method.
const (
	// SelectSourceHash indexes the table with a hash of the client address (mh, sh).
	SelectSourceHash = "source hash"
	// SelectSourcePortHash indexes it with a hash of the client address and port (sh-port,
	// mh-port).
	SelectSourcePortHash = "source and port hash"
	// SelectDestHash indexes it with a hash of the destination address (dh).
	SelectDestHash = "destination hash"
	// SelectRoundRobin indexes the table with a per-CPU cursor (rr, wrr and their stand-ins).
	SelectRoundRobin = "round robin"
)

// Explanation is what a data plane does with the next packet of one flow, and why.
type Explanation struct {
	// Service is the virtual service the packet's destination matches in the data plane; nil
	// when it matches none.
	Service *ServiceKey `json:"service,omitempty"`
	// Scheduler is the configured lb_algo; Table the algorithm of the selection table
	// standing in for it (they differ for lc, wlc, sh, ...).
	Scheduler string `json:"scheduler,omitempty"`
	Table     string `json:"table,omitempty"`
	// Flow is FlowConfirmed, FlowUnconfirmed or FlowNone.
	Flow string `json:"flow,omitempty"`
	// Pinned is the real server the flow table holds for the flow, when it holds one.
	Pinned *netip.AddrPort `json:"pinned,omitempty"`
	// PinnedUsable is false when the pinned real server is down or gone: the next packet is
	// scheduled anew.
	PinnedUsable bool `json:"pinned_usable,omitempty"`
	// Idle is the time since the flow's last packet.
	Idle time.Duration `json:"idle_ns,omitempty"`
	// Selection is how a new flow would be scheduled; set when the flow table does not decide.
	Selection *Selection `json:"selection,omitempty"`
	// RealServer is where the next packet goes; nil when it is dropped, passed to the stack,
	// or (round robin) depends on the CPU that receives it.
	RealServer *netip.AddrPort `json:"real_server,omitempty"`
	// Method is how the packet reaches RealServer (DR, TUN, NAT).
	Method string `json:"method,omitempty"`
	// Verdict is what happens to the packet, in a few words: "forward", "drop", "pass".
	Verdict string `json:"verdict"`
	// Why says, step by step, how the data plane came to the verdict.
	Why []string `json:"why"`
}

// Selection is how a data plane schedules a new flow of a service.
type Selection struct {
	// Method is one of the Select constants.
	Method string `json:"method"`
	// Size is the number of entries in the selection table.
	Size int `json:"size"`
	// Hash is what the hashing methods computed; Slot = Hash % Size.
	Hash uint32 `json:"hash,omitempty"`
	// Slot is the table entry the flow maps to (hashing methods only).
	Slot int `json:"slot"`
	// Cursors are each CPU's next table entry (round robin only): the CPU that receives the
	// packet decides which one is used.
	Cursors []int `json:"cursors,omitempty"`
	// Entries are the table's first entries, at most MaxExplainEntries (round robin only).
	Entries []netip.AddrPort `json:"entries,omitempty"`
}

// MaxExplainEntries bounds Selection.Entries, so a long weighted table stays readable.
const MaxExplainEntries = 64

// TargetIDOf is TargetID for a service key and real server address, so that consumers of the
// snapshot can name the health target behind a backend.
func TargetIDOf(k ServiceKey, rs netip.AddrPort) string {
	return fmt.Sprintf("%s -> %s", k, rs)
}

// VRRPOwner is the vrrp_instance of cfg covering vip; ok is false when none does.
func VRRPOwner(cfg *config.Config, vip netip.Addr) (instance string, ok bool) {
	instance, ok = owners(cfg)[vip]
	return instance, ok
}
