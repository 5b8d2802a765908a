package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// RevocationsPath is the hub endpoint for revoked TURN credentials:
//
//	POST RevocationsPath  {"pool": "...", "username": "...", "expiry": <unix>}  204
//	GET  RevocationsPath?pool=<namespace>/<name>[&wait=<seconds>]              RevocationList
//
// The GET is a long-poll like ConfigPath: If-None-Match with the last ETag
// waits for the next change. See docs/turn.md, "Revocation across the fleet".
const RevocationsPath = "/hub/v1/revocations"

// RevocationsFileName is the data key of the pool's config Secret that
// holds the persisted RevocationList. The Secret is mounted in every pod,
// so a pod that starts while the hub is down still finds the revocations
// next to its configuration file.
const RevocationsFileName = "turn-revocations.json"

// Revocation bounds.
const (
	// MaxRevocationsPerPool bounds one pool's list (about 100 bytes per
	// entry, so the Secret key stays near 200 kB at worst).
	MaxRevocationsPerPool = 2048
	// MaxRevocationLifetime is how far in the future an expiry may lie:
	// the 48 h TTL cap plus a minute of clock skew.
	MaxRevocationLifetime = 48*time.Hour + time.Minute
	// MaxUsernameBytes bounds one username.
	MaxUsernameBytes = 256
)

// ErrBadRevocation is returned for a revocation the hub refuses to keep.
var ErrBadRevocation = errors.New("bad revocation")

// Revocation is one revoked TURN username, kept until the credential's own
// expiry (after it the credential is refused anyway).
type Revocation struct {
	Username string `json:"username"`
	// Expiry is Unix seconds.
	Expiry int64 `json:"expiry"`
}

// RevocationList is a pool's live revocations, sorted by username: the
// body of GET RevocationsPath and the persisted form.
type RevocationList struct {
	Revocations []Revocation `json:"revocations"`
}

// revocationRequest is the body of POST RevocationsPath.
type revocationRequest struct {
	Pool string `json:"pool"`
	Revocation
}

// ParseRevocationList decodes a RevocationList (hub answer or persisted
// Secret key).
func ParseRevocationList(b []byte) (RevocationList, error) {
	var l RevocationList
	if err := json.Unmarshal(b, &l); err != nil {
		return RevocationList{}, fmt.Errorf("%w: %v", ErrBadRevocation, err)
	}
	return l, nil
}

func validUsername(u string) bool {
	if u == "" || len(u) > MaxUsernameBytes {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f {
			return false
		}
	}
	return true
}

// RevocationStore is the hub's set of revoked TURN usernames per pool.
// Each entry lives until the credential's expiry; a pool holds at most
// MaxRevocationsPerPool entries. Revocations are never withdrawn: Calls has
// no un-revoke, so every holder (hub, pods, persisted copy) merges by union.
// Safe for concurrent use.
type RevocationStore struct {
	now Clock
	max int

	mu      sync.Mutex
	pools   map[string]*revPool
	changed chan struct{} // capacity 1: some pool changed (for the persister)
}

type revPool struct {
	entries map[string]int64
	body    []byte
	etag    string
	changed chan struct{} // closed and replaced on every change
}

// NewRevocationStore returns an empty store. now may be nil (time.Now).
func NewRevocationStore(now Clock) *RevocationStore {
	if now == nil {
		now = time.Now
	}
	return &RevocationStore{now: now, max: MaxRevocationsPerPool, pools: map[string]*revPool{},
		changed: make(chan struct{}, 1)}
}

// Changed is signalled (coalesced) after any pool's list changed.
func (s *RevocationStore) Changed() <-chan struct{} { return s.changed }

// Add records a revocation of pool. An expiry already past is a no-op;
// one beyond MaxRevocationLifetime or a malformed username is
// ErrBadRevocation. It reports whether the list changed.
func (s *RevocationStore) Add(pool string, r Revocation) (bool, error) {
	if pool == "" || !validUsername(r.Username) {
		return false, fmt.Errorf("%w: pool and a printable username of at most %d bytes are required", ErrBadRevocation, MaxUsernameBytes)
	}
	now := s.now()
	if r.Expiry > now.Add(MaxRevocationLifetime).Unix() {
		return false, fmt.Errorf("%w: expiry more than %s ahead", ErrBadRevocation, MaxRevocationLifetime)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mergeLocked(pool, []Revocation{r}, now), nil
}

// Merge adds every valid, unexpired entry of rs to pool (restoring a
// persisted list, or a pod's report); invalid ones are skipped. It
// reports whether the list changed.
func (s *RevocationStore) Merge(pool string, rs []Revocation) bool {
	if pool == "" {
		return false
	}
	now := s.now()
	limit := now.Add(MaxRevocationLifetime).Unix()
	ok := rs[:0:0]
	for _, r := range rs {
		if validUsername(r.Username) && r.Expiry <= limit {
			ok = append(ok, r)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mergeLocked(pool, ok, now)
}

func (s *RevocationStore) mergeLocked(pool string, rs []Revocation, now time.Time) bool {
	p := s.pools[pool]
	changed := false
	if p != nil {
		changed = p.prune(now.Unix())
	}
	for _, r := range rs {
		if r.Expiry <= now.Unix() {
			continue // refused everywhere anyway
		}
		if p == nil {
			p = &revPool{entries: map[string]int64{}, changed: make(chan struct{})}
			s.pools[pool] = p
		}
		if old, ok := p.entries[r.Username]; ok && old >= r.Expiry {
			continue
		}
		if _, ok := p.entries[r.Username]; !ok && len(p.entries) >= s.max {
			p.evict()
		}
		p.entries[r.Username] = r.Expiry
		changed = true
	}
	if changed {
		s.publishLocked(pool, p)
	}
	return changed
}

// publishLocked re-encodes p and wakes its long-polls and the persister.
func (s *RevocationStore) publishLocked(pool string, p *revPool) {
	p.encode()
	close(p.changed)
	p.changed = make(chan struct{})
	if len(p.entries) == 0 {
		delete(s.pools, pool)
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// prune drops expired entries; it reports whether any went.
func (p *revPool) prune(now int64) bool {
	n := len(p.entries)
	for u, exp := range p.entries {
		if exp <= now {
			delete(p.entries, u)
		}
	}
	return len(p.entries) != n
}

// evict makes room for one entry: it drops the soonest-expiring entry of
// the TURN key (the username's middle field, "<expiry>:<keyId>:<random>")
// holding the most entries, so one app revoking in bulk cannot push
// another app's revocations out.
func (p *revPool) evict() {
	count := map[string]int{}
	for u := range p.entries {
		count[keyOf(u)]++
	}
	var top string
	for k, n := range count {
		if n > count[top] || n == count[top] && k < top {
			top = k
		}
	}
	var victim string
	var vexp int64
	for u, exp := range p.entries {
		if keyOf(u) != top {
			continue
		}
		if victim == "" || exp < vexp || exp == vexp && u < victim {
			victim, vexp = u, exp
		}
	}
	delete(p.entries, victim)
}

func keyOf(username string) string {
	parts := strings.SplitN(username, ":", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}

func (p *revPool) encode() {
	l := RevocationList{Revocations: make([]Revocation, 0, len(p.entries))}
	for u, exp := range p.entries {
		l.Revocations = append(l.Revocations, Revocation{Username: u, Expiry: exp})
	}
	slices.SortFunc(l.Revocations, func(a, b Revocation) int { return strings.Compare(a.Username, b.Username) })
	p.body, _ = json.Marshal(l)
	sum := sha256.Sum256(p.body)
	p.etag = `"rev-` + hex.EncodeToString(sum[:8]) + `"`
}

// Prune drops every expired entry and reports whether anything went.
func (s *RevocationStore) Prune() bool {
	now := s.now().Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	pruned := false
	for pool, p := range s.pools {
		if p.prune(now) {
			s.publishLocked(pool, p)
			pruned = true
		}
	}
	return pruned
}

// List returns pool's live revocations, sorted by username.
func (s *RevocationStore) List(pool string) []Revocation {
	l, _ := ParseRevocationList(s.Snapshot(pool))
	return l.Revocations
}

// Snapshot returns pool's live list encoded as a RevocationList: what the
// hub serves and what the manager persists.
func (s *RevocationStore) Snapshot(pool string) []byte {
	body, _, _ := s.get(pool)
	return body
}

// Pools lists the pools that hold revocations.
func (s *RevocationStore) Pools() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.pools))
	for p := range s.pools {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Remove forgets a deleted pool's revocations.
func (s *RevocationStore) Remove(pool string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pools[pool]; ok {
		close(p.changed)
		delete(s.pools, pool)
	}
}

// emptyList is the body of a pool without revocations.
var emptyList = func() *revPool {
	p := &revPool{entries: map[string]int64{}}
	p.encode()
	return p
}()

// get returns pool's current body and ETag (expired entries pruned first)
// and a channel closed at its next change. A pool without revocations
// gets the empty list and a channel that a first revocation closes.
func (s *RevocationStore) get(pool string) (body []byte, etag string, changed <-chan struct{}) {
	now := s.now().Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pools[pool]
	if ok && p.prune(now) {
		s.publishLocked(pool, p)
		p, ok = s.pools[pool]
	}
	if !ok {
		// Entry with no revocations, so a long-poll can wait on it; it
		// is dropped again by the next change that leaves it empty.
		// Pools are only created for names the ConfigStore knows.
		p = &revPool{entries: map[string]int64{}, changed: make(chan struct{}),
			body: emptyList.body, etag: emptyList.etag}
		s.pools[pool] = p
	}
	return p.body, p.etag, p.changed
}
