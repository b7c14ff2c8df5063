package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BFDInstance is a bfd_instance block: a BFD session with neighbor_ip, which BFD_CHECK
// checkers (by Name) and track_bfd entries follow. Zero timers mean keepalived's defaults.
type BFDInstance struct {
	Pos      Pos
	Name     string
	Neighbor netip.Addr // neighbor_ip (or neighbour_ip)
	Source   netip.Addr // source_ip; invalid when unset
	MinRx    time.Duration
	MinTx    time.Duration
	IdleTx   time.Duration
	// Multiplier is multiplier (1..255; keepalived's default 5).
	Multiplier int
	Passive    bool
	// TTL is ttl (IPv4) and HopLimit hoplimit (IPv6), the TTL sent; zero: 255.
	TTL      int
	HopLimit int
	// MaxHops is max_hops: how far below 255 a received TTL may be (255 disables the check).
	MaxHops int
	// Weight and Reverse are weight W [reverse], for track_bfd.
	Weight  int
	Reverse bool
	// OnlyVRRP and OnlyChecker are the vrrp and checker flags.
	OnlyVRRP, OnlyChecker bool
}

// Defaults of bfd_instance, from keepalived.conf(5).
const (
	DefaultBFDMinRx      = 10 * time.Millisecond
	DefaultBFDMinTx      = 10 * time.Millisecond
	DefaultBFDIdleTx     = time.Second
	DefaultBFDMultiplier = 5
)

var bfdKeywords = []string{"neighbor_ip", "neighbour_ip", "source_ip", "min_rx", "min_tx", "idle_tx",
	"multiplier", "passive", "ttl", "hoplimit", "max_hops", "weight", "vrrp", "checker"}

func (p *parser) bfdInstance(n *node) (BFDInstance, bool) {
	b := BFDInstance{Pos: n.pos, MinRx: DefaultBFDMinRx, MinTx: DefaultBFDMinTx, IdleTx: DefaultBFDIdleTx,
		Multiplier: DefaultBFDMultiplier}
	var ok bool
	b.Name, ok = p.blockName(n)
	if !p.needBlock(n) {
		return b, false
	}
	for _, c := range n.children {
		good := true
		switch c.name {
		case "neighbor_ip", "neighbour_ip":
			b.Neighbor, good = p.addrValue(c)
		case "source_ip":
			b.Source, good = p.addrValue(c)
		case "min_rx":
			b.MinRx, good = p.millisValue(c)
		case "min_tx":
			b.MinTx, good = p.millisValue(c)
		case "idle_tx":
			var v time.Duration
			if v, good = p.millisValue(c); good {
				if v < time.Second {
					// keepalived: a configuration error, the value ignored.
					p.warnf(c.args[0].pos, "bfd_instance %s idle_tx %s is below 1000 ms (RFC 5880 wants at least 1 s while not Up); using %v as keepalived does",
						b.Name, c.args[0].text, DefaultBFDIdleTx)
				} else {
					b.IdleTx = v
				}
			}
		case "multiplier":
			var v int64
			v, good = p.intValue(c, 1, 255)
			b.Multiplier = int(v)
		case "passive":
			b.Passive, good = p.flag(c)
		case "ttl", "hoplimit":
			var v int64
			v, good = p.intValue(c, 1, 255)
			if c.name == "ttl" {
				b.TTL = int(v)
			} else {
				b.HopLimit = int(v)
			}
		case "max_hops":
			var v int64
			v, good = p.intValue(c, 0, 255)
			b.MaxHops = int(v)
		case "weight":
			var t token
			t, good = p.valueArgs(c, "a weight in -253..253 [reverse]")
			if good {
				v, err := parseSignedInt(t.text, -253, 253)
				if err != nil {
					p.errorf(t.pos, "invalid weight %s: %v", quote(t.text), err)
					good = false
				}
				b.Weight = int(v)
				b.Reverse = len(c.args) > 1 && c.args[1].text == "reverse"
			}
		case "vrrp":
			b.OnlyVRRP = true
		case "checker":
			b.OnlyChecker = true
		default:
			p.other(c, "in bfd_instance", nil, bfdKeywords)
		}
		ok = ok && good
	}
	if ok && !b.Neighbor.IsValid() {
		p.errorf(n.pos, "bfd_instance %s needs neighbor_ip", b.Name)
		ok = false
	}
	if ok && b.Source.IsValid() && b.Source.Is4() != b.Neighbor.Is4() {
		p.errorf(n.pos, "bfd_instance %s: source_ip %s and neighbor_ip %s are of different families", b.Name, b.Source, b.Neighbor)
		ok = false
	}
	return b, ok
}

// millisValue reads keepalived's BFD intervals: milliseconds with up to 3 decimal places.
func (p *parser) millisValue(n *node) (time.Duration, bool) {
	t, ok := p.value(n, "milliseconds in 0.001..4294967 with at most 3 decimal places")
	if !ok {
		return 0, false
	}
	whole, frac, hasDot := strings.Cut(t.text, ".")
	w, err := strconv.ParseUint(whole, 10, 32)
	bad := err != nil || hasDot && (frac == "" || len(frac) > 3 || strings.TrimLeft(frac, "0123456789") != "") || w > 4294967
	var us uint64
	if !bad {
		us = w * 1000
		if frac != "" {
			f, _ := strconv.ParseUint((frac + "00")[:3], 10, 32)
			us += f
		}
		bad = us == 0
	}
	if bad {
		p.errorf(t.pos, "invalid %s %s: expected milliseconds in 0.001..4294967 with at most 3 decimal places", n.name, quote(t.text))
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// checkBFDNames refuses duplicate bfd_instance names and drops BFD_CHECKs naming no
// bfd_instance, with a warning, as keepalived does.
func (p *parser) checkBFDNames(cfg *Config) {
	names := map[string]bool{}
	kept := cfg.BFDInstances[:0]
	for _, b := range cfg.BFDInstances {
		if names[b.Name] {
			p.errorf(b.Pos, "bfd_instance %s is defined twice", b.Name)
			continue
		}
		names[b.Name] = true
		kept = append(kept, b)
	}
	cfg.BFDInstances = kept
	for _, vss := range [][]VirtualServer{cfg.VirtualServers, cfg.OtherVirtualServers} {
		for i := range vss {
			for j := range vss[i].RealServers {
				rs := &vss[i].RealServers[j]
				var keep []Checker
				for _, c := range rs.Checkers {
					if c.BFD != nil && !names[c.BFD.Name] {
						p.warnf(c.Pos, "BFD_CHECK bfd_instance %s not found: checker ignored as keepalived does", c.BFD.Name)
						continue
					}
					keep = append(keep, c)
				}
				rs.Checkers = keep
			}
		}
	}
}
