package ipvsfallback

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-lb/sluice/director"
)

var _ director.Explainer = (*Dataplane)(nil)

// connTable is the kernel's listing of IPVS connections (and persistence templates) of the
// reading process's network namespace.
const connTable = "/proc/net/ip_vs_conn"

// maxConnLines bounds how much of the connection table one explanation reads.
const maxConnLines = 10_000_000

// Explain says what kernel IPVS does with the next packet from src to dst: the service it
// matches, the connection entry that pins the flow (from /proc/net/ip_vs_conn, in the caller's
// network namespace), or, for a new flow, the client's persistence template or that the kernel's
// scheduler picks the real server, which cannot be computed from user space.
func (d *Dataplane) Explain(proto director.Proto, src, dst netip.AddrPort) (director.Explanation, error) {
	f, err := os.Open(connTable)
	if err != nil {
		return director.Explanation{}, fmt.Errorf("explain: read IPVS connections: %w", err)
	}
	defer f.Close()
	return d.explain(f, proto, src, dst)
}

// explain is Explain reading the connection table from r.
func (d *Dataplane) explain(r io.Reader, proto director.Proto, src, dst netip.AddrPort) (director.Explanation, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	key := director.ServiceKey{VIP: dst.Addr(), Port: dst.Port(), Proto: proto}
	d.mu.Lock()
	svc := d.applied[key]
	var dests map[destKey]dest
	sched := ""
	if svc != nil {
		dests = make(map[destKey]dest, len(svc.dests))
		for k, v := range svc.dests {
			dests[k] = v
		}
		sched = svc.sched
	}
	d.mu.Unlock()
	if svc == nil {
		return director.Explanation{Flow: director.FlowNone, Verdict: "pass", Why: []string{
			fmt.Sprintf("not a VIP: this data plane has no IPVS service %s, so the packet is passed to the stack", key)}}, nil
	}
	ex := director.Explanation{Service: &key, Scheduler: sched, Table: sched, Verdict: "forward",
		Why: []string{fmt.Sprintf("%s is IPVS service %s (scheduler %s)", dst, key, sched)}}

	conn, tmpl, err := findConn(r, proto, src, dst)
	if err != nil {
		return director.Explanation{}, fmt.Errorf("explain: %w", err)
	}
	method := func(ap netip.AddrPort) string {
		if de, ok := dests[destKey{ap.Addr(), ap.Port()}]; ok {
			return de.method.String()
		}
		return ""
	}
	if conn != nil {
		ex.Flow = director.FlowConfirmed
		ex.Pinned = &conn.dest
		ex.PinnedUsable = method(conn.dest) != ""
		ex.Why = append(ex.Why, fmt.Sprintf("flow table hit: IPVS connection to %s in state %s, expiring in %ds",
			conn.dest, conn.state, conn.expires))
		if !ex.PinnedUsable {
			ex.Verdict = "drop"
			ex.Why = append(ex.Why, fmt.Sprintf("%s is no longer a real server of the service: IPVS drops the flow's packets (or, with net.ipv4.vs.expire_nodest_conn, expires it)", conn.dest))
			return ex, nil
		}
		ex.RealServer, ex.Method = &conn.dest, method(conn.dest)
		ex.Why = append(ex.Why, fmt.Sprintf("forwarded to %s by %s", conn.dest, ex.Method))
		return ex, nil
	}
	ex.Flow = director.FlowNone
	ex.Why = append(ex.Why, fmt.Sprintf("flow table hit: no, IPVS has no connection %s -> %s", src, dst))
	if tmpl != nil && method(tmpl.dest) != "" {
		ex.RealServer, ex.Method = &tmpl.dest, method(tmpl.dest)
		ex.Why = append(ex.Why, fmt.Sprintf("persistence: the client's template names %s (expiring in %ds)", tmpl.dest, tmpl.expires),
			fmt.Sprintf("forwarded to %s by %s", tmpl.dest, ex.Method))
		return ex, nil
	}
	var eligible []string
	for k, de := range dests {
		if de.weight > 0 {
			eligible = append(eligible, fmt.Sprintf("%s (weight %d)", netip.AddrPortFrom(k.addr, k.port), de.weight))
		}
	}
	slices.Sort(eligible)
	if len(eligible) == 0 {
		ex.Verdict = "drop"
		ex.Why = append(ex.Why, "the service has no real server of weight above 0: IPVS drops new flows")
		return ex, nil
	}
	ex.Why = append(ex.Why, fmt.Sprintf("new flow: the kernel's %s scheduler picks one of %s; the choice is made in the kernel and cannot be computed here",
		sched, strings.Join(eligible, ", ")))
	return ex, nil
}

// ipvsConn is one line of /proc/net/ip_vs_conn.
type ipvsConn struct {
	dest    netip.AddrPort
	state   string
	expires int
}

// findConn scans the connection table for the connection src -> dst of proto and for the
// persistence template of src's address for dst (protocol "IP", client port 0, service port or
// 0 for a port-less template).
func findConn(r io.Reader, proto director.Proto, src, dst netip.AddrPort) (conn, tmpl *ipvsConn, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 64<<10)
	for n := 0; sc.Scan(); n++ {
		if n >= maxConnLines {
			return nil, nil, fmt.Errorf("%s: more than %d lines", connTable, maxConnLines)
		}
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] == "Pro" {
			continue
		}
		from, ok1 := connAddrPort(f[1], f[2])
		to, ok2 := connAddrPort(f[3], f[4])
		dest, ok3 := connAddrPort(f[5], f[6])
		expires, err := strconv.Atoi(f[8])
		if !ok1 || !ok2 || !ok3 || err != nil {
			continue
		}
		c := &ipvsConn{dest: dest, state: f[7], expires: expires}
		switch {
		case f[0] == proto.String() && from == src && to == dst:
			conn = c
		case f[0] == "IP" && from.Addr() == src.Addr() && from.Port() == 0 && to.Addr() == dst.Addr() &&
			(to.Port() == dst.Port() || to.Port() == 0):
			tmpl = c
		}
		if conn != nil {
			return conn, tmpl, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", connTable, err)
	}
	return conn, tmpl, nil
}

// connAddrPort parses an address as /proc/net/ip_vs_conn prints it (IPv4 as 8 hex digits in host
// order of the number, IPv6 in full colon notation) and a port as 4 hex digits.
func connAddrPort(addr, port string) (netip.AddrPort, bool) {
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if strings.Contains(addr, ":") {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(a, uint16(p)), true
	}
	v, err := strconv.ParseUint(addr, 16, 32)
	if err != nil || len(addr) != 8 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), uint16(p)), true
}
