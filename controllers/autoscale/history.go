package autoscale

import (
	"sync"
	"time"
)

// History keeps recent load samples per pool, for Decide. It is safe for
// concurrent use. Samples live in memory only: after an operator restart
// the history is empty and Decide waits a whole scale-down window before
// removing a pod, which errs on the side of capacity.
type History struct {
	mu    sync.Mutex
	pools map[string][]Sample
}

// NewHistory returns an empty History.
func NewHistory() *History { return &History{pools: map[string][]Sample{}} }

// Add records s for pool unless the previous sample is less than every
// old, and drops samples older than keep (keeping the newest one older than
// keep, which Decide needs to know the window is covered). It returns the
// pool's samples, oldest first.
func (h *History) Add(pool string, s Sample, every, keep time.Duration) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.pools[pool]
	if n := len(list); n == 0 || s.At.Sub(list[n-1].At) >= every {
		list = append(list, s)
	}
	cut := 0
	for i := range list {
		if s.At.Sub(list[i].At) > keep {
			cut = i
		}
	}
	list = append([]Sample(nil), list[cut:]...)
	h.pools[pool] = list
	return append([]Sample(nil), list...)
}

// Forget drops a pool's samples (pool deleted or no longer load-driven).
func (h *History) Forget(pool string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pools, pool)
}
