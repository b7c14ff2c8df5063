package config

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Converters from other LVS front ends to keepalived.conf. Both read at most MaxFileSize bytes
// and report problems as an ErrorList with the input's line numbers.

// convService is one virtual service being converted.
type convService struct {
	line        int
	proto       string // TCP, UDP, or "" for fwmark
	addr        netip.AddrPort
	fwmark      uint32
	sched       string
	persistence string // seconds; "" none
	granularity string
	reals       []convReal
	// ldirectord check settings
	check    string // TCP_CHECK, HTTP_GET, SSL_GET, PING_CHECK, MISC_CHECK or ""
	opts     map[string]string
	fallback string
	inhibit  bool
}

type convReal struct {
	addr      netip.AddrPort
	method    LBKind
	weight    string
	uthresh   string
	lthresh   string
	hasWeight bool
}

func readLimited(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("input larger than %d bytes", MaxFileSize)
	}
	return strings.Split(string(data), "\n"), nil
}

// parseHostPort parses ADDR:PORT, [V6]:PORT or a bare address (port 0).
func parseHostPort(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap, nil
	}
	if a, err := parseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 0), nil
	}
	return netip.AddrPort{}, fmt.Errorf("invalid address %s: expected IP:PORT or [IPv6]:PORT", quote(s))
}

// ConvertIPVSADM reads `ipvsadm -Sn` output (ipvsadm-save -n) and returns the equivalent
// keepalived.conf. Real servers get no checker (ipvsadm has none); a comment says so.
func ConvertIPVSADM(name string, r io.Reader) ([]byte, error) {
	lines, err := readLimited(r)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: name}, Msg: "read: " + err.Error()}}
	}
	var errs ErrorList
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &Error{Pos: Pos{File: name, Line: line}, Msg: sprintf(format, args...)})
	}
	var services []*convService
	find := func(proto string, ap netip.AddrPort, mark uint32) *convService {
		for _, s := range services {
			if s.proto == proto && s.addr == ap && s.fwmark == mark {
				return s
			}
		}
		return nil
	}
	for i, raw := range lines {
		line := i + 1
		f := strings.Fields(raw)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		cmd := f[0]
		if cmd != "-A" && cmd != "-a" && cmd != "--add-service" && cmd != "--add-server" {
			fail(line, "unsupported ipvsadm command %s: expected -A (add service) or -a (add server) lines, as ipvsadm -Sn prints", quote(cmd))
			continue
		}
		var (
			proto, sched, pers, gran, weight, ut, lt string
			svc, real                                netip.AddrPort
			mark                                     uint32
			method                                   LBKind
			bad                                      bool
		)
		for j := 1; j < len(f); j++ {
			opt := f[j]
			val := ""
			if j+1 < len(f) && !strings.HasPrefix(f[j+1], "-") {
				val = f[j+1]
			}
			need := func() string {
				if val == "" {
					fail(line, "ipvsadm option %s needs a value", opt)
					bad = true
				}
				j++
				return val
			}
			switch opt {
			case "-t", "--tcp-service", "-u", "--udp-service", "-z", "--sctp-service":
				proto = map[string]string{"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP"}[opt]
				if proto == "" {
					proto = "SCTP"
				}
				ap, err := parseHostPort(need())
				if err != nil {
					fail(line, "%v", err)
					bad = true
				}
				svc = ap
			case "-f", "--fwmark-service":
				v, err := parseInt(need(), 1, 4294967295)
				if err != nil {
					fail(line, "invalid fwmark %s: %v", quote(val), err)
					bad = true
				}
				mark = uint32(v)
			case "-s", "--scheduler":
				sched = need()
				if !contains(ipvsSchedulers, sched) {
					fail(line, "unknown scheduler %s: expected one of %s", quote(sched), strings.Join(ipvsSchedulers, ", "))
					bad = true
				}
			case "-p", "--persistent":
				pers = "360"
				if val != "" {
					pers = val
					j++
				}
			case "-M", "--netmask":
				gran = need()
			case "-r", "--real-server":
				ap, err := parseHostPort(need())
				if err != nil {
					fail(line, "%v", err)
					bad = true
				}
				real = ap
			case "-g", "--gatewaying":
				method = DR
			case "-i", "--ipip":
				method = TUN
			case "-m", "--masquerading":
				method = NAT
			case "-w", "--weight":
				weight = need()
			case "-x", "--u-threshold":
				ut = need()
			case "-y", "--l-threshold":
				lt = need()
			case "-b", "--sched-flags", "--pe", "--tun-type", "--tun-port":
				need()
			case "-o", "--ops", "--tun-nocsum", "--tun-csum", "--tun-remcsum":
			default:
				fail(line, "unknown ipvsadm option %s", quote(opt))
				bad = true
			}
		}
		if bad {
			continue
		}
		if cmd == "-A" || cmd == "--add-service" {
			if proto == "" && mark == 0 {
				fail(line, "service without -t, -u or -f")
				continue
			}
			if find(proto, svc, mark) != nil {
				fail(line, "service defined twice")
				continue
			}
			if mark != 0 {
				proto = ""
			}
			if sched == "" {
				sched = "wlc"
			}
			services = append(services, &convService{line: line, proto: proto, addr: svc, fwmark: mark,
				sched: sched, persistence: pers, granularity: gran})
			continue
		}
		if mark != 0 {
			proto = ""
		}
		s := find(proto, svc, mark)
		if s == nil {
			fail(line, "server for a service not added before it: expected its -A line first")
			continue
		}
		if !real.Addr().IsValid() {
			fail(line, "server line without -r")
			continue
		}
		if method == "" {
			method = DR // ipvsadm's default
		}
		s.reals = append(s.reals, convReal{addr: real, method: method, weight: weight, hasWeight: weight != "", uthresh: ut, lthresh: lt})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Converted by sluice convert --from ipvsadm from %s.\n# ipvsadm has no health checks: add a checker (TCP_CHECK, HTTP_GET, ...) to each real_server.\n", name)
	for _, s := range services {
		writeService(&b, s)
	}
	return []byte(b.String()), nil
}

func writeService(b *strings.Builder, s *convService) {
	b.WriteString("\n")
	if s.fwmark != 0 {
		fmt.Fprintf(b, "virtual_server fwmark %d {\n", s.fwmark)
	} else {
		fmt.Fprintf(b, "virtual_server %s %d {\n", s.addr.Addr(), s.addr.Port())
	}
	if v := s.opts["checkinterval"]; v != "" {
		fmt.Fprintf(b, "    delay_loop %s\n", v)
	}
	fmt.Fprintf(b, "    lb_algo %s\n", s.sched)
	kind := NAT
	if len(s.reals) > 0 {
		kind = s.reals[0].method
	}
	fmt.Fprintf(b, "    lb_kind %s\n", kind)
	if s.proto != "" { // keepalived ignores (and warns about) a protocol for fwmark services
		fmt.Fprintf(b, "    protocol %s\n", s.proto)
	}
	if s.persistence != "" {
		fmt.Fprintf(b, "    persistence_timeout %s\n", s.persistence)
	}
	if s.granularity != "" {
		fmt.Fprintf(b, "    persistence_granularity %s\n", s.granularity)
	}
	if s.fallback != "" {
		fmt.Fprintf(b, "    sorry_server %s\n", s.fallback)
	}
	if s.inhibit {
		b.WriteString("    inhibit_on_failure\n")
	}
	for _, r := range s.reals {
		fmt.Fprintf(b, "    real_server %s %d {\n", r.addr.Addr(), r.addr.Port())
		w := r.weight
		if !r.hasWeight {
			w = "1"
		}
		fmt.Fprintf(b, "        weight %s\n", w)
		if r.method != kind {
			fmt.Fprintf(b, "        lb_kind %s\n", r.method)
		}
		if r.uthresh != "" && r.uthresh != "0" {
			fmt.Fprintf(b, "        uthreshold %s\n", r.uthresh)
		}
		if r.lthresh != "" && r.lthresh != "0" {
			fmt.Fprintf(b, "        lthreshold %s\n", r.lthresh)
		}
		writeCheck(b, s)
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
}

func writeCheck(b *strings.Builder, s *convService) {
	if s.check == "" {
		return
	}
	fmt.Fprintf(b, "        %s {\n", s.check)
	if v := s.opts["checkport"]; v != "" && s.check != "PING_CHECK" && s.check != "MISC_CHECK" {
		fmt.Fprintf(b, "            connect_port %s\n", v)
	}
	timeout := s.opts["checktimeout"]
	if s.check == "HTTP_GET" || s.check == "SSL_GET" {
		if v := s.opts["negotiatetimeout"]; v != "" {
			timeout = v
		}
	}
	if timeout != "" && s.check != "MISC_CHECK" {
		fmt.Fprintf(b, "            connect_timeout %s\n", timeout)
	}
	if v := s.opts["failurecount"]; v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 1 {
			fmt.Fprintf(b, "            retry %d\n", n-1)
		}
	}
	switch s.check {
	case "HTTP_GET", "SSL_GET":
		if v := s.opts["virtualhost"]; v != "" {
			fmt.Fprintf(b, "            virtualhost %s\n", v)
		}
		path := s.opts["request"]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		fmt.Fprintf(b, "            url {\n                path %s\n", path)
		if v := s.opts["receive"]; v != "" {
			fmt.Fprintf(b, "                regex %s\n", strconv.Quote(v))
		}
		b.WriteString("            }\n")
	case "MISC_CHECK":
		fmt.Fprintf(b, "            misc_path %s\n", strconv.Quote(s.opts["checkcommand"]))
		if timeout != "" {
			fmt.Fprintf(b, "            misc_timeout %s\n", timeout)
		}
	}
	b.WriteString("        }\n")
}

// ldirectordGlobals are the ldirectord.cf options that may be global defaults for every virtual.
var ldirectordGlobals = []string{"checkcommand", "checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "quiescent", "checktype", "service", "checkport", "request", "receive", "virtualhost", "scheduler", "persistent", "netmask", "protocol", "fallback"}

// ConvertLdirectord reads an ldirectord.cf and returns the equivalent keepalived.conf:
// virtual= blocks become virtual_server, real= lines real_server, and checktype/service map to
// TCP_CHECK (connect), HTTP_GET / SSL_GET (negotiate, service http/https), PING_CHECK (ping)
// or MISC_CHECK (external). Options ldirectord has and keepalived lacks are reported as errors.
func ConvertLdirectord(name string, r io.Reader) ([]byte, error) {
	lines, err := readLimited(r)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: name}, Msg: "read: " + err.Error()}}
	}
	var errs ErrorList
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &Error{Pos: Pos{File: name, Line: line}, Msg: sprintf(format, args...)})
	}
	global := map[string]string{}
	var services []*convService
	var cur *convService
	var notes []string
	for i, raw := range lines {
		line := i + 1
		text := raw
		if k := strings.IndexByte(text, '#'); k >= 0 {
			text = text[:k]
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		indented := text[0] == ' ' || text[0] == '\t'
		key, val, ok := strings.Cut(strings.TrimSpace(text), "=")
		if !ok {
			fail(line, "expected KEY=VALUE")
			continue
		}
		key, val = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(val), `"`)
		if !indented {
			cur = nil
		}
		switch {
		case key == "virtual":
			cur = &convService{line: line, opts: map[string]string{}}
			if v, err := parseInt(val, 1, 4294967295); err == nil {
				cur.fwmark = uint32(v)
			} else if ap, err := parseHostPort(val); err == nil {
				cur.addr = ap
			} else {
				fail(line, "invalid virtual %s: expected IP:PORT or a fwmark", quote(val))
				cur = nil
				continue
			}
			services = append(services, cur)
		case cur == nil && contains(ldirectordGlobals, key):
			global[key] = val
		case cur == nil:
			switch key {
			case "autoreload", "callback", "logfile", "emailalert", "emailalertfreq", "emailalertstatus", "emailalertfrom", "smtp", "supervised", "execute", "cleanstop", "fork", "maintenancedir", "readdquiescent", "monitorfile", "cleanup":
				notes = append(notes, sprintf("# ldirectord option %s=%s has no keepalived equivalent; dropped.", key, val))
			default:
				fail(line, "unknown ldirectord option %s", quote(key))
			}
		case key == "real":
			f := strings.Fields(val)
			ap, err := parseHostPort(f[0])
			if err != nil {
				fail(line, "%v", err)
				continue
			}
			rl := convReal{addr: ap, method: DR}
			if len(f) > 1 {
				switch f[1] {
				case "gate":
					rl.method = DR
				case "masq":
					rl.method = NAT
				case "ipip":
					rl.method = TUN
				default:
					fail(line, "invalid forwarding method %s: expected gate, masq or ipip", quote(f[1]))
					continue
				}
			}
			if len(f) > 2 {
				if _, err := parseInt(f[2], 0, maxWeight); err != nil {
					fail(line, "invalid weight %s: %v", quote(f[2]), err)
					continue
				}
				rl.weight, rl.hasWeight = f[2], true
			}
			cur.reals = append(cur.reals, rl)
		case contains(ldirectordGlobals, key):
			cur.opts[key] = val
		default:
			fail(line, "unknown ldirectord virtual option %s", quote(key))
		}
	}
	for _, s := range services {
		for k, v := range global {
			if _, ok := s.opts[k]; !ok {
				s.opts[k] = v
			}
		}
		if err := s.resolveLdirectord(); err != "" {
			fail(s.line, "%s", err)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Converted by sluice convert --from ldirectord from %s.\n", name)
	sort.Strings(notes)
	for _, n := range notes {
		b.WriteString(n + "\n")
	}
	for _, s := range services {
		writeService(&b, s)
	}
	return []byte(b.String()), nil
}

// resolveLdirectord maps a virtual's options onto the service; it returns an error message.
func (s *convService) resolveLdirectord() string {
	o := s.opts
	s.sched = o["scheduler"]
	if s.sched == "" {
		s.sched = "wrr" // ldirectord's default
	}
	if !contains(ipvsSchedulers, s.sched) {
		return sprintf("unknown scheduler %s: expected one of %s", quote(s.sched), strings.Join(ipvsSchedulers, ", "))
	}
	switch p := strings.ToLower(o["protocol"]); {
	case s.fwmark != 0:
		s.proto = ""
	case p == "" || p == "tcp":
		s.proto = "TCP"
	case p == "udp":
		s.proto = "UDP"
	default:
		return sprintf("unsupported protocol %s: expected tcp or udp", quote(p))
	}
	s.persistence = o["persistent"]
	s.granularity = o["netmask"]
	s.inhibit = o["quiescent"] == "yes"
	if fb := o["fallback"]; fb != "" {
		f := strings.Fields(fb)
		ap, err := parseHostPort(f[0])
		if err != nil {
			return "fallback: " + err.Error()
		}
		s.fallback = ap.Addr().String()
		if ap.Port() != 0 {
			s.fallback += " " + strconv.Itoa(int(ap.Port()))
		}
	}
	service := strings.ToLower(o["service"])
	switch ct := strings.ToLower(o["checktype"]); ct {
	case "", "negotiate":
		switch service {
		case "http":
			s.check = "HTTP_GET"
		case "https":
			s.check = "SSL_GET"
		case "", "none":
			s.check = "TCP_CHECK"
		default:
			return sprintf("negotiate check for service %s has no keepalived checker: use checktype=connect or external", service)
		}
		if s.check != "TCP_CHECK" && o["request"] == "" {
			o["request"] = "/"
		}
	case "connect":
		s.check = "TCP_CHECK"
	case "ping":
		s.check = "PING_CHECK"
	case "external", "external-perl":
		if o["checkcommand"] == "" {
			return "checktype=external needs checkcommand=: expected the command to run"
		}
		s.check = "MISC_CHECK"
	case "off", "on":
		s.check = ""
	default:
		if n, err := strconv.Atoi(ct); err == nil && n > 0 {
			s.check = "TCP_CHECK" // N connect checks per negotiate: keepalived has one kind
			break
		}
		return sprintf("unknown checktype %s: expected connect, negotiate, ping, external, off or on", quote(ct))
	}
	return ""
}
