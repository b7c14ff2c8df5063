package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults keepalived applies when the configuration leaves a value out.
const (
	DefaultAdvertInterval   = time.Second
	DefaultGARPMasterDelay  = 5 * time.Second
	DefaultGARPMasterRepeat = 5
)

// ErrAuthAH is returned for `auth_type AH`: IPsec AH authentication was removed from VRRP
// by RFC 3768 and is not implemented.
var ErrAuthAH = errors.New("vrrp: auth_type AH is not supported (removed by RFC 3768); use PASS or none")

// ErrRunTwice is returned by a second call of Run: an Instance runs once.
var ErrRunTwice = errors.New("vrrp: instance already run")

// ErrNotRunning is returned by SetPriority when the instance's Run has returned or does not
// take the change in time.
var ErrNotRunning = errors.New("vrrp: instance not running")

// Config is one vrrp_instance.
type Config struct {
	// Name is the instance name, reported in every Event.
	Name string
	// Interface is the link adverts are sent and received on and VIPs are added to.
	Interface string
	// VRID is virtual_router_id, 1-255.
	VRID uint8
	// Priority is 1-255 (255: the address owner, master at once).
	Priority uint8
	// AdvertInterval is advert_int: whole seconds for version 2, centiseconds for 3.
	AdvertInterval time.Duration
	// Version is vrrp_version, 2 or 3; IPv6 needs 3.
	Version int
	// StartMaster becomes master at start without waiting Master_Down_Interval. It is NOT
	// keepalived 2.x's `state MASTER`, which changes nothing unless priority is 255 (the
	// owner, master at start anyway): map `state` to false.
	StartMaster bool
	// NoPreempt and PreemptDelay are nopreempt and preempt_delay.
	NoPreempt    bool
	PreemptDelay time.Duration
	// AuthType is "" or "PASS" ("AH" is refused); AuthPass is auth_pass, of which the first
	// 8 bytes are sent and checked, as keepalived does. VRRPv3 has no authentication: both
	// are ignored with version 3, again as keepalived does.
	AuthType string
	AuthPass string
	// VIPs are the virtual addresses, all of one family (a bare address is a /32 or /128).
	VIPs []netip.Prefix
	// ExcludedVIPs are virtual_ipaddress_excluded: added, announced and removed with the
	// VIPs, but not carried in adverts nor compared with a received advert's address list.
	// They may be of either family.
	ExcludedVIPs []netip.Prefix
	// VIPOptions are the virtual_ipaddress options (brd, dev, scope, label) of the VIPs and
	// ExcludedVIPs that have any, by address.
	VIPOptions map[netip.Addr]VIPOptions
	// UnicastSrc is unicast_src_ip; unset: the first IPv4 address of the interface, or its
	// IPv6 link-local address.
	UnicastSrc netip.Addr
	// UnicastPeers are unicast_peer; empty: multicast to McastGroup (or FAULT with
	// UnicastFaultNoPeer).
	UnicastPeers []netip.Addr
	// UnicastPeerTTL is unicast_peer's min_ttl/max_ttl: adverts from a peer listed here whose
	// TTL / hop limit is outside its range are dropped (ReasonPeerTTL). A peer with a range
	// turns on CheckUnicastSrc, as keepalived does.
	UnicastPeerTTL map[netip.Addr]TTLRange
	// CheckUnicastSrc is check_unicast_src (or global vrrp_check_unicast_src): unicast
	// adverts from a source that is not a unicast peer are dropped (ReasonPeer). Without it
	// they are accepted, as keepalived accepts them.
	CheckUnicastSrc bool
	// UnicastFaultNoPeer is unicast_fault_no_peer: the instance was configured for unicast,
	// so with no UnicastPeers it stays in FAULT instead of falling back to multicast.
	UnicastFaultNoPeer bool
	// UnicastTTL is unicast_ttl: the TTL / hop limit of adverts sent to unicast peers, 1-255;
	// 0 means 255.
	UnicastTTL int
	// McastGroup is the multicast group adverts are sent to and accepted from: mcast_dst_ip,
	// else global_defs vrrp_mcast_group4/6; unset: 224.0.0.18 / ff02::12. IPv6 groups must be
	// link-local (ffX2::/16). Unused with UnicastPeers.
	McastGroup netip.Addr
	// GARPMasterDelay, GARPMasterRepeat and GARPMasterRefresh are garp_master_delay (second
	// burst after becoming master; 0: none), garp_master_repeat (announcements per address
	// per burst; 0: DefaultGARPMasterRepeat) and garp_master_refresh (0: off).
	GARPMasterDelay   time.Duration
	GARPMasterRepeat  int
	GARPMasterRefresh time.Duration
	// UseVMAC is use_vmac: the VIPs go on a macvlan (private mode) of Interface named VMACName
	// (default "vrrp.VRID") with the MAC 00:00:5e:00:01:VRID, created at start and removed at
	// stop, so clients keep one MAC for the VIPs whichever node is master. Adverts and
	// gratuitous ARPs are sent from it, or adverts from Interface with VMACXmitBase
	// (vmac_xmit_base). IPv4 only for now.
	UseVMAC      bool
	VMACName     string
	VMACXmitBase bool
	// HigherPrioSendAdvert is higher_prio_send_advert: send one advert before yielding to a
	// higher-priority master, which then re-announces the VIPs (heals split brain's ARP caches).
	HigherPrioSendAdvert bool

	// TrackInterfaces, TrackScripts and TrackFiles change the effective priority or put the
	// instance in FAULT (see EffectivePriority). With Sync set their weights are forced to 0
	// (a failure faults the instance), as keepalived forces them for sync group members.
	TrackInterfaces []TrackInterface
	TrackScripts    []TrackScript
	TrackFiles      []TrackFile
	// TrackBFDs are track_bfd entries, whose sessions BFDState reports.
	TrackBFDs []TrackBFD
	// BFDState reports the named BFD session's state (ok false: no such session, taken as
	// down); required with TrackBFDs. The director passes its bfd_instances' sessions.
	BFDState func(name string) (up, ok bool)
	// DontTrackPrimary is dont_track_primary: the instance's own interface going down does
	// not put it in FAULT (tracked interfaces still do).
	DontTrackPrimary bool
	// TrackFilePoll is how often track files are read; 0 means DefaultTrackFilePoll.
	TrackFilePoll time.Duration
	// TrackBFDPoll is how often the tracked BFD sessions' states are read; 0 means
	// DefaultTrackBFDPoll.
	TrackBFDPoll time.Duration
	// Sync is the vrrp_sync_group the instance belongs to; nil: none.
	Sync *SyncGroup

	// Logger receives errors and transitions; nil discards them.
	Logger *slog.Logger
	// Seams for tests; nil means the real thing opened by New in the calling thread's network
	// namespace.
	Clock     Clock
	Netlink   Netlink
	Conn      PacketConn
	Announcer Announcer
	// RunScript runs a vrrp_script once; nil runs it as health.MiscCheck does: without a
	// shell, as its user, killed with its process group at its timeout.
	RunScript func(ctx context.Context, s TrackScript) error
}

// DefaultTrackBFDPoll is how often tracked BFD sessions are read: keepalived's BFD process
// tells its VRRP process at once; a session's state is read from memory, so often is cheap.
const DefaultTrackBFDPoll = 20 * time.Millisecond

// DefaultTrackFilePoll is how often track files are read. keepalived follows them with
// inotify; Sluice polls, so a change takes effect within this time.
const DefaultTrackFilePoll = time.Second

// TTLRange is a unicast peer's accepted TTL / hop limit range, Min..Max inclusive.
type TTLRange struct {
	Min, Max int
}

// Event reports a state transition of an instance.
type Event struct {
	Instance string
	State    State
	Prev     State
	At       time.Time
	// VIPs are the instance's virtual addresses, held by this node while State is Master.
	VIPs []netip.Prefix
	// Priority is the effective priority (the configured one changed by tracking). An Event
	// with State == Prev reports a change of effective priority alone.
	Priority uint8
}

// Reason says why a received packet was dropped.
type Reason string

// Drop reasons, one per receive check of RFC 3768 / RFC 5798 section 7.1 and keepalived's
// unicast peer check.
const (
	ReasonTTL       Reason = "ttl"        // multicast TTL / hop limit not 255
	ReasonTruncated Reason = "truncated"  // shorter than its header and address count
	ReasonLength    Reason = "length"     // longer than its address count says
	ReasonVersion   Reason = "version"    // not our VRRP version
	ReasonType      Reason = "type"       // not an advertisement
	ReasonChecksum  Reason = "checksum"   // bad checksum (VRRPv3: with pseudo-header)
	ReasonFamily    Reason = "family"     // addresses not of our family
	ReasonVRID      Reason = "vrid"       // another virtual router
	ReasonAuthType  Reason = "auth_type"  // VRRPv2 authentication type differs
	ReasonAuth      Reason = "auth"       // VRRPv2 password differs
	ReasonInterval  Reason = "interval"   // VRRPv2 interval differs, VRRPv3 interval 0
	ReasonAddresses Reason = "addresses"  // address list differs (and not from the owner)
	ReasonOwner     Reason = "owner"      // we own the addresses: adverts are not for us
	ReasonPeer      Reason = "peer"       // source is not a unicast_peer (check_unicast_src)
	ReasonPeerTTL   Reason = "peer_ttl"   // unicast TTL outside the peer's min_ttl..max_ttl
	ReasonGroup     Reason = "group"      // multicast to another group than ours
	ReasonSelf      Reason = "self"       // our own advert looped back
	ReasonOther     Reason = "unexpected" // anything else Unmarshal refused
)

// Stats are an instance's counters.
type Stats struct {
	// Received counts adverts that passed every check.
	Received uint64
	// Sent counts adverts sent (one per destination), releases included.
	Sent uint64
	// Dropped counts refused packets by reason.
	Dropped map[Reason]uint64
	// Transitions counts state changes.
	Transitions uint64
	// Errors counts failed sends, address changes and announcements.
	Errors uint64
	// Master is the current master's address as this instance knows it: its own while it is
	// MASTER, else the source of the last accepted advert (zero after a release or none yet).
	Master netip.Addr
}

// Instance is one running virtual router.
type Instance struct {
	cfg    Config
	fsm    *FSM
	clock  Clock
	conn   PacketConn
	ann    Announcer
	nl     Netlink
	link   netlink.Link // Interface, followed for FAULT
	vipIf  netlink.Link // where the VIPs go: Interface, or the VMAC
	log    *slog.Logger
	src    netip.Addr
	dsts   []netip.Addr
	group  netip.Addr   // multicast group; unset with unicast peers
	vips   []netip.Addr // in adverts
	places []vip        // VIPs then ExcludedVIPs, where they go and are announced
	// vipName is the VIPs' interface (Interface, or the VMAC); anns the announcers opened, by
	// interface and family, reused by SetVIPs.
	vipName string
	anns    map[annKey]Announcer
	auth    [AuthDataLen]byte
	events  chan Event
	// linkUpdates follows the interface; nil with an injected Netlink seam.
	linkUpdates chan netlink.LinkUpdate

	running   atomic.Bool
	closeOnce sync.Once
	closers   []io.Closer

	// Tracking, owned by Run's goroutine: tracks[i] follows TrackInterfaces, then
	// TrackScripts, then TrackFiles, in order.
	tracks      []Track
	scripts     []ScriptStatus
	trackLinks  map[int]int // tracked interface index -> track
	linkDown    bool        // the instance's own interface
	ownFault    bool        // linkDown or a track
	syncSeen    uint64      // the sync group order last acted on
	syncForcing bool        // the current transition is the sync group's order

	// setPrio carries SetPriority's new configured priority to Run, setVIPs SetVIPs' addresses;
	// finished closes when Run returns.
	setPrio  chan uint8
	setVIPs  chan vipChange
	finished chan struct{}
	isOwner  bool // configured with 255, which SetPriority never changes

	mu    sync.Mutex
	state State
	prio  uint8
	stats Stats
}

// New validates cfg and opens the instance's sockets and netlink handle in the calling
// thread's network namespace. Run it with Run; Close it if Run is never called.
func New(cfg Config) (*Instance, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("vrrp instance %s: %w", cfg.Name, err)
	}
	in := &Instance{cfg: cfg, clock: cfg.Clock, conn: cfg.Conn, ann: cfg.Announcer, nl: cfg.Netlink,
		log: cfg.Logger, events: make(chan Event, 16), prio: cfg.Priority,
		setPrio: make(chan uint8), setVIPs: make(chan vipChange), finished: make(chan struct{}),
		isOwner: cfg.Priority == PriorityOwner}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	if in.clock == nil {
		in.clock = systemClock{}
	}
	copy(in.auth[:], cfg.AuthPass)
	for _, p := range cfg.VIPs {
		in.vips = append(in.vips, p.Addr())
	}
	v4 := cfg.VIPs[0].Addr().Is4()
	in.src = cfg.UnicastSrc
	if !in.src.IsValid() {
		var err error
		if in.src, err = primaryAddr(cfg.Interface, v4); err != nil {
			return nil, fmt.Errorf("vrrp instance %s: %w", cfg.Name, err)
		}
	}
	in.dsts = cfg.UnicastPeers
	if len(in.dsts) == 0 {
		in.group = cfg.McastGroup // validated
		in.dsts = []netip.Addr{in.group}
	}
	if err := in.open(v4); err != nil {
		in.Close()
		return nil, fmt.Errorf("vrrp instance %s: %w", cfg.Name, err)
	}
	in.fsm = NewFSM(FSMConfig{
		Version: cfg.Version, Priority: cfg.Priority, Interval: cfg.AdvertInterval,
		StartMaster: cfg.StartMaster, NoPreempt: cfg.NoPreempt, PreemptDelay: cfg.PreemptDelay,
		Primary: in.src, GARPDelay: cfg.GARPMasterDelay, GARPRefresh: cfg.GARPMasterRefresh,
		HigherPrioSendAdvert: cfg.HigherPrioSendAdvert, Synced: cfg.Sync != nil,
	})
	in.initTracks()
	return in, nil
}

func (in *Instance) open(v4 bool) error {
	if in.nl == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		in.nl = h
		in.closers = append(in.closers, closerFunc(func() error { h.Close(); return nil }))
		// keepalived's FAULT state: follow the interface going down and up.
		ch, done := make(chan netlink.LinkUpdate, 16), make(chan struct{})
		var closing atomic.Bool
		err = netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				if !closing.Load() { // closing the subscription makes its read fail
					in.log.Error("vrrp: link updates", "instance", in.cfg.Name, "err", err)
				}
			},
		})
		if err != nil {
			return fmt.Errorf("subscribe to link updates: %w", err)
		}
		in.linkUpdates = ch
		in.closers = append(in.closers, closerFunc(func() error {
			closing.Store(true)
			close(done)
			go func() { // the subscription blocks sending until it sees done
				for range ch {
				}
			}()
			return nil
		}))
	}
	link, err := in.nl.LinkByName(in.cfg.Interface)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", in.cfg.Interface, err)
	}
	in.link, in.vipIf = link, link
	vipName, sockName := in.cfg.Interface, in.cfg.Interface
	if in.cfg.UseVMAC {
		v, err := createVMAC(in.nl, link, in.cfg.VMACName, VMACAddr(in.cfg.VRID, v4))
		if err != nil {
			return err
		}
		// Closed after the sockets on it (closers run in reverse).
		in.closers = append(in.closers, closerFunc(v.remove))
		in.vipIf, vipName = v.link, in.cfg.VMACName
		if !in.cfg.VMACXmitBase {
			sockName = vipName
		}
	}
	if in.conn == nil {
		c, err := ListenWith(sockName, in.src, ListenOptions{Group: in.group, UnicastTTL: in.cfg.UnicastTTL})
		if err != nil {
			return err
		}
		in.conn = c
	}
	in.closers = append(in.closers, in.conn)
	if in.ann == nil {
		var src6 netip.Addr
		if !v4 {
			if src6 = in.src; !src6.IsLinkLocalUnicast() {
				src6, _ = primaryAddr(in.cfg.Interface, false)
			}
		}
		newAnn := func() (Announcer, error) { return NewAnnouncer(vipName, v4, src6) }
		if in.cfg.UseVMAC {
			newAnn = func() (Announcer, error) { return newVMACAnnouncer(vipName) }
		}
		a, err := newAnn()
		if err != nil {
			return err
		}
		in.ann = a
	}
	in.closers = append(in.closers, in.ann)
	in.vipName, in.anns = vipName, map[annKey]Announcer{{vipName, v4}: in.ann}
	in.places, err = in.placeVIPs(in.cfg.VIPs, in.cfg.ExcludedVIPs, in.cfg.VIPOptions)
	return err
}

// annKey names an announcer: its interface and family.
type annKey struct {
	dev string
	v4  bool
}

// placeVIPs resolves where each virtual address goes (its dev, else the VIP interface) and
// what announces it there: the instance's Announcer on the VIP interface, else one opened for
// that interface and family (kept in in.anns). An injected Announcer announces every address;
// nothing is announced on a loopback interface.
func (in *Instance) placeVIPs(vips, excluded []netip.Prefix, opts map[netip.Addr]VIPOptions) ([]vip, error) {
	var places []vip
	for _, p := range append(slices.Clone(vips), excluded...) {
		o := opts[p.Addr()]
		v := vip{prefix: p, opts: o, link: in.vipIf}
		dev := in.vipName
		if o.Dev != "" && o.Dev != in.vipName {
			l, err := in.nl.LinkByName(o.Dev)
			if err != nil {
				return nil, fmt.Errorf("virtual address %s: find dev %s: %w", p, o.Dev, err)
			}
			v.link, dev = l, o.Dev
		}
		switch k := (annKey{dev, p.Addr().Is4()}); {
		case in.cfg.Announcer != nil:
			v.ann = in.ann
		case v.link.Attrs().Flags&net.FlagLoopback != 0:
		case in.anns[k] != nil:
			v.ann = in.anns[k]
		default:
			var src6 netip.Addr
			if !k.v4 {
				var err error
				if src6, err = primaryAddr(dev, false); err != nil {
					in.log.Warn("vrrp: virtual address not announced", "instance", in.cfg.Name, "addr", p, "err", err)
					break
				}
			}
			a, err := NewAnnouncer(dev, k.v4, src6)
			if err != nil {
				return nil, fmt.Errorf("virtual address %s: %w", p, err)
			}
			in.closers = append(in.closers, a)
			in.anns[k], v.ann = a, a
		}
		places = append(places, v)
	}
	return places, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// Close releases the sockets; Run does it when it returns.
func (in *Instance) Close() error {
	var errs []error
	in.closeOnce.Do(func() {
		for i := len(in.closers) - 1; i >= 0; i-- {
			errs = append(errs, in.closers[i].Close())
		}
	})
	return errors.Join(errs...)
}

func validate(c *Config) error {
	if c.Interface == "" {
		return errors.New("no interface")
	}
	if c.VRID == 0 {
		return errors.New("virtual_router_id must be 1-255")
	}
	if c.Priority == 0 {
		return errors.New("priority must be 1-255")
	}
	if c.Version == 0 {
		c.Version = 2
	}
	if c.Version != 2 && c.Version != 3 {
		return fmt.Errorf("vrrp_version %d: must be 2 or 3", c.Version)
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
	}
	if c.GARPMasterRepeat == 0 {
		c.GARPMasterRepeat = DefaultGARPMasterRepeat
	}
	if len(c.VIPs) == 0 {
		return errors.New("no virtual_ipaddress")
	}
	if len(c.VIPs) > 255 {
		return fmt.Errorf("%d virtual addresses, at most 255 fit an advert", len(c.VIPs))
	}
	v4 := c.VIPs[0].Addr().Is4()
	for _, p := range c.VIPs {
		if !p.IsValid() || p.Addr().Is4() != v4 || p.Addr().Is4In6() {
			return fmt.Errorf("virtual address %s: all must be valid and of one family", p)
		}
	}
	g, err := mcastGroup(c.McastGroup, v4)
	if err != nil {
		return err
	}
	c.McastGroup = g
	if c.UseVMAC {
		if !v4 {
			return errors.New("use_vmac with IPv6 addresses is not supported yet")
		}
		if c.VMACName == "" {
			c.VMACName = VMACName(c.VRID)
		}
	}
	for a, rg := range c.UnicastPeerTTL {
		if !slices.Contains(c.UnicastPeers, a) {
			return fmt.Errorf("min_ttl/max_ttl for %s, which is not a unicast_peer", a)
		}
		if rg.Min < 0 || rg.Max > 255 || rg.Min > rg.Max {
			return fmt.Errorf("unicast_peer %s: min_ttl %d max_ttl %d: must be 0 <= min_ttl <= max_ttl <= 255", a, rg.Min, rg.Max)
		}
		c.CheckUnicastSrc = true
	}
	if err := validateVIPOptions(c); err != nil {
		return err
	}
	if c.UnicastTTL < 0 || c.UnicastTTL > 255 {
		return fmt.Errorf("unicast_ttl %d: must be 1-255", c.UnicastTTL)
	}
	for _, ts := range c.TrackScripts {
		if len(ts.Path) == 0 {
			return fmt.Errorf("vrrp_script %s: no script", ts.Name)
		}
	}
	if len(c.TrackBFDs) > 0 && c.BFDState == nil {
		return errors.New("track_bfd without BFD sessions to follow")
	}
	c.TrackInterfaces = slices.Clone(c.TrackInterfaces)
	c.TrackScripts = slices.Clone(c.TrackScripts)
	c.TrackFiles = slices.Clone(c.TrackFiles)
	c.TrackBFDs = slices.Clone(c.TrackBFDs)
	if c.Sync != nil || c.Priority == PriorityOwner {
		// keepalived: weights of a sync group member's or an address owner's tracking are 0.
		for i := range c.TrackInterfaces {
			c.TrackInterfaces[i].Weight = 0
		}
		for i := range c.TrackScripts {
			c.TrackScripts[i].Weight = 0
		}
		for i := range c.TrackFiles {
			c.TrackFiles[i].Weight = 0
		}
		for i := range c.TrackBFDs {
			c.TrackBFDs[i].Weight = 0
		}
	}
	if !v4 && c.Version != 3 {
		return fmt.Errorf("IPv6 virtual addresses need vrrp_version 3: %w", ErrFamily)
	}
	for _, a := range append([]netip.Addr{c.UnicastSrc}, c.UnicastPeers...) {
		if a.IsValid() && a.Is4() != v4 {
			return fmt.Errorf("unicast address %s: not of the family of the virtual addresses: %w", a, ErrFamily)
		}
	}
	// Refuse now what Marshal would refuse at every advert.
	if _, err := (&Packet{Version: c.Version, Interval: c.AdvertInterval}).Marshal(familyAny(v4), familyAny(v4)); err != nil {
		return fmt.Errorf("advert_int %s: %w", c.AdvertInterval, err)
	}
	switch c.AuthType {
	case "":
		if c.AuthPass != "" && c.Version == 2 {
			c.AuthType = "PASS"
		}
	case "PASS":
		if c.AuthPass == "" && c.Version == 2 {
			return errors.New("auth_type PASS without auth_pass")
		}
	case "AH":
		return ErrAuthAH
	default:
		return fmt.Errorf("auth_type %q: must be PASS", c.AuthType)
	}
	return nil
}

func familyAny(v4 bool) netip.Addr {
	if v4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// primaryAddr returns the first IPv4 address of ifname, or its IPv6 link-local address.
func primaryAddr(ifname string, v4 bool) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := p.Addr(); v4 && ip.Is4() || !v4 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip, nil
		}
	}
	fam := "IPv4"
	if !v4 {
		fam = "IPv6 link-local"
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no %s address to send adverts from", ifname, fam)
}

// Events returns the channel transitions are reported on. It must be drained: a full channel
// holds up the instance. Run closes it when it returns.
func (in *Instance) Events() <-chan Event { return in.events }

// State returns the current state.
func (in *Instance) State() State {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

// Stats returns a copy of the counters.
func (in *Instance) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.stats
	s.Dropped = make(map[Reason]uint64, len(in.stats.Dropped))
	for k, v := range in.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

func (in *Instance) count(f func(*Stats)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f(&in.stats)
}

// setPriorityTimeout bounds how long SetPriority waits for Run to take the change.
const setPriorityTimeout = 5 * time.Second

// SetPriority changes the configured priority of a running instance, as a reload does without
// restarting it: the effective priority is recomputed with tracking and takes effect as a
// tracking change does (no state change, no advert gap). The address owner's 255 can be
// neither set nor left this way (the owner's rules differ): restart the instance instead.
func (in *Instance) SetPriority(p uint8) error {
	if p == 0 || p == PriorityOwner {
		return fmt.Errorf("vrrp instance %s: priority %d: must be 1-254 to change in place", in.cfg.Name, p)
	}
	if in.isOwner {
		return fmt.Errorf("vrrp instance %s: the address owner (priority 255) cannot change priority in place", in.cfg.Name)
	}
	t := time.NewTimer(setPriorityTimeout)
	defer t.Stop()
	select {
	case in.setPrio <- p:
		return nil
	case <-in.finished:
	case <-t.C:
	}
	return fmt.Errorf("vrrp instance %s: %w", in.cfg.Name, ErrNotRunning)
}

// vipChange is a SetVIPs request, answered on done.
type vipChange struct {
	vips, excluded []netip.Prefix
	opts           map[netip.Addr]VIPOptions
	done           chan error
}

// SetVIPs replaces the virtual addresses (virtual_ipaddress, virtual_ipaddress_excluded and
// their options) of a running instance in place, as keepalived applies a reload that changes
// them: the state is kept; a MASTER removes the addresses that went, adds and announces the new
// ones and sends an advert with the new list at once. The family may not change.
func (in *Instance) SetVIPs(vips, excluded []netip.Prefix, opts map[netip.Addr]VIPOptions) error {
	c := vipChange{vips: slices.Clone(vips), excluded: slices.Clone(excluded), opts: maps.Clone(opts), done: make(chan error, 1)}
	t := time.NewTimer(setPriorityTimeout)
	defer t.Stop()
	select {
	case in.setVIPs <- c:
		return <-c.done
	case <-in.finished:
	case <-t.C:
	}
	return fmt.Errorf("vrrp instance %s: %w", in.cfg.Name, ErrNotRunning)
}

// changeVIPs carries out SetVIPs in Run's goroutine.
func (in *Instance) changeVIPs(c vipChange) error {
	next := in.cfg
	next.VIPs, next.ExcludedVIPs, next.VIPOptions = c.vips, c.excluded, c.opts
	if err := validate(&next); err != nil {
		return fmt.Errorf("vrrp instance %s: %w", in.cfg.Name, err)
	}
	if next.VIPs[0].Addr().Is4() != in.cfg.VIPs[0].Addr().Is4() {
		return fmt.Errorf("vrrp instance %s: virtual addresses change family: restart it", in.cfg.Name)
	}
	places, err := in.placeVIPs(next.VIPs, next.ExcludedVIPs, next.VIPOptions)
	if err != nil {
		return fmt.Errorf("vrrp instance %s: %w", in.cfg.Name, err)
	}
	old := in.places
	in.cfg.VIPs, in.cfg.ExcludedVIPs, in.cfg.VIPOptions = next.VIPs, next.ExcludedVIPs, next.VIPOptions
	in.places = places
	in.vips = in.vips[:0:0]
	for _, p := range next.VIPs {
		in.vips = append(in.vips, p.Addr())
	}
	in.log.Info("vrrp virtual addresses changed in place", "instance", in.cfg.Name, "vips", in.cfg.VIPs)
	if in.fsm.State() != Master {
		return nil
	}
	gone, added := diffPlaces(old, places), diffPlaces(places, old)
	in.fail(delVIPs(in.nl, gone))
	in.fail(addVIPs(in.nl, added))
	in.send(in.fsm.Priority())
	for range in.cfg.GARPMasterRepeat {
		for _, v := range added {
			if v.ann != nil {
				in.fail(v.ann.Announce(v.prefix.Addr()))
			}
		}
	}
	return nil
}

// diffPlaces returns the addresses of a that b does not place the same way.
func diffPlaces(a, b []vip) []vip {
	var out []vip
	for _, v := range a {
		if !slices.ContainsFunc(b, func(w vip) bool {
			return w.prefix == v.prefix && w.opts == v.opts && w.link.Attrs().Name == v.link.Attrs().Name
		}) {
			out = append(out, v)
		}
	}
	return out
}

// Priority returns the effective priority: the configured one changed by tracking.
func (in *Instance) Priority() uint8 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.prio
}

// Src returns the address adverts are sent from, which breaks priority ties.
func (in *Instance) Src() netip.Addr { return in.src }

type received struct {
	b        []byte
	src, dst netip.Addr
	ttl      int
}

// maxPacket bounds a read: the largest VRRP packet (255 IPv6 addresses) and then some.
const maxPacket = 8192

// Run runs the virtual router until ctx is cancelled, then, if master, sends priority 0 and
// removes the VIPs. It returns nil after a cancel, or the socket error that stopped it. It
// closes the instance and the Events channel when it returns; an Instance runs only once.
func (in *Instance) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return fmt.Errorf("vrrp instance %s: %w", in.cfg.Name, ErrRunTwice)
	}
	defer close(in.finished)
	defer close(in.events)
	defer in.Close()

	rctx, stopReader := context.WithCancel(ctx)
	recv := make(chan received)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			buf := make([]byte, maxPacket)
			n, src, dst, ttl, err := in.conn.ReadFrom(buf)
			if err != nil {
				if rctx.Err() == nil {
					readErr <- err
				}
				return
			}
			select {
			case recv <- received{buf[:n], src, dst, ttl}:
			case <-rctx.Done():
				return
			}
		}
	}()
	stop := func() {
		stopReader()
		in.conn.Close() // unblocks ReadFrom
		wg.Wait()
	}

	trackCh := make(chan trackResult)
	in.startTracking(rctx, trackCh, &wg)
	var wake chan struct{}
	if g := in.cfg.Sync; g != nil {
		wake = make(chan struct{}, 1)
		g.join(in, wake)
		in.syncSeen, _ = g.order()
		defer g.leave(in)
	}
	now := in.clock.Now()
	in.linkDown = in.linkUpdates != nil && !linkUp(in.link)
	in.retrack(ctx, now, true)
	for {
		var timer Timer
		var tc <-chan time.Time
		if d := in.fsm.Deadline(); !d.IsZero() {
			timer = in.clock.NewTimer(d.Sub(in.clock.Now()))
			tc = timer.C()
		}
		var err error
		select {
		case <-ctx.Done():
		case err = <-readErr:
		case r := <-recv:
			now = in.clock.Now()
			if adv, reason := in.check(r); reason != "" {
				in.count(func(s *Stats) {
					if s.Dropped == nil {
						s.Dropped = make(map[Reason]uint64)
					}
					s.Dropped[reason]++
				})
			} else {
				in.count(func(s *Stats) {
					s.Received++
					s.Master = netip.Addr{}
					if adv.Priority != PriorityRelease {
						s.Master = r.src
					}
				})
				in.apply(ctx, now, in.fsm.Receive(now, adv))
			}
		case <-tc:
			now = in.clock.Now()
			in.apply(ctx, now, in.fsm.Tick(now))
		case u, ok := <-in.linkUpdates:
			if !ok {
				in.linkUpdates = nil // the subscription failed (logged): stop following the link
				break
			}
			if in.linkUpdate(u) {
				now = in.clock.Now()
				in.retrack(ctx, now, false)
			}
		case r := <-trackCh:
			if in.trackUpdate(r) {
				now = in.clock.Now()
				in.retrack(ctx, now, false)
			}
		case <-wake:
			now = in.clock.Now()
			in.syncWake(ctx, now)
		case c := <-in.setVIPs:
			c.done <- in.changeVIPs(c)
		case p := <-in.setPrio:
			in.log.Info("vrrp configured priority changed", "instance", in.cfg.Name, "from", in.cfg.Priority, "to", p)
			in.cfg.Priority = p
			now = in.clock.Now()
			in.retrack(ctx, now, false)
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil || err != nil {
			now = in.clock.Now()
			in.apply(ctx, now, in.fsm.Stop(now))
			stop()
			if err != nil {
				return fmt.Errorf("vrrp instance %s: receive: %w", in.cfg.Name, err)
			}
			return nil
		}
	}
}

// linkUp reports whether l is administratively up with carrier.
func linkUp(l netlink.Link) bool {
	f := l.Attrs().RawFlags
	return f&unix.IFF_UP != 0 && f&unix.IFF_RUNNING != 0
}

// check runs the receive checks of RFC 5798 section 7.1 (RFC 3768 section 7.1 for v2) that
// Unmarshal cannot, and returns the advert or why it is dropped.
func (in *Instance) check(r received) (Advert, Reason) {
	// Unicast adverts may cross routers: keepalived checks the TTL of multicast ones only,
	// and relies on the unicast_peer list instead.
	if len(in.cfg.UnicastPeers) == 0 && r.ttl != 255 {
		return Advert{}, ReasonTTL
	}
	if r.src == in.src {
		return Advert{}, ReasonSelf
	}
	if len(in.cfg.UnicastPeers) > 0 {
		if in.cfg.CheckUnicastSrc && !slices.Contains(in.cfg.UnicastPeers, r.src) {
			return Advert{}, ReasonPeer
		}
		if rg, ok := in.cfg.UnicastPeerTTL[r.src]; ok && (r.ttl < rg.Min || r.ttl > rg.Max) {
			return Advert{}, ReasonPeerTTL
		}
	}
	if r.src.Is4() != in.src.Is4() || !r.dst.IsValid() {
		return Advert{}, ReasonFamily
	}
	// A socket hears every group joined on the host: another group is another instance's
	// (keepalived lets instances share a VRID with different mcast_dst_ip).
	if in.group.IsValid() && r.dst.IsMulticast() && r.dst != in.group {
		return Advert{}, ReasonGroup
	}
	p, err := Unmarshal(r.b, r.src, r.dst)
	switch {
	case err == nil:
	case errors.Is(err, ErrTruncated):
		return Advert{}, ReasonTruncated
	case errors.Is(err, ErrLength):
		return Advert{}, ReasonLength
	case errors.Is(err, ErrVersion):
		return Advert{}, ReasonVersion
	case errors.Is(err, ErrType):
		return Advert{}, ReasonType
	case errors.Is(err, ErrChecksum):
		return Advert{}, ReasonChecksum
	case errors.Is(err, ErrFamily):
		return Advert{}, ReasonFamily
	default:
		return Advert{}, ReasonOther
	}
	if p.Version != in.cfg.Version {
		return Advert{}, ReasonVersion
	}
	if p.VRID != in.cfg.VRID {
		return Advert{}, ReasonVRID
	}
	if p.Version == 2 {
		want := uint8(AuthNone)
		if in.cfg.AuthType == "PASS" {
			want = AuthPass
		}
		if p.AuthType != want {
			return Advert{}, ReasonAuthType
		}
		if want == AuthPass && p.AuthData != in.auth {
			return Advert{}, ReasonAuth
		}
		if p.Interval != in.cfg.AdvertInterval {
			return Advert{}, ReasonInterval
		}
	} else if p.Interval == 0 {
		return Advert{}, ReasonInterval
	}
	if in.cfg.Priority == PriorityOwner {
		return Advert{}, ReasonOwner
	}
	if p.Priority != PriorityOwner && !sameSet(p.Addrs, in.vips) {
		return Advert{}, ReasonAddresses
	}
	return Advert{Src: r.src, Priority: p.Priority, Interval: p.Interval}, ""
}

func sameSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

// apply carries out the FSM's actions and reports a state change.
func (in *Instance) apply(ctx context.Context, now time.Time, a Actions) {
	if a.WantMaster && (in.cfg.Sync == nil || in.cfg.Sync.mayBeMaster(in)) {
		a = in.fsm.ForceMaster(now)
	}
	if a.AddVIPs {
		in.fail(addVIPs(in.nl, in.places))
	}
	if a.SendAdvert {
		in.send(in.fsm.Priority())
	}
	if a.SendRelease {
		in.send(PriorityRelease)
	}
	if a.Announce {
		for range in.cfg.GARPMasterRepeat {
			for _, v := range in.places {
				if v.ann != nil {
					in.fail(v.ann.Announce(v.prefix.Addr()))
				}
			}
		}
	}
	if a.DelVIPs {
		in.fail(delVIPs(in.nl, in.places))
	}
	st := in.fsm.State()
	in.mu.Lock()
	prev := in.state
	in.state = st
	if st != prev {
		in.stats.Transitions++
		switch {
		case st == Master:
			in.stats.Master = in.src
		case prev == Master:
			in.stats.Master = netip.Addr{}
		}
	}
	in.mu.Unlock()
	if g := in.cfg.Sync; g != nil {
		if order := g.update(in, st, prev, in.fsm.WantsMaster(), in.ownFault, !in.syncForcing); order != 0 {
			in.syncSeen = order
		}
	}
	if st == prev {
		return
	}
	in.log.Info("vrrp transition", "instance", in.cfg.Name, "from", prev, "to", st)
	in.emit(ctx, Event{Instance: in.cfg.Name, State: st, Prev: prev, At: now, VIPs: in.cfg.VIPs, Priority: in.fsm.Priority()})
}

// emit reports ev, waiting for room unless the instance is stopping.
func (in *Instance) emit(ctx context.Context, ev Event) {
	if ctx.Err() != nil {
		select { // shutting down: report if there is room, never block
		case in.events <- ev:
		default:
		}
		return
	}
	select {
	case in.events <- ev:
	case <-ctx.Done():
	}
}

func (in *Instance) fail(err error) {
	if err == nil {
		return
	}
	in.count(func(s *Stats) { s.Errors++ })
	in.log.Error("vrrp", "instance", in.cfg.Name, "err", err)
}

func (in *Instance) send(prio uint8) {
	p := Packet{Version: in.cfg.Version, VRID: in.cfg.VRID, Priority: prio, Interval: in.cfg.AdvertInterval, Addrs: in.vips}
	if in.cfg.Version == 2 && in.cfg.AuthType == "PASS" {
		p.AuthType, p.AuthData = AuthPass, in.auth
	}
	for _, dst := range in.dsts {
		b, err := p.Marshal(in.src, dst)
		if err == nil {
			err = in.conn.WriteTo(b, dst)
		}
		if err != nil {
			in.fail(err)
			continue
		}
		in.count(func(s *Stats) { s.Sent++ })
	}
}

// mcastGroup returns the multicast group of an instance: configured, or the RFC's.
func mcastGroup(configured netip.Addr, v4 bool) (netip.Addr, error) {
	switch {
	case !configured.IsValid() && v4:
		return GroupIPv4, nil
	case !configured.IsValid():
		return GroupIPv6, nil
	case configured.Is4() != v4 || !configured.IsMulticast():
		fam := "IPv6"
		if v4 {
			fam = "IPv4"
		}
		return netip.Addr{}, fmt.Errorf("multicast group %s: not an %s multicast address like the VIPs", configured, fam)
	case !v4 && !configured.IsLinkLocalMulticast():
		return netip.Addr{}, fmt.Errorf("multicast group %s: IPv6 VRRP groups must be link-local (ffX2::/16)", configured)
	}
	return configured, nil
}
