package loader

import "fmt"

// Limits and flags mirrored from bpf/consts.h; consts_test.go checks that they agree.
const (
	// maxServices is MAX_SERVICES: service ids are below it.
	maxServices = 1024
	// maxBackends is MAX_BACKENDS: backend ids are below it.
	maxBackends = 4096
	// selSlots is SEL_SLOTS: outer slots of sel_tables.
	selSlots = 2 * maxServices
	// DefaultFlowTableSize is FLOW_TABLE_SIZE, the connection-table size when Options leaves it 0.
	DefaultFlowTableSize = 262144
	// hashSeed is LB_HASH_SEED, the seed of the source-address hash.
	hashSeed = 0x51c3e5eb

	// afInet is LB_AF_INET.
	afInet = 2
	// svcFlagRR is SVC_F_RR: new flows follow a per-CPU cursor instead of a source hash.
	svcFlagRR = 1 << 0
	// beFlagUp is BE_F_UP: the backend may carry flows.
	beFlagUp = 1 << 0
	// methodDR is LB_METHOD_DR.
	methodDR = 0
)

// Reason is why the XDP program returned its verdict (enum lb_reason in bpf/consts.h).
type Reason uint32

// Reasons, in the order of enum lb_reason.
const (
	// ReasonPassNotIPv4 passes ARP, IPv6, VLAN-tagged and other non-IPv4 frames.
	ReasonPassNotIPv4 Reason = iota
	// ReasonPassNotL4 passes IPv4 that is neither TCP nor UDP.
	ReasonPassNotL4
	// ReasonPassNotVIP passes packets matching no service.
	ReasonPassNotVIP
	// ReasonPassTruncated passes frames whose Ethernet, IPv4 or L4 header or datagram is cut short.
	ReasonPassTruncated
	// ReasonPassBadIP passes malformed IPv4: version, IHL, or total length below the header.
	ReasonPassBadIP
	// ReasonPassFragment passes IPv4 fragments to the kernel.
	ReasonPassFragment
	// ReasonDropNoBackend drops packets of a service without eligible backends.
	ReasonDropNoBackend
	// ReasonDropTableMiss drops packets when the maps disagree, which is a bug.
	ReasonDropTableMiss
	// ReasonTxDR forwards by DR out of the ingress interface.
	ReasonTxDR
	// ReasonRedirectDR forwards by DR out of another interface.
	ReasonRedirectDR
	// NumReasons is REASON_MAX, the number of reasons.
	NumReasons
)

var reasonNames = [...]string{
	"PASS_NOT_IPV4", "PASS_NOT_L4", "PASS_NOT_VIP", "PASS_TRUNCATED", "PASS_BAD_IP",
	"PASS_FRAGMENT", "DROP_NO_BACKEND", "DROP_TABLE_MISS", "TX_DR", "REDIRECT_DR",
}

// String returns the name the C enum gives the reason.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}
