package loader

import "fmt"

// Limits and flags mirrored from bpf/consts.h; consts_test.go checks that they agree.
const (
	// maxServices is MAX_SERVICES: service ids are below it.
	maxServices = 4096
	// maxBackends is MAX_BACKENDS: backend ids are below it.
	maxBackends = 16384
	// selSlots is SEL_SLOTS: outer slots of sel_tables.
	selSlots = 2 * maxServices
	// DefaultMaxServices is MAX_SERVICES, the most virtual services the data path holds when
	// Options leaves MaxServices 0.
	DefaultMaxServices = maxServices
	// DefaultMaxBackends is MAX_BACKENDS, the most real servers over all services when Options
	// leaves MaxBackends 0.
	DefaultMaxBackends = maxBackends
	// MaxServicesLimit is the largest Options.MaxServices New accepts.
	MaxServicesLimit = 1 << 20
	// MaxBackendsLimit is the largest Options.MaxBackends New accepts.
	MaxBackendsLimit = 1 << 24
	// DefaultFlowTableSize is FLOW_TABLE_SIZE, the connection-table size when Options leaves it 0.
	DefaultFlowTableSize = 262144
	// DefaultUnconfirmedTableSize is UNCONFIRMED_TABLE_SIZE, the size of the table of flows not yet
	// confirmed by a second packet, when Options leaves it 0.
	DefaultUnconfirmedTableSize = 262144
	// maxExtHdrs is MAX_EXT_HDRS: IPv6 packets with more extension headers are passed.
	maxExtHdrs = 6
	// hashSeed is LB_HASH_SEED, the seed of the source-address hash.
	hashSeed = 0x51c3e5eb

	// afInet is LB_AF_INET.
	afInet = 2
	// afInet6 is LB_AF_INET6.
	afInet6 = 10
	// svcFlagRR is SVC_F_RR: new flows follow a per-CPU cursor instead of a source hash.
	svcFlagRR = 1 << 0
	// beFlagUp is BE_F_UP: the backend may carry flows.
	beFlagUp = 1 << 0
	// beFlagNew is BE_F_NEW: the backend may take new flows (persistence templates check it).
	beFlagNew = 1 << 1
	// hashSrc is SVC_HASH_SRC: hashing services hash the client address (sh, mh).
	hashSrc = 0
	// hashSrcPort is SVC_HASH_SRC_PORT: the client address and port (sh-port, mh-port).
	hashSrcPort = 1
	// hashDst is SVC_HASH_DST: the destination address (dh).
	hashDst = 2
	// flowFlagFin is FLOW_F_FIN: the flow saw a FIN or RST.
	flowFlagFin = 1 << 0
	// persistTableSize is PERSIST_TABLE_SIZE, the number of persistence templates kept.
	persistTableSize = 65536
	// methodDR is LB_METHOD_DR.
	methodDR = 0
	// methodTUN is LB_METHOD_TUN.
	methodTUN = 1
	// methodNAT is LB_METHOD_NAT.
	methodNAT = 2
	// encapIPIP is LB_ENCAP_IPIP: TUN backends get IPIP or IP6IP6.
	encapIPIP = 0
	// encapGUE is LB_ENCAP_GUE: TUN backends get GUE over UDP to their tunnel port.
	encapGUE = 1
	// globalFlagNAT is GLOBAL_F_NAT: some backend forwards by NAT, so replies are looked up.
	globalFlagNAT = 1 << 0
)

// Reason is why the XDP program returned its verdict (enum lb_reason in bpf/consts.h).
type Reason uint32

// Reasons, in the order of enum lb_reason.
const (
	// ReasonPassNotIP passes ARP, VLAN-tagged and other frames that are neither IPv4 nor IPv6.
	ReasonPassNotIP Reason = iota
	// ReasonPassNotL4 passes IP packets that are neither TCP nor UDP.
	ReasonPassNotL4
	// ReasonPassNotVIP passes packets matching no service.
	ReasonPassNotVIP
	// ReasonPassTruncated passes frames whose Ethernet, IP, extension or L4 header or datagram is
	// cut short.
	ReasonPassTruncated
	// ReasonPassBadIP passes malformed IP: version, IHL, total length below the header, jumbograms.
	ReasonPassBadIP
	// ReasonPassFragment passes IPv4 and IPv6 fragments to the kernel.
	ReasonPassFragment
	// ReasonPassExtHdrs passes IPv6 packets with more than maxExtHdrs extension headers.
	ReasonPassExtHdrs
	// ReasonPassICMP passes an ICMP frag-needed or ICMPv6 packet-too-big error about a VIP flow
	// the tables do not hold, or whose backend is NAT (not translated yet).
	ReasonPassICMP
	// ReasonPassNoNeigh passes a TUN or NAT packet, rewritten, to the stack: the next hop has no
	// neighbour entry yet, and the stack resolves it and forwards the packet.
	ReasonPassNoNeigh
	// ReasonPassFragNeeded passes an ICMP error or NAT reply whose rewrite exceeds the route's MTU.
	ReasonPassFragNeeded
	// ReasonDropNoBackend drops packets of a service without eligible backends.
	ReasonDropNoBackend
	// ReasonDropTableMiss drops packets when the maps disagree, which is a bug.
	ReasonDropTableMiss
	// ReasonDropNoRoute drops TUN and NAT packets the FIB cannot route onward (forwarding off on
	// the ingress interface included).
	ReasonDropNoRoute
	// ReasonDropEncap drops TUN packets the frame could not be grown for.
	ReasonDropEncap
	// ReasonTxDR forwards by DR out of the ingress interface.
	ReasonTxDR
	// ReasonRedirectDR forwards by DR out of another interface.
	ReasonRedirectDR
	// ReasonTxTUN forwards by TUN out of the ingress interface.
	ReasonTxTUN
	// ReasonRedirectTUN forwards by TUN out of another interface.
	ReasonRedirectTUN
	// ReasonTxNAT forwards by NAT to the real server out of the ingress interface.
	ReasonTxNAT
	// ReasonRedirectNAT forwards by NAT to the real server out of another interface.
	ReasonRedirectNAT
	// ReasonTxNATReply sends a NAT real server's reply, translated back, out of the ingress
	// interface.
	ReasonTxNATReply
	// ReasonRedirectNATReply sends a NAT real server's reply, translated back, out of another
	// interface.
	ReasonRedirectNATReply
	// ReasonTxICMPTooBig answers a TUN or NAT packet its rewrite makes too big for the route's
	// MTU, and which may not be fragmented (IPv4 DF, IPv6), with an ICMP frag-needed or
	// packet-too-big from the VIP.
	ReasonTxICMPTooBig
	// ReasonPassToFragment passes a TUN or NAT packet too big for the route's MTU, IPv4 without
	// DF, to the stack rewritten (TUN: DF clear); the stack fragments it.
	ReasonPassToFragment
	// NumReasons is REASON_MAX, the number of reasons.
	NumReasons
)

var reasonNames = [...]string{
	"PASS_NOT_IP", "PASS_NOT_L4", "PASS_NOT_VIP", "PASS_TRUNCATED", "PASS_BAD_IP",
	"PASS_FRAGMENT", "PASS_EXT_HDRS", "PASS_ICMP", "PASS_NO_NEIGH", "PASS_FRAG_NEEDED", "DROP_NO_BACKEND",
	"DROP_TABLE_MISS", "DROP_NO_ROUTE", "DROP_ENCAP", "TX_DR", "REDIRECT_DR", "TX_TUN", "REDIRECT_TUN",
	"TX_NAT", "REDIRECT_NAT", "TX_NAT_REPLY", "REDIRECT_NAT_REPLY", "TX_ICMP_TOO_BIG",
	"PASS_TO_FRAGMENT",
}

// String returns the name the C enum gives the reason.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}
