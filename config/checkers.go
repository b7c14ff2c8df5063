package config

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// CheckerKind names a health checker block.
type CheckerKind string

// Checker kinds keepalived 2.2 knows.
const (
	KindTCP  CheckerKind = "TCP_CHECK"
	KindHTTP CheckerKind = "HTTP_GET"
	KindSSL  CheckerKind = "SSL_GET"
	KindSMTP CheckerKind = "SMTP_CHECK"
	KindDNS  CheckerKind = "DNS_CHECK"
	KindMisc CheckerKind = "MISC_CHECK"
	KindUDP  CheckerKind = "UDP_CHECK"
	KindPing CheckerKind = "PING_CHECK"
	KindFile CheckerKind = "FILE_CHECK"
	KindBFD  CheckerKind = "BFD_CHECK"
)

// Checker is one checker block of a real_server, of any kind, with every inherited setting
// resolved (checker, then real_server, then virtual_server, then keepalived's default for the
// kind). RealServer.Checkers holds every checker in file order, TCP_CHECK included; exactly one
// of the kind-specific pointers is set for the kinds that have options of their own.
type Checker struct {
	Pos  Pos
	Kind CheckerKind

	ConnectIP   netip.Addr // zero: the real server's address
	ConnectPort uint16     // zero: the real server's port
	BindTo      netip.Addr
	BindIf      string
	BindPort    uint16
	FWMark      uint32

	ConnectTimeout   time.Duration // default 5s
	Retry            int           // default 1; DNS_CHECK 3; MISC_CHECK 0
	DelayBeforeRetry time.Duration // default 1s; HTTP_GET/SSL_GET 3s; DNS_CHECK the delay_loop
	DelayLoop        time.Duration // the effective interval
	// Warmup is the maximum random delay before the first check; default the delay_loop.
	Warmup         time.Duration
	Alpha          bool // start with the server down
	LogAllFailures bool

	HTTP *HTTPCheck
	SMTP *SMTPCheck
	DNS  *DNSCheck
	Misc *MiscCheck
	UDP  *UDPCheck
	File *FileCheck
	BFD  *BFDCheck
}

// HTTPCheck holds the options of HTTP_GET and SSL_GET.
type HTTPCheck struct {
	URLs         []URL
	HTTPProtocol string // "1.0" (default), "1.0C" or "1.1"
	FastRecovery bool
	// Virtualhost is the Host header: the checker's, else the real server's, else the virtual server's.
	Virtualhost  string
	EnableSNI    bool
	SNIName      string
	TLSCompliant bool
}

// URL is one url block of HTTP_GET / SSL_GET.
type URL struct {
	Path         string
	Digest       string        // lower-case hex MD5; empty: not checked
	StatusCodes  []StatusRange // default 200-299
	Virtualhost  string        // empty: the checker's
	Regex        string
	RegexNoMatch bool
	RegexOptions []string
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// SMTPCheck holds SMTP_CHECK's options.
type SMTPCheck struct {
	HeloName string // default: the local host name
	// Hosts are the old `host { connect_ip ... }` sub-blocks keepalived 2.2 still reads: each
	// is checked as well as the checker's own address.
	Hosts []SMTPHost
}

// SMTPHost is one `host` block of SMTP_CHECK; zero fields mean the checker's.
type SMTPHost struct {
	ConnectIP   netip.Addr
	ConnectPort uint16
	BindTo      netip.Addr
	BindIf      string
	BindPort    uint16
	FWMark      uint32
}

// DNSCheck holds DNS_CHECK's options.
type DNSCheck struct {
	Type string // A, NS, CNAME, SOA (default), MX, TXT, AAAA
	Name string // default "."
}

// MiscCheck holds MISC_CHECK's options.
type MiscCheck struct {
	Path    string        // the command line, as written
	Timeout time.Duration // zero: the delay_loop
	Dynamic bool
	User    string
	Group   string
}

// UDPCheck holds UDP_CHECK's options.
type UDPCheck struct {
	Payload      []byte // nil: random
	RequireReply bool
	// ReplyData is the expected reply prefix; ReplyMask has 0 nibbles where an x was written.
	ReplyData      []byte
	ReplyMask      []byte
	MinReplyLength int
	MaxReplyLength int // default 255
}

// FileCheck holds FILE_CHECK's options.
type FileCheck struct {
	TrackFile string
	Dynamic   bool
	Weight    int
	Reverse   bool
}

// BFDCheck holds BFD_CHECK's options.
type BFDCheck struct {
	Name string
}

// SorryServer is a virtual_server's sorry_server.
type SorryServer struct {
	Addr    netip.Addr
	Port    uint16
	Inhibit bool   // sorry_server_inhibit
	LBKind  LBKind // sorry_server_lvs_method; empty: the virtual server's
}

// checkerDraft is a checker before inherited settings are resolved.
type checkerDraft struct {
	c         Checker
	in        inherited
	delayLoop time.Duration
}

// commonCheckerKeywords are the options every checker but MISC/FILE/BFD has.
var commonCheckerKeywords = []string{
	"connect_ip", "connect_port", "bindto", "bind_if", "bind_port", "fwmark", "alpha",
	"connect_timeout", "retry", "nb_get_retry", "delay_before_retry", "warmup", "delay_loop",
	"log_all_failures",
}

var checkerKeywords = map[CheckerKind][]string{
	KindHTTP: {"url", "http_protocol", "fast_recovery", "virtualhost", "enable_sni", "sni_name", "tls_compliant"},
	KindSMTP: {"helo_name", "host"},
	KindDNS:  {"type", "name"},
	KindMisc: {"misc_path", "misc_timeout", "misc_dynamic", "user"},
	KindUDP:  {"payload", "require_reply", "min_reply_length", "max_reply_length"},
	KindFile: {"track_file", "file", "dynamic", "weight"},
	KindBFD:  {"name"},
}

// checker parses a checker block of kind k into a draft. Diagnostics go to p.
func (p *parser) checker(n *node, k CheckerKind) (checkerDraft, bool) {
	d := checkerDraft{c: Checker{Pos: n.pos, Kind: k}}
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return d, false
	}
	switch k {
	case KindHTTP, KindSSL:
		d.c.HTTP = &HTTPCheck{}
	case KindSMTP:
		d.c.SMTP = &SMTPCheck{}
	case KindDNS:
		d.c.DNS = &DNSCheck{Type: "SOA", Name: "."}
	case KindMisc:
		d.c.Misc = &MiscCheck{}
	case KindUDP:
		d.c.UDP = &UDPCheck{MaxReplyLength: 255}
	case KindFile:
		d.c.File = &FileCheck{}
	case KindBFD:
		d.c.BFD = &BFDCheck{}
	}
	ok := true
	for _, c := range n.children {
		good, known := p.checkerOption(c, &d)
		if !known {
			specific := checkerKeywords[k]
			if k == KindSSL {
				specific = checkerKeywords[KindHTTP]
			}
			p.other(c, "in "+string(k), nil, commonCheckerKeywords, specific)
			continue
		}
		ok = ok && good
	}
	if ok && d.c.ConnectIP.IsValid() && d.c.BindTo.IsValid() && d.c.ConnectIP.Is4() != d.c.BindTo.Is4() {
		p.errorf(n.pos, "%s bindto %s and connect_ip %s differ in family: expected both IPv4 or both IPv6", k, d.c.BindTo, d.c.ConnectIP)
		ok = false
	}
	if ok && k == KindMisc && d.c.Misc.Path == "" {
		p.errorf(n.pos, "MISC_CHECK needs misc_path: expected the command to run")
		ok = false
	}
	if ok && k == KindFile && d.c.File.TrackFile == "" {
		p.errorf(n.pos, "FILE_CHECK needs track_file: expected the name of a track_file block")
		ok = false
	}
	if ok && d.c.HTTP != nil && len(d.c.HTTP.URLs) == 0 {
		p.warnf(n.pos, "%s has no url: keepalived ignores the checker", k)
	}
	return d, ok
}

// checkerOption parses one option of a checker; known is false when c is not an option of
// the checker's kind.
func (p *parser) checkerOption(c *node, d *checkerDraft) (ok, known bool) {
	k := d.c.Kind
	if k != KindFile && k != KindBFD {
		if p.inheritable(c, &d.in) {
			return true, true
		}
		switch c.name {
		case "alpha":
			v, good := p.flag(c)
			d.in.alpha = &v
			return good, true
		case "warmup":
			v, good := p.timerValue(c, 0, maxTimer)
			d.in.warmup = &v
			return good, true
		case "delay_loop":
			v, good := p.timerValue(c, time.Microsecond, maxTimer)
			d.delayLoop = v
			return good, true
		case "log_all_failures":
			v, good := p.flag(c)
			d.c.LogAllFailures = v
			return good, true
		}
	}
	if k != KindFile && k != KindBFD && k != KindMisc {
		switch c.name {
		case "connect_ip":
			a, good := p.addrValue(c)
			d.c.ConnectIP = a
			return good, true
		case "connect_port":
			t, good := p.value(c, "a port in 1..65535")
			if good {
				d.c.ConnectPort, good = p.portArg("connect_port", t, 1)
			}
			return good, true
		case "bindto":
			a, good := p.addrValue(c)
			d.c.BindTo = a
			return good, true
		case "bind_if":
			t, good := p.value(c, "an interface name")
			d.c.BindIf = t.text
			return good, true
		case "bind_port":
			t, good := p.value(c, "a port in 1..65535")
			if good {
				d.c.BindPort, good = p.portArg("bind_port", t, 1)
			}
			return good, true
		case "fwmark":
			v, good := p.intValue(c, 0, 4294967295)
			d.c.FWMark = uint32(v)
			return good, true
		}
	}
	switch {
	case d.c.HTTP != nil:
		return p.httpOption(c, d.c.HTTP, k)
	case d.c.SMTP != nil && c.name == "helo_name":
		t, good := p.value(c, "a host name")
		d.c.SMTP.HeloName = t.text
		return good, true
	case d.c.SMTP != nil && c.name == "host":
		h, good := p.smtpHost(c)
		d.c.SMTP.Hosts = append(d.c.SMTP.Hosts, h)
		return good, true
	case d.c.DNS != nil:
		switch c.name {
		case "type":
			t, good := p.value(c, "A, NS, CNAME, SOA, MX, TXT or AAAA")
			if good {
				up := strings.ToUpper(t.text)
				if !contains([]string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"}, up) {
					p.errorf(t.pos, "invalid DNS_CHECK type %s: expected A, NS, CNAME, SOA, MX, TXT or AAAA", quote(t.text))
					return false, true
				}
				d.c.DNS.Type = up
			}
			return good, true
		case "name":
			t, good := p.value(c, "a domain name")
			d.c.DNS.Name = t.text
			return good, true
		}
	case d.c.Misc != nil:
		switch c.name {
		case "misc_path":
			_, good := p.valueArgs(c, "a command")
			if good {
				d.c.Misc.Path = joinArgs(c.args)
			}
			return good, true
		case "misc_timeout":
			v, good := p.intValue(c, 1, 2147483647)
			d.c.Misc.Timeout = time.Duration(v) * time.Second
			return good, true
		case "misc_dynamic":
			p.extraArgs(c, 0)
			d.c.Misc.Dynamic = true
			return true, true
		case "user":
			t, good := p.valueArgs(c, "a user name [group name]")
			if good {
				d.c.Misc.User = t.text
				if len(c.args) > 1 {
					d.c.Misc.Group = c.args[1].text
				}
			}
			return good, true
		}
	case d.c.UDP != nil:
		switch c.name {
		case "payload":
			b, _, good := p.hexArgs(c, false)
			d.c.UDP.Payload = b
			return good, true
		case "require_reply":
			d.c.UDP.RequireReply = true
			if len(c.args) > 0 {
				b, m, good := p.hexArgs(c, true)
				d.c.UDP.ReplyData, d.c.UDP.ReplyMask = b, m
				return good, true
			}
			return true, true
		case "min_reply_length", "max_reply_length":
			v, good := p.intValue(c, 0, 65535)
			if c.name == "min_reply_length" {
				d.c.UDP.MinReplyLength = int(v)
			} else {
				d.c.UDP.MaxReplyLength = int(v)
			}
			return good, true
		}
	case d.c.File != nil:
		switch c.name {
		case "track_file", "file":
			t, good := p.value(c, "the name of a track_file block")
			d.c.File.TrackFile = t.text
			return good, true
		case "dynamic":
			p.extraArgs(c, 0)
			d.c.File.Dynamic = true
			return true, true
		case "weight":
			t, good := p.valueArgs(c, "a weight")
			if good {
				v, err := parseSignedInt(t.text, -2147483647, 2147483647)
				if err != nil {
					p.errorf(t.pos, "invalid weight %s: %v", quote(t.text), err)
					return false, true
				}
				d.c.File.Weight = int(v)
				d.c.File.Reverse = len(c.args) > 1 && c.args[1].text == "reverse"
			}
			return good, true
		}
	case d.c.BFD != nil && c.name == "name":
		t, good := p.value(c, "a bfd_instance name")
		d.c.BFD.Name = t.text
		return good, true
	}
	return false, false
}

func (p *parser) httpOption(c *node, h *HTTPCheck, k CheckerKind) (ok, known bool) {
	switch c.name {
	case "url":
		u, good := p.url(c)
		if good {
			h.URLs = append(h.URLs, u)
		}
		return good, true
	case "http_protocol":
		t, good := p.value(c, "1.0, 1.0C or 1.1")
		if good {
			v := strings.ToUpper(t.text)
			switch v {
			case "1.0", "1.0C", "1.1":
				h.HTTPProtocol = v
			default:
				p.errorf(t.pos, "invalid http_protocol %s: expected 1.0, 1.0C or 1.1", quote(t.text))
				return false, true
			}
		}
		return good, true
	case "fast_recovery":
		v, good := p.flag(c)
		h.FastRecovery = v
		return good, true
	case "virtualhost":
		t, good := p.value(c, "a host name")
		h.Virtualhost = t.text
		return good, true
	case "enable_sni", "tls_compliant":
		v, good := p.flag(c)
		if k != KindSSL {
			p.warnf(c.pos, "%s only applies to SSL_GET: ignored in HTTP_GET", c.name)
			return good, true
		}
		if c.name == "enable_sni" {
			h.EnableSNI = v
		} else {
			h.TLSCompliant = v
		}
		return good, true
	case "sni_name":
		t, good := p.value(c, "a server name")
		h.SNIName = t.text
		if good {
			h.EnableSNI = true
		}
		return good, true
	}
	return false, false
}

func (p *parser) url(n *node) (URL, bool) {
	u := URL{}
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return u, false
	}
	ok := true
	for _, c := range n.children {
		switch c.name {
		case "path":
			t, good := p.value(c, "a URL path")
			u.Path = t.text
			ok = ok && good
		case "digest":
			t, good := p.value(c, "an MD5 digest in hex")
			if good {
				if b, err := hex.DecodeString(t.text); err != nil || len(b) != 16 {
					p.errorf(t.pos, "invalid digest %s: expected 32 hex digits (an MD5 digest, as genhash prints)", quote(t.text))
					good = false
				} else {
					u.Digest = strings.ToLower(t.text)
				}
			}
			ok = ok && good
		case "status_code":
			if len(c.args) == 0 {
				p.errorf(c.pos, "status_code needs a value: expected CODE or LOW-HIGH, one or more")
				ok = false
				continue
			}
			for _, a := range c.args {
				lo, hi, isRange := strings.Cut(a.text, "-")
				if !isRange {
					hi = lo
				}
				l, err1 := parseInt(lo, 100, 599)
				h, err2 := parseInt(hi, 100, 599)
				if err1 != nil || err2 != nil || l > h {
					p.errorf(a.pos, "invalid status_code %s: expected a code or LOW-HIGH range in 100..599", quote(a.text))
					ok = false
					continue
				}
				u.StatusCodes = append(u.StatusCodes, StatusRange{int(l), int(h)})
			}
		case "virtualhost":
			t, good := p.value(c, "a host name")
			u.Virtualhost = t.text
			ok = ok && good
		case "regex":
			t, good := p.value(c, "a regular expression")
			u.Regex = t.text
			ok = ok && good
		case "regex_no_match":
			u.RegexNoMatch = true
		case "regex_options":
			for _, a := range c.args {
				u.RegexOptions = append(u.RegexOptions, a.text)
			}
		case "regex_stack", "regex_min_offset", "regex_max_offset":
			p.warnf(c.pos, "%s parsed, not supported yet", c.name)
		default:
			p.other(c, "in url", nil, []string{"path", "digest", "status_code", "virtualhost", "regex",
				"regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset"})
		}
	}
	if ok && u.Path == "" {
		p.errorf(n.pos, "url needs a path: expected path /...")
		ok = false
	}
	if len(u.StatusCodes) == 0 && u.Digest == "" {
		u.StatusCodes = []StatusRange{{200, 299}}
	}
	return u, ok
}

// hexArgs reads keepalived's free-format HEX_STR: hex digits, spaces separating bytes, a lone
// digit being one byte. With mask, x or X is a wildcard nibble.
func (p *parser) hexArgs(n *node, mask bool) (data, m []byte, ok bool) {
	if len(n.args) == 0 {
		p.errorf(n.pos, "%s needs a value: expected hex digits", n.name)
		return nil, nil, false
	}
	for _, a := range n.args {
		s := a.text
		if len(s)%2 == 1 {
			s = "0" + s
		}
		for i := 0; i < len(s); i += 2 {
			var b, mb byte
			for j := 0; j < 2; j++ {
				c := s[i+j]
				var v, mv byte = 0, 0xf
				switch {
				case c >= '0' && c <= '9':
					v = c - '0'
				case c >= 'a' && c <= 'f':
					v = c - 'a' + 10
				case c >= 'A' && c <= 'F':
					v = c - 'A' + 10
				case mask && (c == 'x' || c == 'X'):
					mv = 0
				default:
					p.errorf(a.pos, "invalid %s %s: expected hex digits", n.name, quote(a.text))
					return nil, nil, false
				}
				b, mb = b<<4|v, mb<<4|mv
			}
			data, m = append(data, b), append(m, mb)
		}
	}
	if !mask {
		m = nil
	}
	return data, m, true
}

func joinArgs(args []token) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = a.text
	}
	return strings.Join(s, " ")
}

// resolveChecker applies inheritance and the kind's defaults.
func resolveChecker(d checkerDraft, rs *RealServer, rsIn, vsIn *inherited, vs *VirtualServer) Checker {
	c := d.c
	retry, dbr := DefaultRetry, DefaultDelayBeforeRetry
	delay := vs.DelayLoop
	if rs.DelayLoop != 0 {
		delay = rs.DelayLoop
	}
	if d.delayLoop != 0 {
		delay = d.delayLoop
	}
	switch c.Kind {
	case KindHTTP, KindSSL:
		dbr = 3 * time.Second
	case KindDNS:
		retry, dbr = 3, delay
	case KindMisc:
		retry = 0
	}
	c.DelayLoop = delay
	c.ConnectTimeout = pick(DefaultConnectTimeout, d.in.connectTimeout, rsIn.connectTimeout, vsIn.connectTimeout)
	c.Retry = pick(retry, d.in.retry, rsIn.retry, vsIn.retry)
	c.DelayBeforeRetry = pick(dbr, d.in.delayBeforeRetry, rsIn.delayBeforeRetry, vsIn.delayBeforeRetry)
	c.Warmup = pick(delay, d.in.warmup, rsIn.warmup, vsIn.warmup)
	c.Alpha = pick(false, d.in.alpha, rsIn.alpha, vsIn.alpha)
	if c.HTTP != nil && c.HTTP.Virtualhost == "" {
		c.HTTP.Virtualhost = pick("", rsIn.virtualhost, vsIn.virtualhost)
	}
	return c
}

// virtualServerExtra maps virtual_server keywords beyond the skeleton's; false when n is not one.
func (p *parser) virtualServerExtra(n *node, vs *VirtualServer, in *inherited, ok *bool) bool {
	good := true
	switch n.name {
	case "quorum":
		v, g := p.intValue(n, 1, 2147483647)
		vs.Quorum, good = int(v), g
	case "hysteresis":
		v, g := p.intValue(n, 0, 2147483647)
		vs.Hysteresis, good = int(v), g
	case "quorum_up", "quorum_down":
		s, u, g := p.script(n)
		if g {
			if n.name == "quorum_up" {
				vs.QuorumUp, vs.QuorumUpUser = s, u
			} else {
				vs.QuorumDown, vs.QuorumDownUser = s, u
			}
		}
		good = g
	case "sorry_server":
		t, g := p.valueArgs(n, "IP [PORT]")
		if g {
			a, ag := p.addrArg("sorry_server", t)
			s := &SorryServer{Addr: a}
			if vs.SorryServer != nil {
				s.Inhibit, s.LBKind = vs.SorryServer.Inhibit, vs.SorryServer.LBKind
			}
			if len(n.args) > 1 {
				s.Port, g = p.portArg("sorry_server port", n.args[1], 0)
			}
			g = g && ag
			vs.SorryServer = s
		}
		good = g
	case "sorry_server_inhibit":
		v, g := p.flag(n)
		if vs.SorryServer == nil {
			vs.SorryServer = &SorryServer{}
		}
		vs.SorryServer.Inhibit, good = v, g
	case "sorry_server_lvs_method":
		k, g := p.lbKind(n)
		if vs.SorryServer == nil {
			vs.SorryServer = &SorryServer{}
		}
		vs.SorryServer.LBKind, good = k, g
	case "ha_suspend":
		p.extraArgs(n, 0)
		vs.HASuspend = true
	case "sh-port", "mh-port", "flag-2":
		p.extraArgs(n, 0)
		vs.SchedPort = true
	case "sh-fallback", "mh-fallback", "flag-1":
		p.extraArgs(n, 0)
		vs.SchedFallback = true
	case "persistence_granularity":
		t, g := p.value(n, "a netmask (255.255.255.0) or prefix length")
		if g {
			bits, err := parseGranularity(t.text)
			switch {
			case err == errMask:
				// keepalived -t accepts any IPv4 netmask; only leading ones make sense for IPVS.
				p.warnf(t.pos, "persistence_granularity %s is not a contiguous netmask: using /%d", t.text, bits)
			case err != nil:
				p.errorf(t.pos, "invalid persistence_granularity %s: %v", quote(t.text), err)
				g = false
			}
			vs.PersistenceGranularity = bits
		}
		good = g
	case "alpha":
		p.extraArgs(n, 0)
		vs.Alpha = true
		in.alpha = ptr(true)
	case "omega":
		p.extraArgs(n, 0)
		vs.Omega = true
	case "warmup":
		v, g := p.timerValue(n, 0, maxTimer)
		in.warmup, good = &v, g
	case "virtualhost":
		t, g := p.value(n, "a host name")
		vs.Virtualhost, good = t.text, g
		in.virtualhost = &vs.Virtualhost
	case "smtp_alert":
		v, g := p.flag(n)
		vs.SMTPAlert, good = &v, g
	default:
		return false
	}
	if !good {
		*ok = false
	}
	return true
}

// realServerExtra maps real_server keywords beyond the skeleton's; false when n is not one.
func (p *parser) realServerExtra(n *node, d *realServerDraft) bool {
	good := true
	switch n.name {
	case "notify_up", "notify_down":
		s, u, g := p.script(n)
		if n.name == "notify_up" {
			d.rs.NotifyUp, d.rs.NotifyUpUser = s, u
		} else {
			d.rs.NotifyDown, d.rs.NotifyDownUser = s, u
		}
		good = g
	case "smtp_alert":
		v, g := p.flag(n)
		if g {
			d.rs.SMTPAlert = &v
		}
		good = g
	case "uthreshold", "lthreshold":
		v, g := p.intValue(n, 0, 2147483647)
		if n.name == "uthreshold" {
			d.rs.UThreshold = int(v)
		} else {
			d.rs.LThreshold = int(v)
		}
		good = g
	case "alpha":
		v, g := p.flag(n)
		d.in.alpha, good = &v, g
	case "warmup":
		v, g := p.timerValue(n, 0, maxTimer)
		d.in.warmup, good = &v, g
	case "virtualhost":
		t, g := p.value(n, "a host name")
		d.in.virtualhost, good = ptr(t.text), g
	default:
		return false
	}
	_ = good // real_server extras never invalidate the server; errors are recorded on p
	return true
}

// parseGranularity parses a netmask (255.255.255.0) or a prefix length into a prefix length.
func parseGranularity(s string) (int, error) {
	if v, err := parseInt(s, 1, 128); err == nil {
		return int(v), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, errNotMask
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for m&0x80000000 != 0 {
		bits++
		m <<= 1
	}
	if m != 0 {
		return bits, errMask
	}
	return bits, nil
}

var (
	errMask    = msgError("not a contiguous netmask")
	errNotMask = msgError("expected an IPv4 netmask such as 255.255.255.0, or a prefix length")
)

// service names a virtual server for messages: "IP PORT", "fwmark N" or "group NAME".
func (vs *VirtualServer) service() string {
	switch {
	case vs.Group != "":
		return "group " + vs.Group
	case vs.FWMark != 0:
		return sprintf("fwmark %d", vs.FWMark)
	}
	return sprintf("%s %d", vs.Addr, vs.Port)
}

// virtualServerGroup maps a virtual_server_group block.
func (p *parser) virtualServerGroup(n *node) (VirtualServerGroup, bool) {
	g := VirtualServerGroup{Pos: n.pos}
	var ok bool
	g.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return g, false
	}
	total := uint64(0) // addresses so far, to cap the expansion
	for _, c := range n.children {
		if c.hasBlock {
			p.errorf(c.open, "unexpected block in virtual_server_group: expected IP[-RANGE] [PORT] or fwmark N on each line")
			ok = false
			continue
		}
		var e VSGroupEntry
		if c.name == "fwmark" {
			if len(c.args) == 0 {
				p.errorf(c.pos, "fwmark needs a value: expected fwmark 1..4294967295")
				ok = false
				continue
			}
			v, err := parseInt(c.args[0].text, 1, 4294967295)
			if err != nil {
				p.errorf(c.args[0].pos, "invalid fwmark %s: %v", quote(c.args[0].text), err)
				ok = false
				continue
			}
			e.FWMark = uint32(v)
			if len(c.args) > 1 {
				e.Family = c.args[1].text
				if e.Family != "inet" && e.Family != "inet6" {
					p.errorf(c.args[1].pos, "invalid fwmark family %s: expected inet or inet6", quote(e.Family))
					ok = false
					continue
				}
				p.extraArgs(c, 2)
			}
			g.Entries = append(g.Entries, e)
			continue
		}
		first, last, err := parseAddrRange(c.name)
		if err != nil {
			p.errorf(c.pos, "invalid virtual_server_group address %s: %v", quote(c.name), err)
			ok = false
			continue
		}
		n := rangeSize(first, last)
		if total+n > MaxGroupAddresses {
			p.errorf(c.pos, "virtual_server_group %s: %s brings the group to %s addresses, more than the %d a group may serve: expected a smaller range",
				g.Name, c.name, rangeCount(total, n), MaxGroupAddresses)
			ok = false
			continue
		}
		total += n
		e.First, e.Last = first, last
		if len(c.args) > 0 {
			port, good := p.portArg("virtual_server_group port", c.args[0], 0)
			if !good {
				ok = false
				continue
			}
			e.Port = port
		}
		g.Entries = append(g.Entries, e)
	}
	return g, ok
}

// rangeSize is how many addresses first..last holds, saturated beyond MaxGroupAddresses.
func rangeSize(first, last netip.Addr) uint64 {
	f, l := first.As16(), last.As16()
	fhi, flo := binary.BigEndian.Uint64(f[:8]), binary.BigEndian.Uint64(f[8:])
	lhi, llo := binary.BigEndian.Uint64(l[:8]), binary.BigEndian.Uint64(l[8:])
	switch {
	case lhi != fhi || llo < flo:
		if lhi < fhi || (lhi == fhi && llo < flo) {
			return 0
		}
		return MaxGroupAddresses + 1
	case llo-flo >= MaxGroupAddresses:
		return MaxGroupAddresses + 1
	}
	return llo - flo + 1
}

// rangeCount describes a running total of group addresses for the cap's error message.
func rangeCount(total, n uint64) string {
	if n > MaxGroupAddresses || total > MaxGroupAddresses {
		return sprintf("more than %d", MaxGroupAddresses)
	}
	return sprintf("%d", total+n)
}

// Addresses lists the addresses of entry's range, first to last; none for a fwmark entry. The
// parser has capped the range at MaxGroupAddresses.
func (e VSGroupEntry) Addresses() []netip.Addr {
	if e.FWMark != 0 || !e.First.IsValid() {
		return nil
	}
	var out []netip.Addr
	for a := e.First; len(out) <= MaxGroupAddresses; a = a.Next() {
		out = append(out, a)
		if a == e.Last || !a.IsValid() {
			break
		}
	}
	return out
}

// parseAddrRange parses ADDR, ADDR-LASTPART (192.168.200.3-10, 2001:db8::1-ff),
// ADDR-ADDR or ADDR/LEN into the first and last addresses of the range.
func parseAddrRange(s string) (netip.Addr, netip.Addr, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		pfx = pfx.Masked()
		last := pfx.Addr()
		b := last.AsSlice()
		for i := pfx.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last, _ = netip.AddrFromSlice(b)
		return pfx.Addr(), last, nil
	}
	firstText, lastText, isRange := strings.Cut(s, "-")
	first, err := parseAddr(firstText)
	if err != nil {
		return first, first, err
	}
	if !isRange {
		return first, first, nil
	}
	if l, err := parseAddr(lastText); err == nil {
		if l.Is4() != first.Is4() || l.Less(first) {
			return first, l, msgError("expected the range's last address after its first, in the same family")
		}
		return first, l, nil
	}
	// The last part replaces the first address's last byte (IPv4, decimal) or group (IPv6, hex).
	b := first.AsSlice()
	if first.Is4() {
		v, err := parseInt(lastText, int64(b[3]), 255)
		if err != nil {
			return first, first, msgError(sprintf("invalid range end %s: %v", quote(lastText), err))
		}
		b[3] = byte(v)
	} else {
		v, err := strconv.ParseUint(lastText, 16, 16)
		lo := uint64(b[14])<<8 | uint64(b[15])
		if err != nil || v < lo {
			return first, first, msgError(sprintf("invalid range end %s: expected hex %x..ffff", quote(lastText), lo))
		}
		b[14], b[15] = byte(v>>8), byte(v)
	}
	last, _ := netip.AddrFromSlice(b)
	return first, last, nil
}

// smtpHost reads an SMTP_CHECK `host { ... }` block: connection options only.
func (p *parser) smtpHost(n *node) (SMTPHost, bool) {
	p.extraArgs(n, 0)
	if !p.needBlock(n) {
		return SMTPHost{}, false
	}
	d := checkerDraft{c: Checker{Kind: KindPing}}
	ok := true
	for _, c := range n.children {
		switch c.name {
		case "connect_ip", "connect_port", "bindto", "bind_if", "bind_port", "fwmark":
			good, _ := p.checkerOption(c, &d)
			ok = ok && good
		default:
			p.other(c, "in SMTP_CHECK host", nil, []string{"connect_ip", "connect_port", "bindto", "bind_if", "bind_port", "fwmark"})
		}
	}
	c := d.c
	return SMTPHost{ConnectIP: c.ConnectIP, ConnectPort: c.ConnectPort, BindTo: c.BindTo, BindIf: c.BindIf, BindPort: c.BindPort, FWMark: c.FWMark}, ok
}

// dropUntrackedFileChecks removes FILE_CHECKs naming no track_file, with keepalived's warning.
func (p *parser) dropUntrackedFileChecks(vss []VirtualServer, cfg *Config) {
	for i := range vss {
		for j := range vss[i].RealServers {
			rs := &vss[i].RealServers[j]
			var keep []Checker
			for _, c := range rs.Checkers {
				if c.File != nil && !cfg.hasTrackFile(c.File.TrackFile) {
					p.warnf(c.Pos, "FILE_CHECK track_file %s not found: checker ignored as keepalived does", c.File.TrackFile)
					continue
				}
				keep = append(keep, c)
			}
			rs.Checkers = keep
		}
	}
}

func (c *Config) hasTrackFile(name string) bool {
	for _, f := range c.TrackFiles {
		if f.Name == name {
			return true
		}
	}
	return false
}
