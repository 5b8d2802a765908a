package turn

import (
	"sync"
	"time"
)

// Revocations is the set of revoked TURN usernames.
//
// The credentials API calls Revoke; every TURN server of the pool consults
// Revoked on each authenticated request and subscribes with Watch to close
// the allocations a revoked username already holds. An entry only needs to
// live until the credential's own expiry (at most 48 h), so the set stays
// small.
//
// Fleet propagation (docs/turn.md): the API pod that takes the revoke call
// forwards it to the manager's fleet hub, which serves it to every TURN pod
// of the pool on a long-poll beside the configuration; a TURN pod applies it
// through this interface. The budget is 5 s from the 204 to refusal on every
// pod.
type Revocations interface {
	// Revoke adds username until expiry; after expiry the credential is
	// refused anyway and the entry may be dropped.
	Revoke(username string, expiry time.Time)
	// Revoked reports whether username is revoked.
	Revoked(username string) bool
	// Watch calls fn (on the revoking goroutine) for every later Revoke.
	// It returns a function that stops the calls.
	Watch(fn func(username string)) (cancel func())
}

// MemoryRevocations is the in-process Revocations: enough for one pod, for
// `switchboard dev` and for tests.
type MemoryRevocations struct {
	now func() time.Time

	mu       sync.RWMutex
	entries  map[string]time.Time
	watchers map[int]func(string)
	nextID   int
}

// NewMemoryRevocations returns an empty set. now may be nil (time.Now).
func NewMemoryRevocations(now func() time.Time) *MemoryRevocations {
	if now == nil {
		now = time.Now
	}
	return &MemoryRevocations{now: now, entries: map[string]time.Time{}, watchers: map[int]func(string){}}
}

// Revoke implements Revocations.
func (m *MemoryRevocations) Revoke(username string, expiry time.Time) {
	m.mu.Lock()
	now := m.now()
	for u, exp := range m.entries { // drop what has expired on its own
		if !exp.After(now) {
			delete(m.entries, u)
		}
	}
	m.entries[username] = expiry
	fns := make([]func(string), 0, len(m.watchers))
	for _, fn := range m.watchers {
		fns = append(fns, fn)
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(username)
	}
}

// Revoked implements Revocations.
func (m *MemoryRevocations) Revoked(username string) bool {
	m.mu.RLock()
	_, ok := m.entries[username]
	m.mu.RUnlock()
	return ok
}

// Watch implements Revocations.
func (m *MemoryRevocations) Watch(fn func(string)) func() {
	m.mu.Lock()
	id := m.nextID
	m.nextID++
	m.watchers[id] = fn
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	}
}

// Len is the number of live entries.
func (m *MemoryRevocations) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.entries)
}
