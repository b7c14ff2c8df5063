package config

import (
	"net/netip"
	"time"
)

// VRRP defaults, as keepalived 2.2 applies them.
const (
	DefaultAdvertInt        = time.Second
	DefaultVRRPVersion      = 2
	DefaultGARPMasterDelay  = 5 * time.Second
	DefaultGARPMasterRepeat = 5
	// maxAuthPass is the length keepalived truncates auth_pass to (the VRRPv2 field size).
	maxAuthPass = 8
)

// VRRPAuth is a vrrp_instance's authentication block (VRRPv2 only).
type VRRPAuth struct {
	Type string // "PASS" or "AH"
	Pass string // at most 8 bytes, as keepalived truncates it
}

// VirtualIP is one line of virtual_ipaddress or virtual_ipaddress_excluded:
// ADDR[/LEN] [brd ADDR] [dev IF] [scope SCOPE] [label LABEL] [peer ADDR] [home] [-nodad] ...
type VirtualIP struct {
	Pos       Pos
	Prefix    netip.Prefix
	Broadcast netip.Addr // brd; zero when not set
	Dev       string     // dev; empty means the instance's interface
	Scope     string     // scope; empty means global
	Label     string
	Peer      netip.Prefix // peer; zero when not set
	// Options are the remaining flags as written (home, -nodad, noprefixroute, autojoin, no_track, track_group NAME, ...).
	Options []string
}

// UnicastPeer is one unicast_peer entry.
type UnicastPeer struct {
	Addr   netip.Addr
	MinTTL int // 0 when not set
	MaxTTL int // 0 when not set (keepalived: 255)
}

// TrackInterface is one track_interface entry; Weight 0 means a failure faults the instance.
type TrackInterface struct {
	Name    string
	Weight  int
	Reverse bool // weight N reverse: the adjustment's direction is reversed
}

// TrackRef references a vrrp_script, track_file, track_process or track_bfd by name, with an
// optional weight overriding the tracked object's own (nil when not given).
type TrackRef struct {
	Name    string
	Weight  *int
	Reverse bool
}

// Notify holds the scripts run on state changes: each the command line "PATH [ARGS]" (the
// first word of the keyword's value, quotes removed), and the `username [groupname]` that may
// follow it.
type Notify struct {
	Master  string
	Backup  string
	Fault   string
	Stop    string
	Deleted string
	Any     string // notify: called with TYPE NAME STATE PRIORITY

	MasterUser, BackupUser, FaultUser, StopUser, DeletedUser, AnyUser ScriptUser
}

// VRRPScript is a vrrp_script block.
type VRRPScript struct {
	Pos      Pos
	Name     string
	Script   string
	Interval time.Duration // default 1s
	Timeout  time.Duration // zero: the interval
	Weight   int
	Reverse  bool
	Rise     int // default 1
	Fall     int // default 1
	User     string
	Group    string
	InitFail bool
}

// VRRPSyncGroup is a vrrp_sync_group block: instances that change state together.
type VRRPSyncGroup struct {
	Pos             Pos
	Name            string
	Group           []string
	Notify          Notify
	TrackInterfaces []TrackInterface
	TrackScripts    []TrackRef
	TrackFiles      []TrackRef
	SMTPAlert       bool
}

// TrackFile is a top-level track_file (or vrrp_track_file) block.
type TrackFile struct {
	Pos      Pos
	Name     string
	File     string
	Weight   int // default 1
	Reverse  bool
	InitFile bool
}

// vrrpInstanceTyped are the vrrp_instance keywords mapped into VRRPInstance beyond the
// skeleton's; they stay in vrrpInstanceUnsupported (warned about) until VRRP runs them.
var vrrpInstanceTyped = []string{
	"accept", "advert_int", "authentication", "dont_track_primary", "garp_master_delay",
	"garp_master_refresh", "garp_master_refresh_repeat", "garp_master_repeat", "mcast_dst_ip", "mcast_src_ip",
	"no_accept", "nopreempt", "notify", "notify_backup", "notify_deleted", "notify_fault",
	"notify_master", "notify_stop", "preempt", "preempt_delay", "smtp_alert", "strict_mode",
	"track_file", "track_interface", "track_process", "track_script", "track_bfd", "higher_prio_send_advert",
	"unicast_peer", "unicast_src_ip", "unicast_ttl", "use_vmac", "version",
	"virtual_ipaddress_excluded", "vmac_xmit_base", "check_unicast_src", "unicast_fault_no_peer",
}

// vrrpField maps one vrrp_instance keyword beyond the skeleton's; false when n is not one.
func (p *parser) vrrpField(n *node, vi *VRRPInstance, ok *bool) bool {
	fail := func(good bool) {
		if !good {
			*ok = false
		}
	}
	switch n.name {
	case "advert_int":
		d, good := p.timerValue(n, 10*time.Millisecond, 255*time.Second)
		vi.AdvertInt = d
		fail(good)
	case "version":
		v, good := p.intValue(n, 2, 3)
		vi.Version = int(v)
		fail(good)
	case "nopreempt":
		p.extraArgs(n, 0)
		vi.NoPreempt = true
	case "preempt":
		p.extraArgs(n, 0)
		vi.NoPreempt = false
	case "preempt_delay":
		d, good := p.timerValue(n, 0, 1000*time.Second)
		vi.PreemptDelay = d
		fail(good)
	case "authentication":
		a, good := p.authentication(n)
		vi.Auth = a
		fail(good)
	case "virtual_ipaddress_excluded":
		vips, good := p.virtualIPs(n, nil)
		p.warnVIPOptions("virtual_ipaddress_excluded", vips)
		vi.ExcludedVIPs = append(vi.ExcludedVIPs, vips...)
		fail(good)
	case "unicast_src_ip":
		a, good := p.addrValue(n)
		vi.UnicastSrcIP = a
		fail(good)
	case "mcast_src_ip":
		a, good := p.addrValue(n)
		vi.McastSrcIP = a
		fail(good)
	case "mcast_dst_ip":
		a, good := p.addrValue(n)
		if good && (!a.IsMulticast() || a.Is6() && !a.IsLinkLocalMulticast()) {
			p.errorf(n.args[0].pos, "invalid mcast_dst_ip %s: expected an IPv4 or link-local IPv6 (ffX2::) multicast address", a)
			good = false
		}
		if good {
			vi.McastDstIP = a
		}
		fail(good)
	case "unicast_peer":
		peers, good := p.unicastPeers(n)
		vi.UnicastPeers = append(vi.UnicastPeers, peers...)
		fail(good)
	case "check_unicast_src":
		p.extraArgs(n, 0)
		vi.CheckUnicastSrc = true
	case "unicast_fault_no_peer":
		p.extraArgs(n, 0)
		vi.UnicastFaultNoPeer = true
	case "unicast_ttl":
		v, good := p.intValue(n, 1, 255)
		vi.UnicastTTL = int(v)
		fail(good)
	case "track_interface":
		t, good := p.trackInterfaces(n)
		vi.TrackInterfaces = append(vi.TrackInterfaces, t...)
		fail(good)
	case "track_script":
		t, good := p.trackRefs(n)
		vi.TrackScripts = append(vi.TrackScripts, t...)
		fail(good)
	case "track_file":
		t, good := p.trackRefs(n)
		vi.TrackFiles = append(vi.TrackFiles, t...)
		fail(good)
	case "track_process":
		t, good := p.trackRefs(n)
		vi.TrackProcesses = append(vi.TrackProcesses, t...)
		fail(good)
	case "track_bfd":
		t, good := p.trackRefs(n)
		vi.TrackBFDs = append(vi.TrackBFDs, t...)
		fail(good)
	case "garp_master_delay":
		v, good := p.intValue(n, 0, 2147483647)
		vi.GARPMasterDelay = time.Duration(v) * time.Second
		fail(good)
	case "garp_master_repeat":
		v, good := p.intValue(n, 0, 2147483647)
		vi.GARPMasterRepeat = int(v)
		fail(good)
	case "garp_master_refresh":
		v, good := p.intValue(n, 0, 2147483647)
		vi.GARPMasterRefresh = time.Duration(v) * time.Second
		fail(good)
	case "garp_master_refresh_repeat":
		v, good := p.intValue(n, 0, 2147483647)
		vi.GARPMasterRefreshRepeat = int(v)
		fail(good)
	case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted", "notify":
		fail(p.notify(n, &vi.Notify))
	case "use_vmac":
		p.extraArgs(n, 1)
		vi.UseVMAC = true
		if len(n.args) > 0 {
			vi.VMACName = n.args[0].text
		}
	case "vmac_xmit_base":
		p.extraArgs(n, 0)
		vi.VMACXmitBase = true
	case "dont_track_primary":
		p.extraArgs(n, 0)
		vi.DontTrackPrimary = true
	case "accept":
		p.extraArgs(n, 0)
		vi.Accept = ptr(true)
	case "no_accept":
		p.extraArgs(n, 0)
		vi.Accept = ptr(false)
	case "strict_mode":
		v, good := p.flag(n)
		vi.StrictMode = v
		fail(good)
	case "smtp_alert":
		v, good := p.flag(n)
		vi.SMTPAlert = v
		fail(good)
	case "higher_prio_send_advert":
		v, good := p.flag(n)
		vi.HigherPrioSendAdvert = v
		fail(good)
	default:
		return false
	}
	return true
}

// finishVRRPInstance applies the semantics keepalived applies after reading an instance, with
// the warnings keepalived logs.
func (p *parser) finishVRRPInstance(n *node, vi *VRRPInstance, g *GlobalDefs) {
	if vi.Version == 0 {
		vi.Version = g.VRRPVersion
	}
	if vi.Version == 0 {
		vi.Version = DefaultVRRPVersion
	}
	if vi.AdvertInt == 0 {
		vi.AdvertInt = DefaultAdvertInt
	}
	if vi.Version == 2 && vi.AdvertInt%time.Second != 0 {
		r := vi.AdvertInt.Round(time.Second)
		if r == 0 {
			r = time.Second
		}
		p.warnf(n.pos, "(%s) VRRPv2 advertisement interval %s must be whole seconds: rounded to %s as keepalived does", vi.Name, vi.AdvertInt, r)
		vi.AdvertInt = r
	}
	if vi.Version == 3 && vi.Auth != nil {
		p.warnf(n.pos, "(%s) VRRP version 3 does not support authentication: ignored as keepalived does", vi.Name)
		vi.Auth = nil
	}
	if vi.NoPreempt && vi.State == "MASTER" {
		p.warnf(n.pos, "(%s) nopreempt does not work with initial state MASTER: cleared as keepalived does", vi.Name)
		vi.NoPreempt = false
	}
	if vi.NoPreempt && vi.Priority == 255 {
		p.warnf(n.pos, "(%s) nopreempt is incompatible with priority 255: cleared as keepalived does", vi.Name)
		vi.NoPreempt = false
	}
	if vi.GARPMasterDelay == 0 {
		vi.GARPMasterDelay = pick(DefaultGARPMasterDelay, g.VRRPGARPMasterDelay)
	}
	if vi.GARPMasterRepeat == 0 {
		vi.GARPMasterRepeat = pick(DefaultGARPMasterRepeat, g.VRRPGARPMasterRepeat)
	}
}

func (p *parser) authentication(n *node) (*VRRPAuth, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return nil, false
	}
	a := &VRRPAuth{}
	ok := true
	for _, c := range n.children {
		switch c.name {
		case "auth_type":
			t, good := p.value(c, "PASS or AH")
			if good {
				switch t.text {
				case "PASS", "AH":
					a.Type = t.text
				default:
					p.errorf(t.pos, "invalid auth_type %s: expected PASS or AH, in upper case as keepalived requires", quote(t.text))
					good = false
				}
			}
			ok = ok && good
		case "auth_pass":
			t, good := p.value(c, "a password of up to 8 characters")
			if good {
				a.Pass = t.text
				if len(a.Pass) > maxAuthPass {
					p.warnf(t.pos, "auth_pass longer than %d characters: truncated as keepalived does", maxAuthPass)
					a.Pass = a.Pass[:maxAuthPass]
				}
			}
			ok = ok && good
		default:
			p.other(c, "in authentication", nil, []string{"auth_type", "auth_pass"})
		}
	}
	if ok && a.Type == "" {
		p.warnf(n.pos, "authentication without auth_type: ignored as keepalived does")
		return nil, true
	}
	return a, ok
}

// virtualIPs reads a virtual_ipaddress-style block into detailed entries, appending to vips.
func (p *parser) virtualIPs(n *node, vips []VirtualIP) ([]VirtualIP, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return vips, false
	}
	ok := true
	for _, c := range n.children {
		v, good := p.virtualIP(c)
		if good {
			vips = append(vips, v)
		}
		ok = ok && good
	}
	return vips, ok
}

// virtualIP parses one `ADDR[/LEN] [options]` line.
func (p *parser) virtualIP(c *node) (VirtualIP, bool) {
	v := VirtualIP{Pos: c.pos}
	if c.hasBlock {
		p.errorf(c.open, "unexpected block in %s: expected ADDRESS[/PREFIX] [options] on each line", "virtual_ipaddress")
		return v, false
	}
	pfx, err := parseVIP(c.name)
	if err != nil {
		p.errorf(c.pos, "invalid virtual_ipaddress %s: %v", quote(c.name), err)
		return v, false
	}
	v.Prefix = pfx
	args := c.args
	need := func(i int, opt string) (token, bool) {
		if i+1 >= len(args) {
			p.errorf(args[i].pos, "virtual_ipaddress option %s needs a value", opt)
			return token{}, false
		}
		return args[i+1], true
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a.text {
		case "brd", "broadcast":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			if t.text == "+" || t.text == "-" {
				v.Options = append(v.Options, "brd "+t.text)
				continue
			}
			b, good := p.addrArg("brd", t)
			if !good {
				return v, false
			}
			v.Broadcast = b
		case "dev":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			v.Dev = t.text
		case "scope":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			switch t.text {
			case "site", "link", "host", "nowhere", "global":
			default:
				if _, err := parseInt(t.text, 0, 255); err != nil {
					p.errorf(t.pos, "invalid scope %s: expected site, link, host, nowhere, global or 0..255", quote(t.text))
					return v, false
				}
			}
			v.Scope = t.text
		case "label":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			v.Label = t.text
		case "peer":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			pp, err := parseVIP(t.text)
			if err != nil {
				p.errorf(t.pos, "invalid peer %s: %v", quote(t.text), err)
				return v, false
			}
			v.Peer = pp
		case "track_group", "preferred_lft":
			t, good := need(i, a.text)
			if !good {
				return v, false
			}
			i++
			v.Options = append(v.Options, a.text+" "+t.text)
		default:
			v.Options = append(v.Options, a.text)
		}
	}
	return v, true
}

func (p *parser) unicastPeers(n *node) ([]UnicastPeer, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return nil, false
	}
	var peers []UnicastPeer
	ok := true
	for _, c := range n.children {
		if c.hasBlock {
			p.errorf(c.open, "unexpected block in unicast_peer: expected ADDRESS [min_ttl N] [max_ttl N]")
			ok = false
			continue
		}
		a, good := p.addrArg("unicast_peer", token{kind: tokWord, text: c.name, pos: c.pos})
		if !good {
			ok = false
			continue
		}
		peer := UnicastPeer{Addr: a}
		for i := 0; i < len(c.args); i++ {
			switch k := c.args[i].text; k {
			case "min_ttl", "max_ttl":
				if i+1 >= len(c.args) {
					p.errorf(c.args[i].pos, "unicast_peer %s needs a value: expected 0..255", k)
					good = false
					continue
				}
				i++
				v, err := parseInt(c.args[i].text, 0, 255)
				if err != nil {
					p.errorf(c.args[i].pos, "invalid unicast_peer %s %s: %v", k, quote(c.args[i].text), err)
					good = false
					continue
				}
				if k == "min_ttl" {
					peer.MinTTL = int(v)
				} else {
					peer.MaxTTL = int(v)
				}
			default:
				p.warnf(c.args[i].pos, "unknown unicast_peer option %s, ignored; expected min_ttl or max_ttl", quote(k))
			}
		}
		if good {
			peers = append(peers, peer)
		}
		ok = ok && good
	}
	return peers, ok
}

func (p *parser) trackInterfaces(n *node) ([]TrackInterface, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return nil, false
	}
	var out []TrackInterface
	ok := true
	for _, c := range n.children {
		t := TrackInterface{Name: c.name}
		if len(c.args) >= 2 && c.args[0].text == "weight" {
			v, err := parseSignedInt(c.args[1].text, -254, 254)
			if err != nil {
				p.errorf(c.args[1].pos, "invalid track_interface weight %s: %v", quote(c.args[1].text), err)
				ok = false
				continue
			}
			t.Weight = int(v)
			if len(c.args) >= 3 && c.args[2].text == "reverse" {
				t.Reverse = true
			}
		} else if len(c.args) > 0 {
			p.warnf(c.args[0].pos, "track_interface %s: extra %s ignored; expected weight N [reverse]", c.name, c.args[0].describe())
		}
		out = append(out, t)
	}
	return out, ok
}

// trackRefs reads `{ NAME [weight N [reverse]] ... }`.
func (p *parser) trackRefs(n *node) ([]TrackRef, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return nil, false
	}
	var out []TrackRef
	ok := true
	for _, c := range n.children {
		t := TrackRef{Name: c.name}
		args := c.args
		if len(args) >= 2 && args[0].text == "weight" {
			v, err := parseSignedInt(args[1].text, -254, 254)
			if err != nil {
				p.errorf(args[1].pos, "invalid %s weight %s: %v", n.name, quote(args[1].text), err)
				ok = false
				continue
			}
			t.Weight = ptr(int(v))
			args = args[2:]
			if len(args) > 0 && args[0].text == "reverse" {
				t.Reverse = true
				args = args[1:]
			}
		}
		if len(args) > 0 {
			p.warnf(args[0].pos, "%s %s: extra %s ignored; expected weight N [reverse]", n.name, c.name, args[0].describe())
		}
		out = append(out, t)
	}
	return out, ok
}

// notify records a notify_* script as keepalived reads it: the first word is the command line
// (quoted when it has arguments), the optional next two the user and group to run it as.
func (p *parser) notify(n *node, nt *Notify) bool {
	s, u, ok := p.script(n)
	if !ok {
		return false
	}
	switch n.name {
	case "notify_master":
		nt.Master, nt.MasterUser = s, u
	case "notify_backup":
		nt.Backup, nt.BackupUser = s, u
	case "notify_fault":
		nt.Fault, nt.FaultUser = s, u
	case "notify_stop":
		nt.Stop, nt.StopUser = s, u
	case "notify_deleted":
		nt.Deleted, nt.DeletedUser = s, u
	case "notify":
		nt.Any, nt.AnyUser = s, u
	}
	return true
}

// script reads `KEYWORD COMMAND-LINE [username [groupname]]`, the form of every notify script:
// a command line with arguments must be quoted, as in keepalived.
func (p *parser) script(n *node) (string, ScriptUser, bool) {
	t, ok := p.valueArgs(n, "a script")
	if !ok {
		return "", ScriptUser{}, false
	}
	var u ScriptUser
	if len(n.args) > 1 {
		u.User = n.args[1].text
	}
	if len(n.args) > 2 {
		u.Group = n.args[2].text
	}
	p.extraArgs(n, 3)
	return t.text, u, true
}

// vrrpScript maps a vrrp_script block.
func (p *parser) vrrpScript(n *node) (VRRPScript, bool) {
	s := VRRPScript{Pos: n.pos, Interval: time.Second, Rise: 1, Fall: 1}
	var ok bool
	s.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return s, false
	}
	for _, c := range n.children {
		switch c.name {
		case "script":
			t, good := p.valueArgs(c, "a command")
			if good {
				s.Script = t.text
				for _, a := range c.args[1:] {
					s.Script += " " + a.text
				}
			}
			ok = ok && good
		case "interval":
			d, good := p.timerValue(c, time.Microsecond, maxTimer)
			s.Interval = d
			ok = ok && good
		case "timeout":
			d, good := p.timerValue(c, time.Microsecond, maxTimer)
			s.Timeout = d
			ok = ok && good
		case "weight":
			t, good := p.valueArgs(c, "a weight in -254..254")
			if good {
				v, err := parseSignedInt(t.text, -254, 254)
				if err != nil {
					p.errorf(t.pos, "invalid weight %s: %v", quote(t.text), err)
					good = false
				}
				s.Weight = int(v)
				if len(c.args) > 1 && c.args[1].text == "reverse" {
					s.Reverse = true
				}
			}
			ok = ok && good
		case "rise", "fall":
			v, good := p.intValue(c, 1, 2147483647)
			if c.name == "rise" {
				s.Rise = int(v)
			} else {
				s.Fall = int(v)
			}
			ok = ok && good
		case "user":
			t, good := p.valueArgs(c, "a user name")
			if good {
				s.User = t.text
				if len(c.args) > 1 {
					s.Group = c.args[1].text
				}
			}
			ok = ok && good
		case "init_fail":
			p.extraArgs(c, 0)
			s.InitFail = true
		default:
			p.other(c, "in vrrp_script", nil, []string{"script", "interval", "timeout", "weight", "rise", "fall", "user", "init_fail"})
		}
	}
	if ok && s.Script == "" {
		p.warnf(n.pos, "vrrp_script %s has no script: ignored as keepalived does", s.Name)
	}
	return s, ok
}

// vrrpSyncGroup maps a vrrp_sync_group block.
func (p *parser) vrrpSyncGroup(n *node) (VRRPSyncGroup, bool) {
	g := VRRPSyncGroup{Pos: n.pos}
	var ok bool
	g.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return g, false
	}
	for _, c := range n.children {
		switch c.name {
		case "group":
			if p.needBlock(c) {
				for _, m := range c.children {
					g.Group = append(g.Group, m.name)
				}
			} else {
				ok = false
			}
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			ok = p.notify(c, &g.Notify) && ok
		case "track_interface":
			t, good := p.trackInterfaces(c)
			g.TrackInterfaces = append(g.TrackInterfaces, t...)
			ok = ok && good
		case "track_script":
			t, good := p.trackRefs(c)
			g.TrackScripts = append(g.TrackScripts, t...)
			ok = ok && good
		case "track_file":
			t, good := p.trackRefs(c)
			g.TrackFiles = append(g.TrackFiles, t...)
			ok = ok && good
		case "smtp_alert":
			v, good := p.flag(c)
			g.SMTPAlert = v
			ok = ok && good
		case "global_tracking", "sync_group_tracking_weight", "track_process", "track_bfd":
			p.warnf(c.pos, "%s parsed, not supported yet", c.name)
		default:
			p.other(c, "in vrrp_sync_group", nil, []string{"group", "notify_master", "notify_backup",
				"notify_fault", "notify_stop", "notify", "track_interface", "track_script", "track_file", "smtp_alert"})
		}
	}
	return g, ok
}

// trackFile maps a top-level track_file / vrrp_track_file block.
func (p *parser) trackFile(n *node) (TrackFile, bool) {
	f := TrackFile{Pos: n.pos, Weight: 1}
	var ok bool
	f.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return f, false
	}
	for _, c := range n.children {
		switch c.name {
		case "file":
			t, good := p.value(c, "a file path")
			f.File = t.text
			ok = ok && good
		case "weight":
			t, good := p.valueArgs(c, "a weight")
			if good {
				v, err := parseSignedInt(t.text, -254, 254)
				if err != nil {
					p.errorf(t.pos, "invalid weight %s: %v", quote(t.text), err)
					good = false
				}
				f.Weight = int(v)
				f.Reverse = len(c.args) > 1 && c.args[1].text == "reverse"
			}
			ok = ok && good
		case "init_file":
			f.InitFile = true
		default:
			p.other(c, "in "+n.name, nil, []string{"file", "weight", "init_file"})
		}
	}
	return f, ok
}

// resolveTracks drops track_script, track_file and track_bfd entries naming nothing, with
// keepalived's warning ("track script X not found, ignoring").
func (p *parser) resolveTracks(n *node, vi *VRRPInstance, cfg *Config) {
	keep := func(refs []TrackRef, what string, exists func(string) bool) []TrackRef {
		var out []TrackRef
		for _, r := range refs {
			if exists(r.Name) {
				out = append(out, r)
				continue
			}
			p.warnf(n.pos, "(%s) %s %s not found: ignored as keepalived does", vi.Name, what, r.Name)
		}
		return out
	}
	vi.TrackScripts = keep(vi.TrackScripts, "track_script", func(name string) bool {
		for _, s := range cfg.VRRPScripts {
			if s.Name == name {
				return true
			}
		}
		return false
	})
	vi.TrackFiles = keep(vi.TrackFiles, "track_file", func(name string) bool {
		for _, f := range cfg.TrackFiles {
			if f.Name == name {
				return true
			}
		}
		return false
	})
	// A bfd_instance flagged checker serves BFD_CHECKs only.
	vi.TrackBFDs = keep(vi.TrackBFDs, "track_bfd", func(name string) bool {
		for _, b := range cfg.BFDInstances {
			if b.Name == name && !b.OnlyChecker {
				return true
			}
		}
		return false
	})
}
