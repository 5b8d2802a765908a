package ratelimit

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Identifier classifies Calls API requests for Middleware from a pod
// configuration: the app comes from the path (/v1/apps/{appId}/…,
// /apps/{appId}/…, or the app owning /v1/turn/keys/{keyId}/…), and the
// request is authenticated when its bearer token hashes to the app's
// secret (or the TURN key's token). Immutable; build a new one per config.
type Identifier struct {
	apps map[string][32]byte
	keys map[string]turnKey
}

type turnKey struct {
	app   string
	token [32]byte
}

// NewIdentifier indexes the apps and TURN keys of p.
func NewIdentifier(p *config.Pod) *Identifier {
	id := &Identifier{apps: map[string][32]byte{}, keys: map[string]turnKey{}}
	if p == nil {
		return id
	}
	for _, a := range p.Apps {
		id.apps[a.ID] = decodeHash(a.SecretSHA256)
		if k := a.TURNKey; k != nil {
			id.keys[k.ID] = turnKey{app: a.ID, token: decodeHash(k.TokenSHA256)}
		}
	}
	return id
}

func decodeHash(s string) (h [32]byte) {
	b, err := hex.DecodeString(s)
	if err == nil && len(b) == len(h) {
		copy(h[:], b)
	}
	return h
}

// Identify implements MiddlewareOptions.Identify. CORS preflights and
// paths outside the Calls API are not limited.
func (id *Identifier) Identify(r *http.Request) Identity {
	if r.Method == http.MethodOptions {
		return Identity{}
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/apps/"):
		return id.app(r, p[len("/v1/apps/"):])
	case strings.HasPrefix(p, "/apps/"):
		return id.app(r, p[len("/apps/"):])
	case strings.HasPrefix(p, "/v1/turn/keys/"):
		keyID, _, _ := strings.Cut(p[len("/v1/turn/keys/"):], "/")
		k, ok := id.keys[keyID]
		if !ok {
			// Unknown keys share one unauthenticated bucket per IP.
			return Identity{AppID: "", Limited: true}
		}
		return Identity{AppID: k.app, Authenticated: bearerMatches(r, k.token), Limited: true}
	}
	return Identity{}
}

func (id *Identifier) app(r *http.Request, rest string) Identity {
	appID, _, _ := strings.Cut(rest, "/")
	h, ok := id.apps[appID]
	if !ok {
		return Identity{AppID: appID, Limited: true}
	}
	return Identity{AppID: appID, Authenticated: bearerMatches(r, h), Limited: true}
}

func bearerMatches(r *http.Request, want [32]byte) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
