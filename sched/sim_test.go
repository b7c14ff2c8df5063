package sched

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The simulation measures how far the table approximation of the connection-count schedulers
// (ConnState.Weights turned into a wrr table every refresh period, indexed round-robin by new
// flows, as the data path does) lands from the exact IPVS schedulers (Pick for every
// connection). Both run the same stream of arrivals: Poisson arrivals, exponential durations,
// each connection lasting longer on slow servers (its base duration times the server's slowness),
// which is what least-connection scheduling exists for. All randomness comes from a fixed seed.

// simScenario is one workload.
type simScenario struct {
	name     string
	algo     string
	weights  []int
	slowness []float64 // duration factor per server
	rate     float64   // arrivals per second
	meanDur  float64   // seconds, before slowness
	seconds  float64   // simulated time
}

// simResult is the time-averaged load of one run.
type simResult struct {
	norm    []float64 // mean active connections per server, divided by weight (lc: not divided)
	spread  float64   // mean over samples of max minus min normalised load
	refused int       // arrivals no backend took
}

type conn struct {
	end    float64
	server int
}

type connHeap []conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].end < h[j].end }
func (h connHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *connHeap) Push(x any)        { *h = append(*h, x.(conn)) }
func (h *connHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// arrival is one connection of the shared stream.
type arrival struct{ at, dur float64 }

func arrivals(sc simScenario) []arrival {
	r := rand.New(rand.NewPCG(1, 2))
	var out []arrival
	for t := r.ExpFloat64() / sc.rate; t < sc.seconds; t += r.ExpFloat64() / sc.rate {
		out = append(out, arrival{at: t, dur: r.ExpFloat64() * sc.meanDur})
	}
	return out
}

// simulate runs sc exactly (period 0) or with tables refreshed every period seconds.
func simulate(t *testing.T, sc simScenario, stream []arrival, period float64, pick func(loads []Load) int) simResult {
	t.Helper()
	bs := make([]Backend, len(sc.weights))
	for i, w := range sc.weights {
		bs[i] = Backend{ID: uint32(i), Key: fmt.Sprint(i), Weight: w}
	}
	loads := make([]Load, len(bs))
	live := &connHeap{}
	const sampleEvery = 0.05
	var res simResult
	res.norm = make([]float64, len(bs))
	samples := 0
	nextSample := 0.0
	var state ConnState
	var table []uint32
	pos := 0
	nextRefresh := 0.0
	advance := func(now float64) {
		for {
			// Departures and samples in time order, up to now.
			dep := math.Inf(1)
			if live.Len() > 0 {
				dep = (*live)[0].end
			}
			if dep > now && nextSample > now {
				return
			}
			if dep <= nextSample {
				c := heap.Pop(live).(conn)
				loads[c.server].Active--
				continue
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for i, l := range loads {
				x := float64(l.Active)
				if sc.algo != "lc" {
					x /= float64(bs[i].Weight)
				}
				res.norm[i] += x
				lo, hi = min(lo, x), max(hi, x)
			}
			res.spread += hi - lo
			samples++
			nextSample += sampleEvery
		}
	}
	for _, a := range stream {
		advance(a.at)
		var s int
		if period == 0 {
			s = pick(loads)
		} else {
			for a.at >= nextRefresh {
				var err error
				table, err = state.Table(sc.algo, bs, loads, time.Unix(0, int64(nextRefresh*1e9)))
				if err != nil {
					t.Fatal(err)
				}
				for i := range loads {
					loads[i].New = 0
				}
				nextRefresh += period
			}
			s = -1
			if len(table) > 0 {
				s = int(table[pos%len(table)])
				pos++
			}
		}
		if s < 0 {
			res.refused++
			continue
		}
		loads[s].Active++
		loads[s].New++
		heap.Push(live, conn{end: a.at + a.dur*sc.slowness[s], server: s})
	}
	advance(sc.seconds)
	for i := range res.norm {
		res.norm[i] /= float64(samples)
	}
	res.spread /= float64(samples)
	return res
}

// balance returns the mean of norm and the largest distance of an element from it, relative to it.
func balance(norm []float64) (mean, imbalance float64) {
	for _, x := range norm {
		mean += x / float64(len(norm))
	}
	for _, x := range norm {
		imbalance = max(imbalance, math.Abs(x-mean)/mean)
	}
	return mean, imbalance
}

// TestSimulationApproximatesExactSchedulers is the measurement docs/dataplane.md quotes. For each
// workload it asserts that every server's time-averaged (normalised) load under the table
// approximation, refreshed every second, is within maxDiff of the mean load from the exact
// scheduler's, and that the approximation keeps servers at least as balanced as plain wrr would.
func TestSimulationApproximatesExactSchedulers(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	// maxDiff bounds max_i |approx_i - exact_i| / mean_i(exact_i), and maxImbalance how much
	// further from the mean than the exact scheduler's the approximation may put a server;
	// docs/dataplane.md quotes both.
	const (
		maxDiff      = 0.15
		maxImbalance = 0.05
	)
	slow := []float64{1, 1, 2, 4}
	scenarios := []simScenario{
		{name: "lc short connections", algo: "lc", weights: []int{1, 1, 1, 1}, slowness: slow, rate: 400, meanDur: 0.05, seconds: 300},
		{name: "lc long connections", algo: "lc", weights: []int{1, 1, 1, 1}, slowness: slow, rate: 20, meanDur: 5, seconds: 1200},
		{name: "wlc short connections", algo: "wlc", weights: []int{1, 2, 3, 4}, slowness: slow, rate: 400, meanDur: 0.05, seconds: 300},
		{name: "wlc long connections", algo: "wlc", weights: []int{4, 3, 2, 1}, slowness: slow, rate: 20, meanDur: 5, seconds: 1200},
		{name: "sed", algo: "sed", weights: []int{1, 2, 3, 4}, slowness: slow, rate: 200, meanDur: 0.2, seconds: 300},
		{name: "nq", algo: "nq", weights: []int{1, 2, 3, 4}, slowness: slow, rate: 200, meanDur: 0.2, seconds: 300},
		{name: "wlc equal servers", algo: "wlc", weights: []int{1, 2, 3, 4}, slowness: []float64{1, 1, 1, 1}, rate: 400, meanDur: 0.1, seconds: 300},
		{name: "lc light load", algo: "lc", weights: []int{1, 1, 1, 1}, slowness: slow, rate: 20, meanDur: 0.1, seconds: 1200},
		{name: "wlc heavy load", algo: "wlc", weights: []int{1, 2, 3, 4}, slowness: slow, rate: 5000, meanDur: 0.1, seconds: 60},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			stream := arrivals(sc)
			bs := make([]Backend, len(sc.weights))
			for i, w := range sc.weights {
				bs[i] = Backend{ID: uint32(i), Weight: w}
			}
			exact := simulate(t, sc, stream, 0, func(loads []Load) int { return Pick(sc.algo, bs, loads) })
			approx := simulate(t, sc, stream, 1, nil)
			wrr, err := Table("wrr", bs, 0)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			base := simulate(t, sc, stream, 0, func([]Load) int { n++; return int(wrr[(n-1)%len(wrr)]) })

			mean, exactImb := balance(exact.norm)
			_, approxImb := balance(approx.norm)
			var worst float64
			for i := range exact.norm {
				worst = max(worst, math.Abs(approx.norm[i]-exact.norm[i])/mean)
			}
			t.Logf("exact %.2f imbalance %.1f%% spread %.2f; approx %.2f imbalance %.1f%% spread %.2f; wrr %.2f spread %.2f; worst difference %.1f%%",
				exact.norm, 100*exactImb, exact.spread, approx.norm, 100*approxImb, approx.spread, base.norm, base.spread, 100*worst)
			if worst > maxDiff {
				t.Errorf("a server's mean load differs from the exact scheduler's by %.1f%% of the mean, want <= %.0f%%", 100*worst, 100*maxDiff)
			}
			if approxImb > exactImb+maxImbalance {
				t.Errorf("imbalance %.1f%%, exact scheduler's %.1f%%: want at most %.0f points more", 100*approxImb, 100*exactImb, 100*maxImbalance)
			}
			if approx.refused != 0 || exact.refused != 0 {
				t.Errorf("refused connections: exact %d, approx %d", exact.refused, approx.refused)
			}
			if approx.spread > 1.1*base.spread {
				t.Errorf("approximation's mean spread %.2f is worse than wrr's %.2f", approx.spread, base.spread)
			}
		})
	}
}
