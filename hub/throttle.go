package hub

import (
	"sync"
	"time"
)

// DefaultStatusInterval is the least time between two status writes of
// one object (issue 4: at most one write per app per 10 s).
const DefaultStatusInterval = 10 * time.Second

// StatusThrottle decides when the operator writes a usage status: never
// when the rendered status is unchanged, and at most once per interval per
// object otherwise. Keys are object keys ("namespace/name"); fingerprints
// are any string that changes when the status to write changes (e.g. the
// JSON of the status without timestamps). Safe for concurrent use.
type StatusThrottle struct {
	interval time.Duration
	now      Clock
	mu       sync.Mutex
	last     map[string]throttled
}

type throttled struct {
	at          time.Time
	fingerprint string
}

// NewStatusThrottle returns a throttle; interval ≤ 0 means
// DefaultStatusInterval, clock nil means time.Now.
func NewStatusThrottle(interval time.Duration, clock Clock) *StatusThrottle {
	if interval <= 0 {
		interval = DefaultStatusInterval
	}
	if clock == nil {
		clock = time.Now
	}
	return &StatusThrottle{interval: interval, now: clock, last: map[string]throttled{}}
}

// Due says whether key's status with fingerprint should be written now.
// When it should not because the last write is too recent, after is how
// long to wait (requeue the reconcile by it); after is 0 when nothing
// changed.
func (t *StatusThrottle) Due(key, fingerprint string) (write bool, after time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.last[key]
	if !ok {
		return true, 0
	}
	if l.fingerprint == fingerprint {
		return false, 0
	}
	if wait := t.interval - t.now().Sub(l.at); wait > 0 {
		return false, wait
	}
	return true, 0
}

// Written records a successful write of key's status with fingerprint.
func (t *StatusThrottle) Written(key, fingerprint string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[key] = throttled{at: t.now(), fingerprint: fingerprint}
}

// Forget drops a deleted object.
func (t *StatusThrottle) Forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, key)
}
