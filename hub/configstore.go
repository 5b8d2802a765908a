package hub

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// ConfigPath is the hub endpoint pods poll for their pool's configuration:
// GET ConfigPath?pool=<namespace>/<name>[&wait=<seconds>] with
// If-None-Match set to the last ETag.
const ConfigPath = "/hub/v1/config"

// ConfigDoc is the body of a config response.
type ConfigDoc struct {
	Config *config.Pod `json:"config"`
	// ReadyReplicas is the number of ready SFU pods answering the pool's
	// API; pods divide app rate limits by it (docs/ratelimits.md). Not
	// part of the rendered Secret, so scaling does not roll pods.
	ReadyReplicas int `json:"readyReplicas"`
}

// ETag is the entity tag of a document: the rendering's version plus the
// replica count, quoted.
func (d ConfigDoc) ETag() string {
	v := ""
	if d.Config != nil {
		v = d.Config.Version
	}
	return fmt.Sprintf("%q", fmt.Sprintf("%s.r%d", v, d.ReadyReplicas))
}

// ConfigStore holds the latest rendering per pool for the hub to serve.
// The operator calls Set after writing the pool's Secret (so the file pods
// fall back to is never older than what the hub served for long). Safe for
// concurrent use.
type ConfigStore struct {
	mu    sync.Mutex
	pools map[string]*configEntry
	revs  *RevocationStore
}

type configEntry struct {
	doc     ConfigDoc
	body    []byte
	etag    string
	changed chan struct{} // closed and replaced on every change
}

// NewConfigStore returns an empty store.
func NewConfigStore() *ConfigStore {
	return &ConfigStore{pools: map[string]*configEntry{}, revs: NewRevocationStore(nil)}
}

// NewConfigStoreWith returns an empty store whose pools' TURN revocations
// are kept in revs.
func NewConfigStoreWith(revs *RevocationStore) *ConfigStore {
	return &ConfigStore{pools: map[string]*configEntry{}, revs: revs}
}

// Revocations is the TURN revocation store of the pools this store
// serves: the hub serves it beside the configuration, and the manager
// persists and restores it (docs/turn.md).
func (s *ConfigStore) Revocations() *RevocationStore { return s.revs }

// Known reports whether pool has a published configuration.
func (s *ConfigStore) Known(pool string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pools[pool]
	return ok
}

// Set publishes pool's rendering and ready replica count. Setting the same
// content again wakes nobody.
func (s *ConfigStore) Set(pool string, pod *config.Pod, readyReplicas int) error {
	doc := ConfigDoc{Config: pod, ReadyReplicas: readyReplicas}
	body, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode config of pool %s: %w", pool, err)
	}
	etag := doc.ETag()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pools[pool]
	if !ok {
		e = &configEntry{changed: make(chan struct{})}
		s.pools[pool] = e
	} else if e.etag == etag && string(e.body) == string(body) {
		return nil
	}
	e.doc, e.body, e.etag = doc, body, etag
	close(e.changed)
	e.changed = make(chan struct{})
	return nil
}

// Remove forgets a deleted pool.
func (s *ConfigStore) Remove(pool string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.pools[pool]; ok {
		close(e.changed)
		delete(s.pools, pool)
	}
	s.revs.Remove(pool)
}

// get returns the current body and ETag of pool, and a channel closed at
// the next change. ok is false for an unknown pool.
func (s *ConfigStore) get(pool string) (body []byte, etag string, changed <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pools[pool]
	if !ok {
		// Unknown pools get no entry: polling invented names must not
		// grow the store. The pod retries and falls back to its file.
		return nil, "", nil, false
	}
	return e.body, e.etag, e.changed, true
}
