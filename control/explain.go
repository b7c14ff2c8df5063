package control

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/director"
)

// Explanation answers `sluice explain`: which virtual service a packet of a flow matches,
// whether this node serves it (VRRP), what the data plane does with it and why, and the health
// of the real servers involved.
type Explanation struct {
	Proto string         `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	// Configured is the virtual_server the destination names in the configuration, if any.
	Configured string `json:"configured,omitempty"`
	// VRRPInstance is the vrrp_instance covering the VIP and VRRPState its state here; both
	// empty when no instance covers it.
	VRRPInstance string `json:"vrrp_instance,omitempty"`
	VRRPState    string `json:"vrrp_state,omitempty"`
	// The data plane's own explanation (service, flow table, selection, verdict, why), its
	// fields inline; Why also holds the daemon's reasons.
	director.Explanation
	// RealServers are the state and health of the real servers the explanation names.
	RealServers []RealServer `json:"real_servers,omitempty"`
}

// ParseProto maps "tcp" or "udp" (any case) to its protocol.
func ParseProto(s string) (director.Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return director.TCP, nil
	case "udp":
		return director.UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

// errNoExplainer is the answer of a data plane that cannot look into its flow tables.
var errNoExplainer = fmt.Errorf("this data plane cannot explain flows: %w", director.ErrUnsupported)

// Explain implements Handler. It combines what the daemon knows (configuration, VRRP state,
// health) with what the data plane reports about the flow.
func (s *State) Explain(protoName string, src, dst netip.AddrPort) (Explanation, error) {
	proto, err := ParseProto(protoName)
	if err != nil {
		return Explanation{}, fmt.Errorf("explain: %w", err)
	}
	if !src.IsValid() || !dst.IsValid() {
		return Explanation{}, errors.New("explain: source and destination must be ADDRESS:PORT")
	}
	s.mu.Lock()
	cfg, snap := s.cfg, s.snap
	vrrpStates := map[string]string{}
	for _, v := range s.vrrp {
		vrrpStates[v.Name] = v.State
	}
	s.mu.Unlock()

	ex := Explanation{Proto: strings.ToLower(protoName), Src: src, Dst: dst}
	var why []string
	key := director.ServiceKey{VIP: dst.Addr().Unmap(), Port: dst.Port(), Proto: proto}
	if cfg != nil {
		// The virtual_server (or group entry) for this destination, else an all-ports one.
		for _, k := range director.ConfiguredKeys(cfg) {
			if k.FWMark != 0 || k.VIP != key.VIP || k.Proto != key.Proto {
				continue
			}
			if k.Port == key.Port || (k.Port == 0 && ex.Configured == "") {
				ex.Configured = k.String()
			}
		}
		if in, ok := director.VRRPOwner(cfg, key.VIP); ok {
			ex.VRRPInstance = in
			ex.VRRPState = vrrpStates[in]
			if ex.VRRPState == "" {
				ex.VRRPState = "INIT"
			}
		}
	}
	installed := false
	var svc director.Service
	// The data path's choice: the exact service, else the VIP's all-ports one.
	allPorts := key
	allPorts.Port = 0
	for _, sv := range snap.Services {
		if sv.Key == key || (sv.Key == allPorts && !installed) {
			installed, svc = true, sv
		}
		if sv.Key == key {
			break
		}
	}
	switch {
	case ex.VRRPInstance != "" && ex.VRRPState == "MASTER":
		why = append(why, fmt.Sprintf("vrrp_instance %s covers %s and is MASTER here: this node holds the VIP", ex.VRRPInstance, key.VIP))
	case ex.VRRPInstance != "":
		why = append(why, fmt.Sprintf("vrrp_instance %s covers %s and is %s here, not MASTER: this node does not hold the VIP", ex.VRRPInstance, key.VIP, ex.VRRPState))
	}
	if ex.Configured != "" && !installed && ex.VRRPInstance != "" && ex.VRRPState != "MASTER" {
		ex.Verdict = "pass"
		why = append(why, fmt.Sprintf("virtual_server %s is configured but not installed in the data plane while the VRRP instance is not MASTER: packets to it go to the stack", key))
		ex.Why = why
		return ex, nil
	}

	xp, _ := s.stats.(director.Explainer)
	if xp == nil {
		return Explanation{}, errNoExplainer
	}
	dx, err := xp.Explain(proto, src, dst)
	if err != nil {
		return Explanation{}, err
	}
	ex.Explanation = dx
	ex.Why = append(why, dx.Why...)

	// The health and weight of each real server named.
	var named []netip.AddrPort
	for _, ap := range []*netip.AddrPort{dx.Pinned, dx.RealServer} {
		if ap != nil {
			named = append(named, *ap)
		}
	}
	if dx.Selection != nil {
		named = append(named, dx.Selection.Entries...)
	}
	if !installed {
		return ex, nil
	}
	st := s.Status()
	var rss []RealServer
	for _, sv := range st.Services {
		if sv.Protocol == svc.Key.Proto.String() && sv.VIP == svc.Key.VIP && sv.Port == svc.Key.Port {
			rss = sv.RealServers
		}
	}
	seen := map[netip.AddrPort]bool{}
	for _, ap := range named {
		if seen[ap] {
			continue
		}
		seen[ap] = true
		for _, r := range rss {
			if netip.AddrPortFrom(r.Address, r.Port) != ap {
				continue
			}
			r.Stats = nil
			ex.RealServers = append(ex.RealServers, r)
			ex.Why = append(ex.Why, "real server "+ap.String()+": "+healthText(r))
		}
	}
	return ex, nil
}

// healthText says a real server's health and weight in a few words.
func healthText(r RealServer) string {
	var b strings.Builder
	if r.Healthy {
		b.WriteString("healthy")
	} else {
		b.WriteString("DOWN")
	}
	fmt.Fprintf(&b, ", weight %d, %s", r.Weight, r.Forward)
	if r.Check != nil {
		if r.Check.Reason != "" && !r.Healthy {
			fmt.Fprintf(&b, " (%s)", r.Check.Reason)
		}
		fmt.Fprintf(&b, "; last check %s took %v", r.Check.Checker, r.Check.Latency.Round(time.Microsecond))
		if r.Check.Error != "" {
			fmt.Fprintf(&b, " and failed: %s", r.Check.Error)
		}
	}
	return b.String()
}

// WriteExplanation prints ex for people.
func WriteExplanation(w io.Writer, ex Explanation) {
	fmt.Fprintf(w, "%s %s -> %s\n", ex.Proto, ex.Src, ex.Dst)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-12s %s\n", label+":", fmt.Sprintf(format, args...))
	}
	switch {
	case ex.Service != nil:
		algo := ex.Scheduler
		if ex.Table != "" && ex.Table != ex.Scheduler {
			algo += ", table " + ex.Table
		}
		line("service", "%s (lb_algo %s)", ex.Service, algo)
	case ex.Configured != "":
		line("service", "%s, configured but not installed here", ex.Configured)
	default:
		line("service", "none: not a VIP")
	}
	if ex.VRRPInstance != "" {
		line("vrrp", "%s is %s here", ex.VRRPInstance, ex.VRRPState)
	}
	if ex.Flow != "" {
		switch {
		case ex.Flow == director.FlowNone:
			line("flow", "miss (in no flow table)")
		case ex.Pinned != nil && ex.PinnedUsable:
			line("flow", "hit, %s, pinned to %s, idle %v", ex.Flow, ex.Pinned, ex.Idle.Round(time.Millisecond))
		case ex.Pinned != nil:
			line("flow", "hit, %s, pinned to %s which is down or gone: scheduled again", ex.Flow, ex.Pinned)
		default:
			line("flow", "hit, %s", ex.Flow)
		}
	}
	if sel := ex.Selection; sel != nil {
		switch sel.Method {
		case director.SelectSourceHash, director.SelectSourcePortHash, director.SelectDestHash:
			line("selection", "%s %#08x, slot %d of %d", sel.Method, sel.Hash, sel.Slot, sel.Size)
		default:
			var cur []string
			for cpu, c := range sel.Cursors {
				cur = append(cur, fmt.Sprintf("cpu%d:%d", cpu, c))
			}
			line("selection", "round robin over %d entries, next entry per CPU %s", sel.Size, strings.Join(cur, " "))
			var ents []string
			for i, e := range sel.Entries {
				ents = append(ents, fmt.Sprintf("%d:%s", i, e))
			}
			more := ""
			if sel.Size > len(sel.Entries) {
				more = fmt.Sprintf(" ... (%d more)", sel.Size-len(sel.Entries))
			}
			line("table", "%s%s", strings.Join(ents, " "), more)
		}
	}
	for _, r := range ex.RealServers {
		line("real server", "%s: %s", netip.AddrPortFrom(r.Address, r.Port), healthText(r))
	}
	verdict := ex.Verdict
	if ex.RealServer != nil {
		verdict += fmt.Sprintf(" to %s by %s", ex.RealServer, ex.Method)
	} else if ex.Verdict == "forward" && ex.Selection != nil && ex.Selection.Method == director.SelectRoundRobin {
		verdict += " to the entry of the receiving CPU's cursor"
	}
	line("verdict", "%s", verdict)
	fmt.Fprintln(w, "why:")
	for _, y := range ex.Why {
		fmt.Fprintf(w, "  - %s\n", y)
	}
}
