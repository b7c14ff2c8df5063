package config

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults, as keepalived 2.2 applies them.
const (
	DefaultDelayLoop        = 60 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultRetry            = 1
	DefaultDelayBeforeRetry = 1 * time.Second
	DefaultWeight           = 1
	DefaultLBAlgo           = "wlc"
	DefaultLBKind           = NAT
	DefaultVRRPPriority     = 100
	DefaultVRRPState        = "BACKUP"
)

// inherited holds the checker settings that cascade virtual_server -> real_server -> checker
// (keepalived.conf(5): "the virtual server setting is the default for real servers, and the
// real server setting is the default for checkers"). nil means not set at that level.
type inherited struct {
	weight           *int
	inhibit          *bool
	connectTimeout   *time.Duration
	retry            *int
	delayBeforeRetry *time.Duration
	warmup           *time.Duration
	alpha            *bool
	virtualhost      *string
}

func pick[T any](def T, levels ...*T) T {
	for _, v := range levels {
		if v != nil {
			return *v
		}
	}
	return def
}

func ptr[T any](v T) *T { return &v }

// build maps the generic tree onto Config, recording errors and warnings on p.
func (p *parser) build(nodes []*node) *Config {
	cfg := &Config{}
	type vsKey struct {
		addr  netip.Addr
		port  uint16
		proto Protocol
	}
	seenVS := map[vsKey]Pos{}
	seenVRRP := map[string]Pos{}
	var vrrpNodes []*node
	for _, n := range nodes {
		switch n.name {
		case "global_defs":
			p.globalDefs(n, &cfg.Global)
		case "virtual_server":
			vs, ok, identified := p.virtualServer(n)
			if identified {
				// Checked even when vs has other errors, so every problem shows in one run.
				k := vsKey{vs.Addr, vs.Port, vs.Protocol}
				if first, dup := seenVS[k]; dup {
					// keepalived -t accepts this (IPVS would refuse the second service at run time).
					p.warnf(n.pos, "duplicate virtual_server %s %d %s ignored: first defined at %s", vs.Addr, vs.Port, vs.Protocol, first)
					continue
				}
				seenVS[k] = n.pos
			}
			switch {
			case ok && (vs.FWMark != 0 || vs.Group != ""):
				cfg.OtherVirtualServers = append(cfg.OtherVirtualServers, vs)
			case ok:
				cfg.VirtualServers = append(cfg.VirtualServers, vs)
			}
		case "vrrp_instance":
			vi, ok := p.vrrpInstance(n)
			if !ok {
				continue
			}
			if first, dup := seenVRRP[vi.Name]; dup {
				p.errorf(n.pos, "duplicate vrrp_instance %s: first defined at %s", vi.Name, first)
				continue
			}
			seenVRRP[vi.Name] = n.pos
			cfg.VRRPInstances = append(cfg.VRRPInstances, vi)
			vrrpNodes = append(vrrpNodes, n)
		case "vrrp_script":
			p.notYet(n, topLevelUnsupported)
			if s, ok := p.vrrpScript(n); ok {
				cfg.VRRPScripts = append(cfg.VRRPScripts, s)
			}
		case "vrrp_sync_group":
			p.notYet(n, topLevelUnsupported)
			if g, ok := p.vrrpSyncGroup(n); ok {
				cfg.VRRPSyncGroups = append(cfg.VRRPSyncGroups, g)
			}
		case "track_file", "vrrp_track_file":
			p.notYet(n, topLevelUnsupported)
			if n.name == "vrrp_track_file" {
				p.warnf(n.pos, "vrrp_track_file is the old spelling of track_file; use track_file")
			}
			if f, ok := p.trackFile(n); ok {
				cfg.TrackFiles = append(cfg.TrackFiles, f)
			}
		case "virtual_server_group":
			if g, ok := p.virtualServerGroup(n); ok {
				cfg.VirtualServerGroups = append(cfg.VirtualServerGroups, g)
			}
		case "bfd_instance":
			if b, ok := p.bfdInstance(n); ok {
				cfg.BFDInstances = append(cfg.BFDInstances, b)
			}
		case "SSL":
			p.notYet(n, topLevelUnsupported)
			cfg.SSL = p.sslBlock(n)
		default:
			p.other(n, "at the top level", topLevelUnsupported, topLevelSupported)
		}
	}
	for _, vs := range cfg.OtherVirtualServers {
		if vs.Group == "" {
			continue
		}
		found := false
		for _, g := range cfg.VirtualServerGroups {
			found = found || g.Name == vs.Group
		}
		if !found {
			// keepalived -t accepts this; the service simply has no addresses.
			p.warnf(vs.Pos, "virtual_server group %s: no virtual_server_group %s is defined, so it serves no address", vs.Group, vs.Group)
		}
	}
	p.dropUntrackedFileChecks(cfg.VirtualServers, cfg)
	p.checkBFDNames(cfg)
	p.dropUntrackedFileChecks(cfg.OtherVirtualServers, cfg)
	// Instance defaults depend on global_defs, wherever in the file it is.
	for i := range cfg.VRRPInstances {
		p.finishVRRPInstance(vrrpNodes[i], &cfg.VRRPInstances[i], &cfg.Global)
		p.resolveTracks(vrrpNodes[i], &cfg.VRRPInstances[i], cfg)
	}
	p.sortDiagnostics()
	return cfg
}

// other handles a keyword the current block does not map: a warning for known keywords and for
// unknown ones (with a suggestion), an error for syntax Sluice cannot read yet.
func (p *parser) other(n *node, where string, unsupported []string, candidates ...[]string) {
	switch {
	case contains(unsupported, n.name):
		p.warnf(n.pos, "%s parsed, not supported yet", n.name)
	case strings.HasPrefix(n.name, "$"):
		p.errorf(n.pos, "undefined parameter %s: expected a $NAME=VALUE definition before its use", quote(n.name))
	case strings.HasPrefix(n.name, "~"):
		p.errorf(n.pos, "invalid sequence %s: expected ~SEQ(var, start, step, end) or ~LST(var, values...)", quote(n.name))
	default:
		msg := sprintf("unknown keyword %s %s, ignored", quote(n.name), where)
		if s := suggest(n.name, append(candidates, unsupported)...); s != "" {
			msg += sprintf("; did you mean %s?", s)
		}
		p.warnf(n.pos, "%s", msg)
	}
}

// notYet warns that n is parsed but not acted on yet, when its keyword is in unsupported.
func (p *parser) notYet(n *node, unsupported []string) {
	if contains(unsupported, n.name) {
		p.warnf(n.pos, "%s parsed, not supported yet", n.name)
	}
}

// needBlock reports whether n has a block, recording an error when it does not.
func (p *parser) needBlock(n *node) bool {
	if !n.hasBlock {
		p.errorf(n.pos, "%s needs a block: expected '{' after it", n.name)
	}
	return n.hasBlock
}

// value returns the single argument of a `keyword VALUE` statement, recording an error when it
// is missing or a block stands in its place, and a warning for surplus arguments.
func (p *parser) value(n *node, want string) (token, bool) {
	if n.hasBlock {
		p.errorf(n.open, "%s takes a value, not a block: expected %s", n.name, want)
		return token{}, false
	}
	if len(n.args) == 0 {
		p.errorf(n.pos, "%s needs a value: expected %s", n.name, want)
		return token{}, false
	}
	p.extraArgs(n, 1)
	return n.args[0], true
}

// flag checks a `keyword [BOOL]` statement and returns its value.
func (p *parser) flag(n *node) (bool, bool) {
	if n.hasBlock {
		p.errorf(n.open, "%s takes no block: expected %s alone or with on or off", n.name, n.name)
		return false, false
	}
	if len(n.args) == 0 {
		return true, true
	}
	p.extraArgs(n, 1)
	v, err := parseBool(n.args[0].text)
	if err != nil {
		p.errorf(n.args[0].pos, "invalid %s value %s: %v", n.name, quote(n.args[0].text), err)
		return false, false
	}
	return v, true
}

// blockName reads the NAME of a `KEYWORD NAME { ... }` block; ok is false when it is missing.
func (p *parser) blockName(n *node) (name string, ok bool) {
	if len(n.args) == 0 {
		p.errorf(n.pos, "%s needs a name: expected %s NAME { ... }", n.name, n.name)
		return "", false
	}
	p.extraArgs(n, 1)
	return n.args[0].text, true
}

func (p *parser) extraArgs(n *node, max int) {
	if len(n.args) > max {
		p.warnf(n.args[max].pos, "%s takes %d value(s); extra %s and after ignored", n.name, max, n.args[max].describe())
	}
}

func (p *parser) intValue(n *node, lo, hi int64) (int64, bool) {
	want := sprintf("an integer in %d..%d", lo, hi)
	t, ok := p.value(n, want)
	if !ok {
		return 0, false
	}
	v, err := parseInt(t.text, lo, hi)
	if err != nil {
		p.errorf(t.pos, "invalid %s %s: %v", n.name, quote(t.text), err)
		return 0, false
	}
	return v, true
}

func (p *parser) timerValue(n *node, lo, hi time.Duration) (time.Duration, bool) {
	t, ok := p.value(n, sprintf("seconds in %s..%s", fmtSeconds(lo), fmtSeconds(hi)))
	if !ok {
		return 0, false
	}
	d, err := parseTimer(t.text, lo, hi)
	if err != nil {
		p.errorf(t.pos, "invalid %s %s: %v", n.name, quote(t.text), err)
		return 0, false
	}
	return d, true
}

func (p *parser) addrValue(n *node) (netip.Addr, bool) {
	t, ok := p.value(n, "an IPv4 or IPv6 address")
	if !ok {
		return netip.Addr{}, false
	}
	return p.addrArg(n.name, t)
}

func (p *parser) addrArg(what string, t token) (netip.Addr, bool) {
	a, err := parseAddr(t.text)
	if err != nil {
		p.errorf(t.pos, "invalid %s address %s: %v", what, quote(t.text), err)
		return netip.Addr{}, false
	}
	return a, true
}

func (p *parser) portArg(what string, t token, lo int64) (uint16, bool) {
	v, err := parseInt(t.text, lo, 65535)
	if err != nil {
		p.errorf(t.pos, "invalid %s %s: %v", what, quote(t.text), err)
		return 0, false
	}
	return uint16(v), true
}

// inheritable parses a keyword that may appear on virtual_server, real_server and checkers.
// It reports false when n is not one of them.
func (p *parser) inheritable(n *node, in *inherited) bool {
	switch n.name {
	case "connect_timeout":
		if d, ok := p.timerValue(n, time.Microsecond, maxConnectTimeout); ok {
			in.connectTimeout = &d
		}
	case "retry", "nb_get_retry":
		if n.name == "nb_get_retry" {
			p.warnf(n.pos, "nb_get_retry is a deprecated spelling of retry (keepalived 2.2 rejects it); use retry")
		}
		if v, ok := p.intValue(n, 0, maxRetry); ok {
			in.retry = ptr(int(v))
		}
	case "delay_before_retry":
		if d, ok := p.timerValue(n, 0, maxTimer); ok {
			in.delayBeforeRetry = &d
		}
	default:
		return false
	}
	return true
}

// lbKind parses lb_kind / lvs_method: NAT, DR, or TUN [type ipip|gue port N|gre] [csum options].
func (p *parser) lbKind(n *node) (LBKind, bool) {
	k, _, ok := p.lbKindTunnel(n)
	return k, ok
}

// lbKindTunnel is lbKind with TUN's type and checksum option.
func (p *parser) lbKindTunnel(n *node) (LBKind, Tunnel, bool) {
	var tun Tunnel
	t, ok := p.valueArgs(n, "NAT, DR or TUN")
	if !ok {
		return "", tun, false
	}
	k := LBKind(strings.ToUpper(t.text))
	switch k {
	case NAT, DR, TUN:
	default:
		p.errorf(t.pos, "invalid %s %s: expected NAT, DR or TUN", n.name, quote(t.text))
		return "", tun, false
	}
	if string(k) != t.text {
		p.warnf(t.pos, "%s %s accepted as %s; keepalived 2.2 only accepts upper case and would have used NAT", n.name, t.text, k)
	}
	rest := n.args[1:]
	if k != TUN {
		if len(rest) > 0 {
			p.warnf(rest[0].pos, "%s %s takes no options; extra %s and after ignored", n.name, k, rest[0].describe())
		}
		return k, tun, true
	}
	if len(rest) >= 1 && rest[0].text == "type" {
		if len(rest) < 2 {
			p.errorf(rest[0].pos, "%s TUN type needs a value: expected ipip, gue port N or gre", n.name)
			return "", tun, false
		}
		tun.Type = TunnelType(rest[1].text)
		switch tun.Type {
		case TunnelIPIP, TunnelGRE:
			rest = rest[2:]
		case TunnelGUE:
			if len(rest) < 4 || rest[2].text != "port" {
				p.errorf(rest[1].pos, "%s TUN type gue needs a port: expected type gue port N", n.name)
				return "", tun, false
			}
			v, err := strconv.ParseUint(rest[3].text, 10, 16)
			if err != nil || v == 0 {
				p.errorf(rest[3].pos, "invalid %s TUN gue port %s: expected 1-65535", n.name, quote(rest[3].text))
				return "", tun, false
			}
			tun.Port = uint16(v)
			rest = rest[4:]
		default:
			p.errorf(rest[1].pos, "invalid %s TUN type %s: expected ipip, gue or gre", n.name, quote(rest[1].text))
			return "", tun, false
		}
	}
	if len(rest) >= 1 {
		switch c := rest[0].text; {
		case c == "nocsum" || c == "csum" && tun.Type != "" && tun.Type != TunnelIPIP ||
			c == "remcsum" && tun.Type == TunnelGUE:
			tun.Csum = c
			if c != "nocsum" {
				p.warnf(rest[0].pos, "%s TUN %s parsed, not supported yet: Sluice sends tunnels without checksums (nocsum)", n.name, c)
			}
			rest = rest[1:]
		case c == "csum" || c == "remcsum":
			p.errorf(rest[0].pos, "%s TUN %s needs type gue%s", n.name, c, map[bool]string{true: " or gre"}[c == "csum"])
			return "", tun, false
		}
	}
	if len(rest) > 0 {
		p.warnf(rest[0].pos, "%s TUN options: extra %s and after ignored", n.name, rest[0].describe())
	}
	if tun.Type == TunnelIPIP {
		tun.Type = ""
	}
	return k, tun, true
}

// valueArgs is value for keywords whose trailing arguments the caller checks itself.
func (p *parser) valueArgs(n *node, want string) (token, bool) {
	if n.hasBlock {
		p.errorf(n.open, "%s takes a value, not a block: expected %s", n.name, want)
		return token{}, false
	}
	if len(n.args) == 0 {
		p.errorf(n.pos, "%s needs a value: expected %s", n.name, want)
		return token{}, false
	}
	return n.args[0], true
}

func (p *parser) globalDefs(n *node, g *GlobalDefs) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return
	}
	for _, c := range n.children {
		switch c.name {
		case "router_id":
			if t, ok := p.value(c, "a name for this load balancer"); ok {
				g.RouterID = t.text
			}
		default:
			if p.globalField(c, g) {
				p.notYet(c, globalDefsUnsupported)
				continue
			}
			p.other(c, "in global_defs", globalDefsUnsupported, globalDefsSupported)
		}
	}
}

// virtualServer maps a virtual_server block. identified reports whether its address, port and
// protocol are known, even if other parts are wrong, so duplicates can still be found.
func (p *parser) virtualServer(n *node) (vs VirtualServer, ok, identified bool) {
	vs = VirtualServer{Pos: n.pos}
	if len(n.args) == 0 {
		p.errorf(n.pos, "virtual_server needs an address: expected virtual_server IP [PORT] { ... }")
		p.needBlock(n)
		return vs, false, false
	}
	var addr netip.Addr
	switch a := n.args[0]; a.text {
	case "fwmark", "group":
		if len(n.args) < 2 {
			p.errorf(a.pos, "virtual_server %s needs a value: expected virtual_server %s %s", a.text, a.text,
				map[string]string{"fwmark": "MARK", "group": "NAME"}[a.text])
			p.needBlock(n)
			return vs, false, false
		}
		ok = true
		if a.text == "group" {
			vs.Group = n.args[1].text
			p.extraArgs(n, 2)
		} else {
			v, err := parseInt(n.args[1].text, 1, 4294967295)
			if err != nil {
				p.errorf(n.args[1].pos, "invalid fwmark %s: %v", quote(n.args[1].text), err)
				ok = false
			}
			vs.FWMark = uint32(v)
			if len(n.args) > 2 && (n.args[2].text == "inet" || n.args[2].text == "inet6") {
				vs.FWMarkFamily = n.args[2].text
				p.extraArgs(n, 3)
			} else {
				p.extraArgs(n, 2)
			}
		}
	default:
		addr, ok = p.addrArg("virtual_server", n.args[0])
	}
	vs.Addr = addr
	var portPos = n.pos
	byAddr := n.args[0].text != "fwmark" && n.args[0].text != "group"
	if len(n.args) > 1 && byAddr {
		portPos = n.args[1].pos
		port, pok := p.portArg("virtual_server port", n.args[1], 0)
		vs.Port = port
		ok = ok && pok
		p.extraArgs(n, 2)
	}
	if !p.needBlock(n) {
		return vs, false, false
	}
	addrPortOK := ok

	var (
		in         inherited
		rss        []realServerDraft
		protoSet   bool
		protoBad   bool
		okChildren = true
	)
	fail := func(ok bool) {
		if !ok {
			okChildren = false
		}
	}
	for _, c := range n.children {
		switch c.name {
		case "delay_loop":
			d, ok := p.timerValue(c, time.Microsecond, maxTimer)
			vs.DelayLoop = d
			fail(ok)
		case "lb_algo", "lvs_sched":
			t, ok := p.value(c, "an IPVS scheduler: "+strings.Join(ipvsSchedulers, ", "))
			if ok && !contains(ipvsSchedulers, t.text) {
				p.errorf(t.pos, "invalid %s %s: expected one of %s", c.name, quote(t.text), strings.Join(ipvsSchedulers, ", "))
				ok = false
			}
			if ok {
				vs.LBAlgo = t.text
			}
			fail(ok)
		case "lb_kind", "lvs_method":
			k, tun, ok := p.lbKindTunnel(c)
			vs.LBKind, vs.Tunnel = k, tun
			fail(ok)
		case "protocol":
			t, ok := p.value(c, "TCP, UDP or SCTP")
			if ok {
				switch strings.ToUpper(t.text) {
				case "TCP":
					vs.Protocol = TCP
				case "UDP":
					vs.Protocol = UDP
				case "SCTP":
					vs.Protocol = SCTP
				default:
					p.errorf(t.pos, "invalid protocol %s: expected TCP, UDP or SCTP", quote(t.text))
					ok = false
				}
			}
			protoSet = protoSet || ok
			protoBad = protoBad || !ok
			fail(ok)
		case "persistence_timeout":
			if len(c.args) == 0 && !c.hasBlock {
				vs.Persistence = defaultPersistence
				continue
			}
			v, ok := p.intValue(c, minPersistence, maxPersistence)
			vs.Persistence = time.Duration(v) * time.Second
			fail(ok)
		case "weight":
			v, ok := p.intValue(c, 0, maxWeight)
			in.weight = ptr(int(v))
			fail(ok)
		case "inhibit_on_failure":
			v, ok := p.flag(c)
			in.inhibit = &v
			fail(ok)
		case "real_server":
			rs, ok := p.realServer(c)
			if ok {
				rss = append(rss, rs)
			}
			fail(ok)
		default:
			if p.virtualServerExtra(c, &vs, &in, &okChildren) {
				p.notYet(c, virtualServerUnsupported)
				continue
			}
			if !p.inheritable(c, &in) {
				p.other(c, "in virtual_server", virtualServerUnsupported, virtualServerSupported)
			}
		}
	}

	// Defaults, as keepalived's validate_check_config applies them.
	if !protoSet && ok && vs.FWMark == 0 {
		p.warnf(n.pos, "virtual_server %s has no protocol: using UDP as keepalived does; add protocol TCP if that was meant", vs.service())
	}
	if vs.Protocol == "" {
		vs.Protocol = UDP
	}
	if vs.LBAlgo == "" {
		vs.LBAlgo = DefaultLBAlgo
	}
	if vs.LBKind == "" {
		vs.LBKind = DefaultLBKind
	}
	if vs.DelayLoop == 0 {
		vs.DelayLoop = DefaultDelayLoop
	}
	if vs.Quorum == 0 {
		vs.Quorum = 1
	}
	if ok && vs.Port == 0 && vs.Persistence == 0 && vs.Addr.IsValid() {
		p.errorf(portPos, "virtual_server %s has port 0: expected a port in 1..65535, or persistence_timeout for an all-ports service", vs.Addr)
		ok = false
	}
	if len(rss) == 0 && ok {
		p.warnf(n.pos, "virtual_server %s has no real servers", vs.service())
	}

	seenRS := map[netip.AddrPort]Pos{}
	for _, d := range rss {
		rs := p.resolveRealServer(&vs, d, &in)
		if !rs.Addr.IsValid() {
			continue
		}
		kind := rs.LBKind
		if kind == "" {
			kind = vs.LBKind
		}
		if vs.Addr.IsValid() && rs.Addr.Is4() != vs.Addr.Is4() && kind != TUN {
			p.errorf(d.addrPos, "real_server %s is %s but virtual_server %s is %s: expected the same family (only TUN may mix)",
				rs.Addr, family(rs.Addr), vs.Addr, family(vs.Addr))
			ok = false
			continue
		}
		k := netip.AddrPortFrom(rs.Addr, rs.Port)
		if first, dup := seenRS[k]; dup {
			p.errorf(rs.Pos, "duplicate real_server %s %d in virtual_server %s %d: first defined at %s", rs.Addr, rs.Port, vs.Addr, vs.Port, first)
			ok = false
			continue
		}
		seenRS[k] = rs.Pos
		vs.RealServers = append(vs.RealServers, rs)
	}
	return vs, ok && okChildren, addrPortOK && !protoBad && byAddr
}

// realServerDraft is a real_server before the virtual server's defaults are applied.
type realServerDraft struct {
	rs       RealServer
	addrPos  Pos
	portSet  bool
	portPos  Pos
	in       inherited
	checks   []tcpCheckDraft
	checkers []checkerDraft
}

type tcpCheckDraft struct {
	check TCPCheck
	in    inherited
}

func (p *parser) realServer(n *node) (realServerDraft, bool) {
	d := realServerDraft{rs: RealServer{Pos: n.pos}}
	if len(n.args) == 0 {
		p.errorf(n.pos, "real_server needs an address: expected real_server IP [PORT] { ... }")
		p.needBlock(n)
		return d, false
	}
	d.addrPos = n.args[0].pos
	addr, ok := p.addrArg("real_server", n.args[0])
	d.rs.Addr = addr
	if len(n.args) > 1 {
		port, pok := p.portArg("real_server port", n.args[1], 0)
		d.rs.Port, d.portSet, d.portPos = port, port != 0, n.args[1].pos
		ok = ok && pok
		p.extraArgs(n, 2)
	}
	if !p.needBlock(n) {
		return d, false
	}
	for _, c := range n.children {
		switch c.name {
		case "weight":
			v, vok := p.intValue(c, 0, maxWeight)
			d.in.weight = ptr(int(v))
			ok = ok && vok
		case "inhibit_on_failure":
			v, vok := p.flag(c)
			d.in.inhibit = &v
			ok = ok && vok
		case "lb_kind", "lvs_method":
			k, tun, vok := p.lbKindTunnel(c)
			d.rs.LBKind, d.rs.Tunnel = k, tun
			ok = ok && vok
		case "delay_loop":
			v, vok := p.timerValue(c, time.Microsecond, maxTimer)
			d.rs.DelayLoop = v
			ok = ok && vok
		case "TCP_CHECK":
			chk, cok := p.tcpCheck(c)
			if cok {
				d.checks = append(d.checks, chk)
				// The generic view. tcpCheck has reported its diagnostics; the options only
				// the generic parser validates (bind_port, warmup, ...) report theirs here.
				tmp := &parser{}
				g, gok := tmp.checker(c, KindTCP)
				if !gok {
					p.errs = append(p.errs, tmp.errs...)
					cok = false
				}
				d.checkers = append(d.checkers, g)
			}
			ok = ok && cok
		default:
			if contains(checkers, c.name) {
				// Every checker runs (health/).
				g, cok := p.checker(c, CheckerKind(c.name))
				if cok {
					d.checkers = append(d.checkers, g)
				}
				ok = ok && cok
				continue
			}
			if p.realServerExtra(c, &d) {
				p.notYet(c, realServerUnsupported)
				continue
			}
			if !p.inheritable(c, &d.in) {
				p.other(c, "in real_server", realServerUnsupported, realServerSupported, checkers)
			}
		}
	}
	return d, ok
}

func (p *parser) resolveRealServer(vs *VirtualServer, d realServerDraft, vsIn *inherited) RealServer {
	rs := d.rs
	rs.Weight = pick(DefaultWeight, d.in.weight, vsIn.weight)
	rs.InhibitOnFailure = pick(false, d.in.inhibit, vsIn.inhibit)
	kind := rs.LBKind
	if kind == "" {
		kind = vs.LBKind
	}
	// IPVS cannot change the port with DR or TUN, so keepalived resets it; NAT may map ports.
	switch {
	case !d.portSet:
		rs.Port = vs.Port
	case kind != NAT && rs.Port != vs.Port && vs.Port != 0:
		p.warnf(d.portPos, "real_server %s port %d differs from virtual_server port %d; %s cannot change ports, using %d as keepalived does",
			rs.Addr, rs.Port, vs.Port, kind, vs.Port)
		rs.Port = vs.Port
	}
	for _, c := range d.checks {
		chk := c.check
		chk.ConnectTimeout = pick(DefaultConnectTimeout, c.in.connectTimeout, d.in.connectTimeout, vsIn.connectTimeout)
		chk.Retry = pick(DefaultRetry, c.in.retry, d.in.retry, vsIn.retry)
		chk.DelayBeforeRetry = pick(DefaultDelayBeforeRetry, c.in.delayBeforeRetry, d.in.delayBeforeRetry, vsIn.delayBeforeRetry)
		rs.TCPChecks = append(rs.TCPChecks, chk)
	}
	for _, c := range d.checkers {
		rs.Checkers = append(rs.Checkers, resolveChecker(c, &rs, &d.in, vsIn, vs))
	}
	rs.Alpha = pick(false, d.in.alpha, vsIn.alpha)
	rs.Virtualhost = pick("", d.in.virtualhost, vsIn.virtualhost)
	return rs
}

func (p *parser) tcpCheck(n *node) (tcpCheckDraft, bool) {
	d := tcpCheckDraft{check: TCPCheck{Pos: n.pos}}
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return d, false
	}
	ok := true
	for _, c := range n.children {
		switch c.name {
		case "connect_ip":
			a, aok := p.addrValue(c)
			d.check.ConnectIP = a
			ok = ok && aok
		case "connect_port":
			t, vok := p.value(c, "a port in 1..65535")
			if vok {
				d.check.ConnectPort, vok = p.portArg("connect_port", t, 1)
			}
			ok = ok && vok
		case "bindto":
			a, aok := p.addrValue(c)
			d.check.BindTo = a
			ok = ok && aok
		case "delay_loop":
			v, vok := p.timerValue(c, time.Microsecond, maxTimer)
			d.check.DelayLoop = v
			ok = ok && vok
		case "alpha":
			// The generic checker view parses it (Checker.Alpha) and reports a bad value.
		default:
			if !p.inheritable(c, &d.in) {
				p.other(c, "in TCP_CHECK", tcpCheckUnsupported, tcpCheckSupported)
			}
		}
	}
	if ok && d.check.ConnectIP.IsValid() && d.check.BindTo.IsValid() && d.check.ConnectIP.Is4() != d.check.BindTo.Is4() {
		p.errorf(n.pos, "TCP_CHECK bindto %s and connect_ip %s differ in family: expected both IPv4 or both IPv6", d.check.BindTo, d.check.ConnectIP)
		ok = false
	}
	return d, ok
}

func (p *parser) vrrpInstance(n *node) (VRRPInstance, bool) {
	vi := VRRPInstance{Pos: n.pos, Priority: DefaultVRRPPriority, State: DefaultVRRPState}
	var ok bool
	vi.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return vi, false
	}
	vridSet := false
	for _, c := range n.children {
		switch c.name {
		case "interface":
			if t, vok := p.value(c, "an interface name"); vok {
				vi.Interface = t.text
			} else {
				ok = false
			}
		case "virtual_router_id":
			v, vok := p.intValue(c, 1, 255)
			vi.VirtualRouterID, vridSet = int(v), vridSet || vok
			ok = ok && vok
		case "priority":
			v, vok := p.intValue(c, 1, 255)
			if vok {
				vi.Priority = int(v)
			}
			ok = ok && vok
		case "state":
			t, vok := p.value(c, "MASTER or BACKUP")
			if vok {
				switch s := strings.ToUpper(t.text); s {
				case "MASTER", "BACKUP":
					vi.State = s
					if s != t.text {
						p.warnf(t.pos, "state %s accepted as %s; keepalived 2.2 only accepts upper case and would have used BACKUP", t.text, s)
					}
				default:
					p.errorf(t.pos, "invalid state %s: expected MASTER or BACKUP", quote(t.text))
					vok = false
				}
			}
			ok = ok && vok
		case "virtual_ipaddress":
			vips, vok := p.virtualIPAddress(c, vi.VirtualAddresses)
			vi.VirtualAddresses = vips
			ok = ok && vok
			// The detailed view; errors about addresses were reported above, option errors not.
			tmp := &parser{}
			full, _ := tmp.virtualIPs(c, nil)
			for _, e := range tmp.errs {
				if !strings.HasPrefix(e.Msg, "invalid virtual_ipaddress") && !strings.HasPrefix(e.Msg, "unexpected block") {
					p.errs = append(p.errs, e)
					ok = false
				}
			}
			vi.VIPs = append(vi.VIPs, full...)
			p.warnVIPOptions("virtual_ipaddress", full)
		default:
			if p.vrrpField(c, &vi, &ok) {
				p.notYet(c, vrrpInstanceUnsupported)
				continue
			}
			p.other(c, "in vrrp_instance", vrrpInstanceUnsupported, vrrpInstanceSupported, vrrpInstanceTyped)
		}
	}
	if !vridSet && ok {
		p.errorf(n.pos, "vrrp_instance %s has no virtual_router_id: expected virtual_router_id 1..255", vi.Name)
		ok = false
	}
	return vi, ok
}

// virtualIPAddress reads `virtual_ipaddress { ADDR[/LEN] [options...] ... }`, appending to vips.
func (p *parser) virtualIPAddress(n *node, vips []netip.Prefix) ([]netip.Prefix, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return vips, false
	}
	ok := true
	for _, c := range n.children {
		if c.hasBlock {
			p.errorf(c.open, "unexpected block in virtual_ipaddress: expected ADDRESS[/PREFIX] [options] on each line")
			ok = false
			continue
		}
		pfx, err := parseVIP(c.name)
		if err != nil {
			p.errorf(c.pos, "invalid virtual_ipaddress %s: %v", quote(c.name), err)
			ok = false
			continue
		}
		if len(vips) > 0 && vips[0].Addr().Is4() != pfx.Addr().Is4() {
			p.errorf(c.pos, "virtual_ipaddress %s is %s but %s came first: expected one family per vrrp_instance",
				pfx, family(pfx.Addr()), vips[0])
			ok = false
			continue
		}
		vips = append(vips, pfx)
	}
	return vips, ok
}

// warnVIPOptions warns once per block about the virtual_ipaddress options Sluice parses but
// does not act on (it applies brd, dev, scope, label, home, -nodad, noprefixroute and
// autojoin): peer, no_track, track_group, preferred_lft, `brd +` and `brd -`, and unknown words.
func (p *parser) warnVIPOptions(keyword string, vips []VirtualIP) {
	var opts []string
	var pos Pos
	for _, v := range vips {
		words := slices.Clone(v.Options)
		if v.Peer.IsValid() {
			words = append(words, "peer")
		}
		for _, w := range words {
			if k, _, _ := strings.Cut(w, " "); k != "brd" && k != "broadcast" {
				w = k // the option, not its value
			}
			switch w {
			case "home", "-nodad", "nodad", "noprefixroute", "autojoin":
				continue // applied as address flags
			}
			if len(opts) == 0 {
				pos = v.Pos
			}
			if !contains(opts, w) {
				opts = append(opts, w)
			}
		}
	}
	if len(opts) > 0 {
		p.warnf(pos, "%s options (%s) parsed, not supported: ignored",
			keyword, strings.Join(opts, ", "))
	}
}

// parseVIP parses ADDR or ADDR/LEN; a bare address is a host route (/32 or /128).
func parseVIP(s string) (netip.Prefix, error) {
	addrText, lenText, hasLen := strings.Cut(s, "/")
	a, err := parseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits := a.BitLen()
	if hasLen {
		v, err := parseInt(lenText, 0, int64(a.BitLen()))
		if err != nil {
			return netip.Prefix{}, sprintfErr("invalid prefix length %s: %v", quote(lenText), err)
		}
		bits = int(v)
	}
	return netip.PrefixFrom(a, bits), nil
}

type msgError string

func (e msgError) Error() string { return string(e) }

func sprintfErr(format string, args ...any) error { return msgError(sprintf(format, args...)) }

// sortDiagnostics orders errors and warnings by file (in the order files were read), line and
// column, so an include's messages sit where the include was, and each kind reads top-down.
func (p *parser) sortDiagnostics() {
	order := map[string]int{}
	rank := func(f string) int {
		if r, ok := order[f]; ok {
			return r
		}
		order[f] = len(order)
		return order[f]
	}
	less := func(a, b Pos) bool {
		if ra, rb := rank(a.File), rank(b.File); ra != rb {
			return ra < rb
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	}
	for _, f := range p.files {
		rank(f)
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return less(p.errs[i].Pos, p.errs[j].Pos) })
	sort.SliceStable(p.warns, func(i, j int) bool { return less(p.warns[i].Pos, p.warns[j].Pos) })
}
