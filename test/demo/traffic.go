package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// client is the demo's traffic: a bounded number of short HTTP requests per second to the VIP,
// each on a new TCP connection (no keep-alive), so every request is a new flow the director
// schedules. It counts them per phase and in total.
type client struct {
	http    *http.Client
	url     string
	rate    int // requests started per second
	timeout time.Duration

	mu     sync.Mutex
	phase  int       // index into phases of the phase requests are counted in
	phases []*counts // one per phase, added by startPhase
	total  counts
}

// counts tallies requests.
type counts struct {
	Sent, Answered, Failed int
	ByServer               map[string]int // answered requests by the real server that answered
	FailedBy               map[string]int // failed requests by cause (shortError)
	LastError              string         // the most recent failure's cause, for the view
	LastErrorAt            time.Time
}

func (c *counts) add(server string, err error) {
	if c.ByServer == nil {
		c.ByServer, c.FailedBy = map[string]int{}, map[string]int{}
	}
	if err != nil {
		c.Failed++
		c.LastError, c.LastErrorAt = shortError(err), time.Now()
		c.FailedBy[c.LastError]++
		return
	}
	c.Answered++
	c.ByServer[server]++
}

func (c *counts) clone() counts {
	out := *c
	out.ByServer, out.FailedBy = maps.Clone(c.ByServer), maps.Clone(c.FailedBy)
	return out
}

// maxInFlight bounds concurrent requests: when the VIP does not answer, requests wait out
// their timeout, and the client must not pile up connections meanwhile.
const maxInFlight = 32

func newClient(l *lab.Lab, rate int, timeout time.Duration) *client {
	return &client{
		http:    l.Client.HTTPClient(timeout), // a new connection per request, from the client namespace
		url:     fmt.Sprintf("http://%s:%d/", lab.VIP, lab.Port),
		rate:    rate,
		timeout: timeout,
	}
}

// startPhase makes the requests sent from now on count in a new phase.
func (c *client) startPhase() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.phases = append(c.phases, &counts{})
	c.phase = len(c.phases) - 1
}

// run sends requests until ctx ends, then waits for those in flight.
func (c *client) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(time.Second / time.Duration(c.rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // maxInFlight requests are waiting for answers: skip this tick
		}
		c.mu.Lock()
		phase := c.phases[c.phase]
		phase.Sent++
		c.total.Sent++
		c.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			server, err := c.get(ctx)
			c.mu.Lock()
			defer c.mu.Unlock()
			if err != nil && ctx.Err() != nil {
				// Cut short by the end of the demo: neither answered nor failed.
				phase.Sent--
				c.total.Sent--
				return
			}
			phase.add(server, err)
			c.total.add(server, err)
		}()
	}
}

// get makes one request and returns the name of the real server that answered.
func (c *client) get(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256)) // the real servers answer with their name
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// snapshot returns the totals and the current phase's counts.
func (c *client) snapshot() (total, phase counts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total = c.total.clone()
	if len(c.phases) > 0 {
		phase = c.phases[c.phase].clone()
	}
	return total, phase
}

// phaseCounts returns the counts of every phase so far.
func (c *client) phaseCounts() []counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]counts, len(c.phases))
	for i, p := range c.phases {
		out[i] = p.clone()
	}
	return out
}

// shortError names a failed request's cause in a few words: net/http's errors repeat the
// method and URL, which the view already shows.
func shortError(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "Client.Timeout"), strings.Contains(s, "deadline exceeded"), strings.Contains(s, "i/o timeout"):
		return "timeout"
	case strings.Contains(s, "no route to host"):
		return "no route to host"
	}
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}
