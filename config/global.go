package config

import (
	"strings"
	"time"
)

// fifoOf returns the global_defs field of a notify_fifo keyword.
func fifoOf(g *GlobalDefs, keyword string) *NotifyFIFO {
	switch keyword {
	case "vrrp_notify_fifo":
		return &g.VRRPNotifyFIFO
	case "lvs_notify_fifo":
		return &g.LVSNotifyFIFO
	}
	return &g.NotifyFIFO
}

// globalField maps one global_defs keyword Sluice types beyond router_id; false when n is not one.
func (p *parser) globalField(n *node, g *GlobalDefs) bool {
	switch n.name {
	case "notification_email":
		if p.needBlock(n) {
			for _, c := range n.children {
				g.NotificationEmail = append(g.NotificationEmail, c.name)
			}
		}
	case "notification_email_from":
		if t, ok := p.value(n, "an email address"); ok {
			g.NotificationEmailFrom = t.text
		}
	case "smtp_server":
		if t, ok := p.valueArgs(n, "an address [port]"); ok {
			g.SMTPServer = t.text
			if len(n.args) > 1 {
				g.SMTPServer += " " + n.args[1].text
			}
		}
	case "smtp_connect_timeout":
		if d, ok := p.timerValue(n, time.Second, maxTimer); ok {
			g.SMTPConnectTimeout = d
		}
	case "smtp_helo_name":
		if t, ok := p.value(n, "a host name"); ok {
			g.SMTPHeloName = t.text
		}
	case "smtp_alert":
		if v, ok := p.flag(n); ok {
			g.SMTPAlert = &v
		}
	case "smtp_alert_vrrp":
		if v, ok := p.flag(n); ok {
			g.SMTPAlertVRRP = &v
		}
	case "smtp_alert_checker":
		if v, ok := p.flag(n); ok {
			g.SMTPAlertChecker = &v
		}
	case "no_email_faults":
		p.extraArgs(n, 0)
		g.NoEmailFaults = true
	case "notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo":
		if t, ok := p.valueArgs(n, "a FIFO path [username [groupname]]"); ok {
			f := fifoOf(g, n.name)
			f.Path = t.text
			f.User, f.Group = "", ""
			if len(n.args) > 1 {
				f.User = n.args[1].text
			}
			if len(n.args) > 2 {
				f.Group = n.args[2].text
			}
			p.extraArgs(n, 3)
		}
	case "notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script":
		if s, u, ok := p.script(n); ok {
			f := fifoOf(g, strings.TrimSuffix(n.name, "_script"))
			f.Script, f.ScriptUser = s, u
		}
	case "vrrp_mcast_group4":
		if a, ok := p.addrValue(n); ok {
			if !a.Is4() || !a.IsMulticast() {
				p.errorf(n.args[0].pos, "invalid vrrp_mcast_group4 %s: expected an IPv4 multicast address", a)
			} else {
				g.VRRPMcastGroup4 = a
			}
		}
	case "vrrp_mcast_group6":
		if a, ok := p.addrValue(n); ok {
			if a.Is4() || !a.IsLinkLocalMulticast() {
				p.errorf(n.args[0].pos, "invalid vrrp_mcast_group6 %s: expected a link-local IPv6 multicast address (ffX2::)", a)
			} else {
				g.VRRPMcastGroup6 = a
			}
		}
	case "vrrp_version":
		if v, ok := p.intValue(n, 2, 3); ok {
			g.VRRPVersion = int(v)
		}
	case "vrrp_strict":
		p.extraArgs(n, 0)
		g.VRRPStrict = true
	case "vrrp_garp_master_delay":
		if v, ok := p.intValue(n, 0, 2147483647); ok {
			g.VRRPGARPMasterDelay = ptr(time.Duration(v) * time.Second)
		}
	case "vrrp_garp_master_repeat":
		if v, ok := p.intValue(n, 0, 2147483647); ok {
			g.VRRPGARPMasterRepeat = ptr(int(v))
		}
	case "vrrp_garp_master_refresh":
		if v, ok := p.intValue(n, 0, 2147483647); ok {
			g.VRRPGARPMasterRefresh = ptr(time.Duration(v) * time.Second)
		}
	case "vrrp_garp_interval":
		if d, ok := p.timerValue(n, 0, maxTimer); ok {
			g.VRRPGARPInterval = d
		}
	case "vrrp_gna_interval":
		if d, ok := p.timerValue(n, 0, maxTimer); ok {
			g.VRRPGNAInterval = d
		}
	case "vrrp_check_unicast_src":
		v, _ := p.flag(n)
		g.VRRPCheckUnicastSrc = v
	case "vrrp_skip_check_adv_addr":
		v, _ := p.flag(n)
		g.VRRPSkipCheckAdvAddr = v
	case "vrrp_startup_delay":
		if d, ok := p.timerValue(n, 0, maxTimer); ok {
			g.VRRPStartupDelay = d
		}
	case "script_user":
		if t, ok := p.valueArgs(n, "a user name [group name]"); ok {
			g.ScriptUser = t.text
			if len(n.args) > 1 {
				g.ScriptGroup = n.args[1].text
			}
		}
	case "enable_script_security":
		p.extraArgs(n, 0)
		g.EnableScriptSecurity = true
	case "dynamic_interfaces":
		g.DynamicInterfaces = true
	case "max_auto_priority":
		if len(n.args) == 0 {
			g.MaxAutoPriority = 99 // keepalived's default when given without a value
		} else if t, ok := p.value(n, "a priority in -1..99"); ok {
			v, err := parseSignedInt(t.text, -1, 99)
			if err != nil {
				p.errorf(t.pos, "invalid max_auto_priority %s: %v", quote(t.text), err)
			}
			g.MaxAutoPriority = int(v)
		}
	case "lvs_timeouts":
		p.lvsTimeouts(n, &g.LVSTimeouts)
	case "lvs_sync_daemon":
		if t, ok := p.valueArgs(n, "an interface and options"); ok {
			g.LVSSyncDaemon = t.text
			for _, a := range n.args[1:] {
				g.LVSSyncDaemon += " " + a.text
			}
		}
	default:
		return false
	}
	return true
}

// maxLVSTimeout is the longest lvs_timeouts value keepalived accepts (LVS_MAX_TIMEOUT), in seconds.
const maxLVSTimeout = 86400 * 31

// lvsTimeouts maps `lvs_timeouts [tcp N] [tcpfin N] [udp N]`, seconds each, in any order.
func (p *parser) lvsTimeouts(n *node, t *LVSTimeouts) {
	if n.hasBlock {
		p.errorf(n.open, "lvs_timeouts takes values, not a block: expected tcp N, tcpfin N or udp N")
		return
	}
	if len(n.args) == 0 {
		p.errorf(n.pos, "lvs_timeouts needs a value: expected tcp N, tcpfin N or udp N")
		return
	}
	for i := 0; i < len(n.args); i++ {
		opt := n.args[i]
		var dst *time.Duration
		switch opt.text {
		case "tcp":
			dst = &t.TCP
		case "tcpfin":
			dst = &t.TCPFin
		case "udp":
			dst = &t.UDP
		default:
			p.errorf(opt.pos, "invalid lvs_timeouts option %s: expected tcp, tcpfin or udp", quote(opt.text))
			if i+1 < len(n.args) {
				if _, err := parseSignedInt(n.args[i+1].text, -1<<62, 1<<62); err == nil {
					i++ // its value: one error is enough
				}
			}
			continue
		}
		if i+1 == len(n.args) {
			p.errorf(opt.pos, "lvs_timeouts %s needs a value: expected seconds in 0..%d", opt.text, maxLVSTimeout)
			return
		}
		i++
		v, err := parseInt(n.args[i].text, 0, maxLVSTimeout)
		if err != nil {
			p.errorf(n.args[i].pos, "invalid lvs_timeouts %s %s: %v", opt.text, quote(n.args[i].text), err)
			continue
		}
		*dst = time.Duration(v) * time.Second
	}
}

// sslBlock maps the top-level SSL block.
func (p *parser) sslBlock(n *node) *SSLConfig {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return nil
	}
	s := &SSLConfig{}
	for _, c := range n.children {
		var dst *string
		switch c.name {
		case "password":
			dst = &s.Password
		case "ca":
			dst = &s.CA
		case "certificate":
			dst = &s.Certificate
		case "key":
			dst = &s.Key
		default:
			p.other(c, "in SSL", nil, []string{"password", "ca", "certificate", "key"})
			continue
		}
		if t, ok := p.value(c, "a value"); ok {
			*dst = t.text
		}
	}
	return s
}
