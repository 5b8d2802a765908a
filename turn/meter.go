package turn

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Meter receives the TURN traffic of each app. Egress is every byte the TURN
// server sends to a client after the client authenticated (TURN overhead
// included: STUN responses, ChannelData headers, Data indications), counted
// at the client-facing socket; ingress is every byte received from such a
// client. Implementations must be safe for concurrent use; the server calls
// them from a flush loop about once a second and when an allocation ends,
// never per packet.
type Meter interface {
	AddEgress(appID string, bytes uint64)
	AddIngress(appID string, bytes uint64)
}

// Counters is a Meter that keeps running totals in memory, for tests, dev
// mode and as the default.
type Counters struct {
	mu   sync.RWMutex
	apps map[string]*appCounters
}

type appCounters struct{ egress, ingress atomic.Uint64 }

// NewCounters returns empty counters.
func NewCounters() *Counters { return &Counters{apps: map[string]*appCounters{}} }

func (c *Counters) get(app string) *appCounters {
	c.mu.RLock()
	a := c.apps[app]
	c.mu.RUnlock()
	if a != nil {
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a = c.apps[app]; a == nil {
		a = &appCounters{}
		c.apps[app] = a
	}
	return a
}

// AddEgress implements Meter.
func (c *Counters) AddEgress(app string, n uint64) { c.get(app).egress.Add(n) }

// AddIngress implements Meter.
func (c *Counters) AddIngress(app string, n uint64) { c.get(app).ingress.Add(n) }

// Egress is the total egress of app.
func (c *Counters) Egress(app string) uint64 { return c.get(app).egress.Load() }

// Ingress is the total ingress of app.
func (c *Counters) Ingress(app string) uint64 { return c.get(app).ingress.Load() }

// Apps lists the apps seen, sorted.
func (c *Counters) Apps() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.apps))
	for a := range c.apps {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
