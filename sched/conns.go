package sched

// Connection-count schedulers.
//
// IPVS's lc, wlc, sed, nq, ovf, lblc and lblcr pick, for every new connection, the backend that
// minimises a function of its live connection counts (ip_vs_lc.c, ip_vs_wlc.c, ...). The XDP data
// path cannot: it only indexes a table. So userspace rebuilds the table every refresh period from
// the counts it reads: ConnState.Table predicts each backend's load over the next period from its
// current connections, how long its connections last and the share of the expected arrivals it
// is given, and gives the shares that keep the levels the exact scheduler equalises as equal as
// possible ("water filling"), as the proportions of the table. sim_test.go measures how far from
// the exact schedulers this lands; docs/dataplane.md ("Schedulers") gives the numbers.

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Load is a backend's live connection counts, in ipvsadm's terms, and its recent arrivals.
type Load struct {
	// Active is ActiveConn: established connections.
	Active int
	// Inactive is InActConn: connections in any other state.
	Inactive int
	// New is how many new flows the backend received since the previous ConnState.Table call.
	New int
}

const (
	// ConnResolution is about the length of the tables ConnState.Table returns (before dividing
	// the entries' counts by their gcd): a backend's share of new flows is set to within
	// 1/ConnResolution.
	ConnResolution = 1024
	// LBLCRExpiration is IPVS's default lblcr_expiration: a server set with more than one member
	// that has not grown for this long loses its most loaded member.
	LBLCRExpiration = 24 * time.Hour
	// DefaultConnPeriod is the refresh period assumed before ConnState has seen two calls.
	DefaultConnPeriod = time.Second
	// smoothing is the weight of the newest observation in the load and arrival-rate averages.
	smoothing = 0.1
)

// IsConnAlgo reports whether algo is a scheduler that needs live connection counts (or, for fo,
// a table of one backend), built by ConnState.Table rather than Table.
func IsConnAlgo(algo string) bool {
	switch algo {
	case "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr":
		return true
	}
	return false
}

// ConnState is the scheduling state of one service using a connection-count scheduler: averages
// of each backend's load and arrival rate, from which it estimates how long its connections last,
// and for lblc and lblcr the servers the destination is bound to. The zero value is ready to use.
type ConnState struct {
	last    time.Time
	avg     map[uint32]*average // by backend ID
	set     []uint32            // lblc: the one bound server; lblcr: the server set, by backend ID
	lastMod time.Time           // lblcr: when set last grew or shrank
}

// average is the exponentially weighted mean of a backend's active connections and arrival rate.
type average struct{ load, rate float64 }

// Table returns the selection table for the new flows of the next period (the time since the
// previous call) of a service scheduled by algo: backend IDs, each appearing in proportion to the
// share of new flows it should get, evenly interleaved by smooth weighted round-robin so that a run
// of consecutive entries, the part one period may use, carries every backend in about its share
// (the data path walks the table round-robin). loads[i] are the counts of bs[i];
// backends with Weight <= 0 get nothing. A nil table with a nil error means no backend may take a
// new connection (all down, or ovf with every server overflowing, where IPVS refuses the
// connection too). The table has at most about ConnResolution entries.
//
// lc, wlc, sed and nq minimise a load level per server; the exact scheduler keeps those levels
// equal connection by connection. Table predicts them instead over the next period: each
// server's current connections decay with the mean duration its connections have shown (Little's
// law over the averaged load and arrival rate) and its share of the arrivals adds to it; the
// shares are chosen to make the predicted time-averaged levels equal where possible ("water
// filling": the least loaded servers are raised to a common level, the others get nothing).
// nq is served as sed (its idle-first rule is what sed's fill does for idle servers). fo and ovf
// follow IPVS's choice of the highest-weight server, ovf filling each server up to its weight in
// active connections before the next. lblc and lblcr bind the service's destination (the VIP:
// the data path keys services by destination) to a server (lblc) or a set (lblcr) and move or
// widen it when it is overloaded, by IPVS's rules, evaluated once per call instead of per
// connection; lblcr shares the set as wlc does.
func (s *ConnState) Table(algo string, bs []Backend, loads []Load, now time.Time) ([]uint32, error) {
	if len(loads) != len(bs) {
		return nil, fmt.Errorf("%d loads for %d backends", len(loads), len(bs))
	}
	if !IsConnAlgo(algo) {
		return nil, fmt.Errorf("connection table for %q: %w", algo, ErrUnknownAlgorithm)
	}
	for i, l := range loads {
		if l.Active < 0 || l.Inactive < 0 || l.New < 0 {
			return nil, fmt.Errorf("backend %q: negative count in %+v", bs[i].Key, l)
		}
	}
	var idx []int // eligible backends, in the given order
	for i, b := range bs {
		if b.Weight > MaxWeight {
			return nil, fmt.Errorf("backend %q: weight %d exceeds %d", b.Key, b.Weight, MaxWeight)
		}
		if b.Weight > 0 {
			idx = append(idx, i)
		}
	}
	if algo != "lblc" && algo != "lblcr" {
		s.set, s.lastMod = nil, time.Time{}
	}
	period := DefaultConnPeriod
	if d := now.Sub(s.last); !s.last.IsZero() && d > 0 {
		period = d
	}
	s.last = now
	m := s.observe(bs, loads, period.Seconds())
	if len(idx) == 0 {
		return nil, nil
	}
	shares := make([]float64, len(bs))
	switch algo {
	case "lc", "wlc", "sed", "nq":
		m.fill(algo, bs, loads, idx, shares)
	case "fo":
		shares[highest(bs, idx)] = 1
	case "ovf":
		// Servers by weight, highest first (the first given on a tie); each takes connections
		// until it has more active ones than its weight, counting those expected to end.
		order := slices.Clone(idx)
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(bs[b].Weight, bs[a].Weight) })
		left := max(1, m.arrivals)
		for _, i := range order {
			room := float64(bs[i].Weight) + 1 - float64(loads[i].Active)*m.stay[i]
			if loads[i].Active > bs[i].Weight {
				room = 0 // overflowing now: IPVS skips it until it drops back
			}
			if room <= 0 {
				continue
			}
			shares[i] = min(room, left)
			left -= shares[i]
			if left <= 0 {
				break
			}
		}
	case "lblc":
		s.lblc(bs, loads, idx, shares)
	case "lblcr":
		s.lblcr(bs, loads, idx, m, shares, now)
	}
	return smooth(toWeights(bs, shares)), nil
}

// model is what observe predicts for the next period.
type model struct {
	arrivals float64   // expected new flows of the service
	stay     []float64 // per backend: time-averaged fraction of its current connections still open
	gain     []float64 // per backend: time-averaged connections added by taking all the arrivals
}

// observe updates the averages with loads and returns the model of the next period, of length T
// seconds. A backend's mean connection duration D is its average load over its average arrival
// rate (Little's law); its connections are taken to end at rate 1/D, so over the period a fraction
// D/T*(1-exp(-T/D)) of the current ones remain on average and a share f of the service's arrival
// rate r adds f*r*D*(1-D/T*(1-exp(-T/D))). Without history D is taken to be the mean of the known
// ones, or T.
func (s *ConnState) observe(bs []Backend, loads []Load, T float64) model {
	if s.avg == nil {
		s.avg = map[uint32]*average{}
	}
	var arrivals float64
	live := make(map[uint32]bool, len(bs))
	durs := make([]float64, len(bs))
	var known, sum float64
	for i, b := range bs {
		live[b.ID] = true
		arrivals += float64(loads[i].New)
		a, ok := s.avg[b.ID]
		if !ok {
			a = &average{load: float64(loads[i].Active), rate: float64(loads[i].New) / T}
			s.avg[b.ID] = a
		} else {
			a.load += smoothing * (float64(loads[i].Active) - a.load)
			a.rate += smoothing * (float64(loads[i].New)/T - a.rate)
		}
		if a.rate > 0 && a.load > 0 {
			durs[i] = a.load / a.rate
			known++
			sum += durs[i]
		}
	}
	for id := range s.avg {
		if !live[id] {
			delete(s.avg, id)
		}
	}
	fallback := T
	if known > 0 {
		fallback = sum / known
	}
	m := model{arrivals: arrivals, stay: make([]float64, len(bs)), gain: make([]float64, len(bs))}
	rate := max(arrivals, 1) / T
	for i := range bs {
		d := durs[i]
		if d == 0 {
			d = fallback
		}
		m.stay[i] = d / T * -math.Expm1(-T/d)
		m.gain[i] = rate * d * (1 - m.stay[i])
	}
	return m
}

// lblc keeps the service bound to one server while it is eligible and not overloaded, else binds
// it to the wlc choice (ip_vs_lblc_schedule); that server takes every new connection.
func (s *ConnState) lblc(bs []Backend, loads []Load, idx []int, shares []float64) {
	cur := -1
	if len(s.set) == 1 {
		cur = slices.IndexFunc(idx, func(i int) bool { return bs[i].ID == s.set[0] })
	}
	if cur < 0 || overloaded(bs, loads, idx, idx[cur]) {
		cur = slices.Index(idx, Pick("wlc", bs, loads))
	}
	s.set = []uint32{bs[idx[cur]].ID}
	shares[idx[cur]] = 1
}

// lblcr keeps a set of servers for the service (ip_vs_lblcr_schedule): ineligible members leave
// it, a set unchanged for LBLCRExpiration loses its most loaded member, and when the least loaded
// member is overloaded the wlc choice of all servers joins. New connections go to the set's
// members by wlc.
func (s *ConnState) lblcr(bs []Backend, loads []Load, idx []int, m model, shares []float64, now time.Time) {
	var set []int // indexes into bs
	for _, id := range s.set {
		if j := slices.IndexFunc(idx, func(i int) bool { return bs[i].ID == id }); j >= 0 {
			set = append(set, idx[j])
		}
	}
	if len(set) != len(s.set) {
		s.lastMod = now
	}
	if len(set) > 1 && now.Sub(s.lastMod) > LBLCRExpiration {
		worst := slices.MaxFunc(set, func(a, b int) int { return compareWLC(bs, loads, a, b) })
		set = slices.DeleteFunc(set, func(i int) bool { return i == worst })
		s.lastMod = now
	}
	if len(set) == 0 || overloaded(bs, loads, idx, slices.MinFunc(set, func(a, b int) int { return compareWLC(bs, loads, a, b) })) {
		if p := Pick("wlc", bs, loads); !slices.Contains(set, p) {
			set = append(set, p)
			s.lastMod = now
		}
	}
	s.set = s.set[:0]
	for _, i := range set {
		s.set = append(s.set, bs[i].ID)
	}
	m.fill("wlc", bs, loads, set, shares)
}

// overloaded is IPVS's lblc/lblcr is_overloaded: i has more active connections than its weight
// while some eligible server is below half of its own.
func overloaded(bs []Backend, loads []Load, idx []int, i int) bool {
	if loads[i].Active <= bs[i].Weight {
		return false
	}
	return slices.ContainsFunc(idx, func(j int) bool { return loads[j].Active*2 < bs[j].Weight })
}

// compareWLC orders backends by wlc overhead per weight, (active*256+inactive)/weight.
func compareWLC(bs []Backend, loads []Load, a, b int) int {
	// Counts are bounded by the flow tables' sizes, so the products fit in 64 bits.
	x := int64(overhead(loads[a])) * int64(bs[b].Weight)
	y := int64(overhead(loads[b])) * int64(bs[a].Weight)
	return cmp.Compare(x, y)
}

// overhead is ip_vs_dest_conn_overhead: an active connection costs 256 inactive ones.
func overhead(l Load) int { return l.Active*256 + l.Inactive }

// highest returns the first of idx with the highest weight.
func highest(bs []Backend, idx []int) int {
	best := idx[0]
	for _, i := range idx[1:] {
		if bs[i].Weight > bs[best].Weight {
			best = i
		}
	}
	return best
}

// fill shares the arrivals among the backends idx as the exact scheduler algo ("lc", "wlc",
// "sed"; "nq" as "sed") keeps levels equal: a backend's predicted level is x + f/rate for a share f
// of the arrivals, where x is what remains of its current level over the period; the least loaded
// are raised to a common level L with sum(rate*(L-x)) = 1. Shares are added to shares.
func (m model) fill(algo string, bs []Backend, loads []Load, idx []int, shares []float64) {
	type lvl struct {
		i       int
		x, rate float64
	}
	ls := make([]lvl, 0, len(idx))
	for _, i := range idx {
		w := float64(bs[i].Weight)
		active := float64(loads[i].Active) * m.stay[i]
		gain := max(m.gain[i], 1e-9)
		switch algo {
		case "lc": // min active*256+inactive
			ls = append(ls, lvl{i, active + float64(loads[i].Inactive)/256, 1 / gain})
		case "wlc": // min (active*256+inactive)/weight
			ls = append(ls, lvl{i, (active + float64(loads[i].Inactive)/256) / w, w / gain})
		case "sed", "nq": // min (active+1)/weight
			ls = append(ls, lvl{i, (active + 1) / w, w / gain})
		}
	}
	slices.SortStableFunc(ls, func(a, b lvl) int { return cmp.Compare(a.x, b.x) })
	// Raise the k lowest to L = (1 + sum rate*x) / sum rate while L stays at or below the next.
	var sumR, sumRX, level float64
	k := 0
	for k < len(ls) {
		sumR += ls[k].rate
		sumRX += ls[k].rate * ls[k].x
		k++
		level = (1 + sumRX) / sumR
		if k == len(ls) || level <= ls[k].x {
			break
		}
	}
	for _, l := range ls[:k] {
		shares[l.i] += max(0, l.rate*(level-l.x))
	}
}

// smooth returns a table in which each backend appears Weight times (after dividing the weights by
// their gcd), interleaved by smooth weighted round-robin: each step every backend gains its weight
// in credit and the one with the most credit (the first on a tie) is picked and pays the total.
func smooth(bs []Backend) []uint32 {
	if len(bs) == 0 {
		return nil
	}
	w := make([]uint64, len(bs))
	for i, b := range bs {
		w[i] = uint64(b.Weight)
	}
	total := reduce(w)
	credit := make([]int64, len(bs))
	t := make([]uint32, 0, total)
	for range total {
		best := 0
		for i := range bs {
			credit[i] += int64(w[i])
			if credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= int64(total)
		t = append(t, bs[best].ID)
	}
	return t
}

// toWeights turns shares into integer weights summing to about ConnResolution, keeping every
// backend with a positive share (at least weight 1) in the given order.
func toWeights(bs []Backend, shares []float64) []Backend {
	var total float64
	for _, s := range shares {
		total += s
	}
	if total <= 0 {
		return nil
	}
	var out []Backend
	for i, s := range shares {
		if s <= total*1e-9 {
			continue
		}
		b := bs[i]
		b.Weight = max(1, int(math.Round(s/total*ConnResolution)))
		out = append(out, b)
	}
	return out
}

// Pick returns the index in bs of the backend the exact IPVS scheduler algo ("lc", "wlc", "sed",
// "nq", "fo" or "ovf") gives the next connection, or -1 when none may take it. The first of equal
// candidates wins, as IPVS walks its list in order.
func Pick(algo string, bs []Backend, loads []Load) int {
	best := -1
	for i, b := range bs {
		if b.Weight <= 0 {
			continue
		}
		l := loads[i]
		switch algo {
		case "lc":
			if best < 0 || overhead(l) < overhead(loads[best]) {
				best = i
			}
		case "wlc":
			if best < 0 || compareWLC(bs, loads, i, best) < 0 {
				best = i
			}
		case "nq":
			if l.Active == 0 {
				return i
			}
			fallthrough
		case "sed":
			if best < 0 || int64(l.Active+1)*int64(bs[best].Weight) < int64(loads[best].Active+1)*int64(b.Weight) {
				best = i
			}
		case "fo":
			if best < 0 || b.Weight > bs[best].Weight {
				best = i
			}
		case "ovf":
			if l.Active <= b.Weight && (best < 0 || b.Weight > bs[best].Weight) {
				best = i
			}
		default:
			return -1
		}
	}
	return best
}
