package director

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/vrrp"
)

// Change is one difference a reload from one configuration to another would make.
type Change struct {
	// Op is "+" (added), "-" (removed) or "~" (changed).
	Op string `json:"op"`
	// Service is the virtual service concerned, e.g. "TCP 10.0.0.100:80".
	Service string `json:"service"`
	// RealServer is the real server concerned, or empty for the service itself.
	RealServer string `json:"real_server,omitempty"`
	// Detail says what changes, e.g. "weight 1 -> 3".
	Detail string `json:"detail,omitempty"`
}

func (c Change) String() string {
	s := c.Op + " " + c.Service
	if c.RealServer != "" {
		s += " -> " + c.RealServer
	}
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

// Plan lists what reloading from old to next would change in virtual services, real servers
// and their health checks, in a stable order. Health state does not enter: a reload keeps the
// verdicts of real servers that stay, and new ones start as keepalived starts them.
func Plan(old, next *config.Config) []Change {
	var out []Change
	oldSnap, newSnap := snapshotOf(old, nil), snapshotOf(next, nil)
	oldChecks, newChecks := checksByTarget(old), checksByTarget(next)

	olds := map[ServiceKey]Service{}
	for _, s := range oldSnap.Services {
		olds[s.Key] = s
	}
	news := map[ServiceKey]Service{}
	for _, s := range newSnap.Services {
		news[s.Key] = s
	}
	var keys []ServiceKey
	for k := range olds {
		keys = append(keys, k)
	}
	for k := range news {
		if _, ok := olds[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareKeys)

	for _, k := range keys {
		o, inOld := olds[k]
		n, inNew := news[k]
		name := k.String()
		switch {
		case !inOld:
			out = append(out, Change{Op: "+", Service: name, Detail: fmt.Sprintf("%s, %d real servers", n.Scheduler, len(n.Backends))})
			continue
		case !inNew:
			out = append(out, Change{Op: "-", Service: name, Detail: fmt.Sprintf("%d real servers", len(o.Backends))})
			continue
		}
		if o.Scheduler != n.Scheduler {
			out = append(out, Change{Op: "~", Service: name, Detail: fmt.Sprintf("lb_algo %s -> %s", o.Scheduler, n.Scheduler)})
		}
		out = append(out, planBackends(name, o, n, oldChecks, newChecks)...)
	}
	return append(out, planVRRP(old, next)...)
}

// planVRRP lists vrrp_instance changes: added and removed instances, and for changed ones
// what a reload applies (priority in place; anything else restarts the instance).
func planVRRP(old, next *config.Config) []Change {
	var out []Change
	olds := map[string]config.VRRPInstance{}
	for _, in := range old.VRRPInstances {
		olds[in.Name] = in
	}
	news := map[string]bool{}
	for _, n := range next.VRRPInstances {
		news[n.Name] = true
		name := "vrrp_instance " + n.Name
		o, ok := olds[n.Name]
		if !ok {
			out = append(out, Change{Op: "+", Service: name, Detail: fmt.Sprintf("%s vrid %d priority %d, vips %s",
				n.Interface, n.VirtualRouterID, n.Priority, prefixes(n.VirtualAddresses))})
			continue
		}
		was, now := specOf(old, o), specOf(next, n)
		if sameSpec(was, now) {
			continue
		}
		var d []string
		if o.Priority != n.Priority {
			d = append(d, fmt.Sprintf("priority %d -> %d", o.Priority, n.Priority))
		}
		if a, b := prefixes(o.VirtualAddresses), prefixes(n.VirtualAddresses); a != b {
			d = append(d, fmt.Sprintf("vips %s -> %s", a, b))
		}
		// The priority and the addresses change in place (vrrpGroup.inPlace); anything else,
		// the owner's priority 255 or another address family restarts the instance.
		was.Instance.Priority, now.Instance.Priority = 0, 0
		was.Instance.VirtualAddresses, was.Instance.VIPs, was.Instance.ExcludedVIPs = n.VirtualAddresses, n.VIPs, n.ExcludedVIPs
		owner := o.Priority != n.Priority && (o.Priority == vrrp.PriorityOwner || n.Priority == vrrp.PriorityOwner)
		family := len(o.VirtualAddresses) > 0 && len(n.VirtualAddresses) > 0 &&
			o.VirtualAddresses[0].Addr().Is4() != n.VirtualAddresses[0].Addr().Is4()
		if !sameSpec(was, now) || owner || family {
			d = append(d, "settings changed: the instance restarts (sends priority 0, then runs again)")
		}
		out = append(out, Change{Op: "~", Service: name, Detail: strings.Join(d, ", ")})
	}
	var gone []string
	for name := range olds {
		if !news[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		out = append(out, Change{Op: "-", Service: "vrrp_instance " + name, Detail: "stops: sends priority 0 and releases its VIPs"})
	}
	return out
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// FlowShare is how many of the flows a data plane holds a reload would take off their real
// server: those pinned to a real server (or service) the new configuration no longer has.
// Flows to a real server whose weight drops to 0 are drained, not moved.
type FlowShare struct {
	Moving uint64 `json:"moving"`
	Total  uint64 `json:"total"`
}

// MovingFlows counts the flows in conns (per service and real server, as the data plane
// reports them) that a reload to next would move.
func MovingFlows(next *config.Config, conns map[ServiceKey]map[netip.AddrPort]uint64) FlowShare {
	keep := map[ServiceKey]map[netip.AddrPort]bool{}
	for _, s := range snapshotOf(next, nil).Services {
		m := map[netip.AddrPort]bool{}
		for _, b := range s.Backends {
			m[netip.AddrPortFrom(b.Addr, b.Port)] = true
		}
		keep[s.Key] = m
	}
	var fs FlowShare
	for k, bs := range conns {
		for ap, n := range bs {
			fs.Total += n
			if !keep[k][ap] {
				fs.Moving += n
			}
		}
	}
	return fs
}

func planBackends(name string, o, n Service, oldChecks, newChecks map[string][]string) []Change {
	var out []Change
	ob := map[netip.AddrPort]Backend{}
	for _, b := range o.Backends {
		ob[netip.AddrPortFrom(b.Addr, b.Port)] = b
	}
	nb := map[netip.AddrPort]Backend{}
	for _, b := range n.Backends {
		nb[netip.AddrPortFrom(b.Addr, b.Port)] = b
	}
	var aps []netip.AddrPort
	for ap := range ob {
		aps = append(aps, ap)
	}
	for ap := range nb {
		if _, ok := ob[ap]; !ok {
			aps = append(aps, ap)
		}
	}
	slices.SortFunc(aps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	for _, ap := range aps {
		ob, inOld := ob[ap]
		nb, inNew := nb[ap]
		id := name + " -> " + ap.String()
		switch {
		case !inOld:
			out = append(out, Change{Op: "+", Service: name, RealServer: ap.String(),
				Detail: fmt.Sprintf("weight %d, %s, %s", nb.Weight, nb.Method, checksText(newChecks[id]))})
			continue
		case !inNew:
			out = append(out, Change{Op: "-", Service: name, RealServer: ap.String()})
			continue
		}
		var d []string
		if ob.Weight != nb.Weight {
			d = append(d, fmt.Sprintf("weight %d -> %d", ob.Weight, nb.Weight))
		}
		if ob.Method != nb.Method {
			d = append(d, fmt.Sprintf("lb_kind %s -> %s", ob.Method, nb.Method))
		}
		if oc, nc := checksText(oldChecks[id]), checksText(newChecks[id]); oc != nc {
			d = append(d, fmt.Sprintf("checks %s -> %s", oc, nc))
		}
		if len(d) > 0 {
			out = append(out, Change{Op: "~", Service: name, RealServer: ap.String(), Detail: strings.Join(d, ", ")})
		}
	}
	return out
}

// checksByTarget describes each real server's health checks, with their timing, by the target
// ID of every service it serves (TargetIDOf): a group's real servers under each of its entries.
func checksByTarget(cfg *config.Config) map[string][]string {
	m := map[string][]string{}
	cfg = served(cfg) // group and fwmark services too
	for _, vs := range cfg.VirtualServers {
		keys := serviceKeys(cfg, vs)
		for _, rs := range vs.RealServers {
			var out []string
			if cs, err := checkersOf(cfg, rs); err != nil {
				out = []string{"invalid: " + err.Error()}
			} else {
				for _, c := range cs {
					out = append(out, c.String())
				}
				if len(rs.Checkers) > 0 {
					c := rs.Checkers[0]
					out = append(out, fmt.Sprintf("every %v, retry %d after %v", c.DelayLoop, c.Retry, c.DelayBeforeRetry))
				}
			}
			for _, k := range keys {
				m[TargetIDOf(k, netip.AddrPortFrom(rs.Addr, rs.Port))] = out
			}
		}
	}
	return m
}

func checksText(cs []string) string {
	if len(cs) == 0 {
		return "no health check"
	}
	return strings.Join(cs, "; ")
}
