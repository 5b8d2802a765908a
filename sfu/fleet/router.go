package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// TokenHeader carries the fleet token on pod-to-pod requests. The Calls
// Authorization header passes through untouched, so the owner pod
// authenticates the app exactly as on a direct call.
const TokenHeader = "X-Switchboard-Fleet-Token"

// RelayPrefix is the path prefix of the pod-to-pod track relay endpoint:
// RelayPrefix + "{appId}/{sessionId}/{trackName}".
const RelayPrefix = "/internal/fleet/v1/relay/"

// forwardTimeout bounds one forwarded call. Calls that wait for a
// connected PeerConnection take up to 5 s on the owner.
const forwardTimeout = 30 * time.Second

// Router sits in front of the Calls API of one pod. Calls for sessions
// owned by another pod go to the owner; relay requests go to Relay after
// the fleet token is checked; everything else goes to Local.
type Router struct {
	// Members returns the current membership; nil means no fleet (every
	// request is served locally and the relay endpoint is closed).
	Members func() *Members
	Local   http.Handler
	Relay   http.Handler
	Logger  *slog.Logger
	// Self returns this pod's load and View holds the peers'; with both
	// set, sessions/new is placed on the least-loaded available pod
	// (placement.go) and LoadPath answers Self to peers. Either nil: new
	// sessions stay here and LoadPath is closed.
	Self func() Load
	View *View

	transport http.RoundTripper
}

// NewRouter returns a router with its own HTTP transport to peers.
func NewRouter(members func() *Members, local, relay http.Handler, log *slog.Logger) *Router {
	if log == nil {
		log = slog.Default()
	}
	return &Router{Members: members, Local: local, Relay: relay, Logger: log, transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: forwardTimeout,
	}}
}

// ServeHTTP routes one request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := rt.Members()
	if strings.HasPrefix(r.URL.Path, RelayPrefix) {
		if m == nil || rt.Relay == nil || !m.Authentic(r.Header.Get(TokenHeader)) {
			writeErr(w, http.StatusNotFound, session.CodeNotFound, r.Method+" "+r.URL.Path+" is not an endpoint of this API")
			return
		}
		rt.Relay.ServeHTTP(w, r)
		return
	}
	if r.URL.Path == LoadPath {
		if m == nil || rt.Self == nil || r.Method != http.MethodGet || !m.Authentic(r.Header.Get(TokenHeader)) {
			writeErr(w, http.StatusNotFound, session.CodeNotFound, r.Method+" "+r.URL.Path+" is not an endpoint of this API")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rt.Self())
		return
	}
	if m == nil {
		rt.Local.ServeHTTP(w, r)
		return
	}
	// A call another pod forwarded is served here whatever the ID says, so
	// a disagreement about membership can never make a loop.
	forwarded := false
	if v := r.Header.Get(TokenHeader); v != "" {
		forwarded = m.Authentic(v)
		r.Header.Del(TokenHeader)
	}
	if forwarded {
		r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, true))
	}
	if !forwarded && r.Method == http.MethodPost && isNewSession(r.URL.Path) && rt.Self != nil && rt.View != nil {
		rt.place(w, r, m)
		return
	}
	if !forwarded && r.Method != http.MethodOptions {
		if sid, ok := sessionOf(r.URL.Path); ok {
			if addr, ok := m.RemoteOwner(sid); ok {
				rt.forward(w, r, addr, m.Token())
				return
			}
		}
	}
	rt.Local.ServeHTTP(w, r)
}

type forwardedKey struct{}

// Forwarded reports whether another fleet pod forwarded r (its fleet token
// was valid). Middleware behind the router uses it to count a call once:
// the per-client-IP app quota was applied on the entry pod, so the owner
// must not apply it again to the entry pod's address.
func Forwarded(r *http.Request) bool {
	v, _ := r.Context().Value(forwardedKey{}).(bool)
	return v
}

// sessionOf extracts {sessionId} from a Calls API path
// (/v1/apps/{appId}/sessions/{sessionId}/... or /apps/{appId}/sessions/...).
func sessionOf(path string) (string, bool) {
	p := strings.TrimPrefix(path, "/v1")
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) < 4 || parts[0] != "apps" || parts[2] != "sessions" || parts[3] == "new" {
		return "", false
	}
	return parts[3], true
}

// forward proxies r to the owner at addr. Status, headers (including the
// owner's CORS headers) and body are the owner's. An owner that cannot be
// reached took its sessions with it: the answer is the Calls "session
// gone" error a direct call would get after the session ended.
func (rt *Router) forward(w http.ResponseWriter, r *http.Request, addr, token string) {
	p := rt.proxy(addr, token, r.Host)
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		rt.Logger.Warn("forward to session owner failed", "owner", addr, "path", r.URL.Path, "err", err)
		e := session.AsError(session.ErrSessionGone)
		writeErr(w, e.Status, e.Code, e.Description)
	}
	p.ServeHTTP(w, r)
}

func writeErr(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorCode": code, "errorDescription": desc})
}

// CloseIdleConnections closes the router's idle connections to peers
// (forwarded calls and placements); the server calls it when it closes.
func (rt *Router) CloseIdleConnections() {
	if t, ok := rt.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
