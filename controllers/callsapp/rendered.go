package callsapp

import (
	"encoding/json"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// renderedCache holds, per pool config Secret, the app IDs (with their
// secret hashes) of the version last parsed.
type renderedCache struct {
	mu      sync.Mutex
	entries map[types.UID]renderedEntry
}

type renderedEntry struct {
	resourceVersion string
	apps            map[string]string // app ID -> secret SHA-256
}

// apps returns the app ID -> secret hash map of the configuration in cfg,
// parsing it only when cfg's resource version is new.
func (c *renderedCache) apps(cfg *corev1.Secret) (map[string]string, error) {
	c.mu.Lock()
	e, ok := c.entries[cfg.UID]
	c.mu.Unlock()
	if ok && e.resourceVersion == cfg.ResourceVersion {
		return e.apps, nil
	}
	var rendered struct {
		Apps []struct {
			ID           string `json:"id"`
			SecretSHA256 string `json:"secretSHA256"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg.Data[config.FileName], &rendered); err != nil {
		return nil, err
	}
	apps := make(map[string]string, len(rendered.Apps))
	for _, a := range rendered.Apps {
		apps[a.ID] = a.SecretSHA256
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.UID]renderedEntry{}
	}
	// One entry per pool; an old version is replaced, a deleted pool's
	// entry is small and goes when the process restarts.
	c.entries[cfg.UID] = renderedEntry{resourceVersion: cfg.ResourceVersion, apps: apps}
	return apps, nil
}
