package ratelimit

import (
	"net/http"
	"strconv"
	"strings"
)

// Scope names which limit refused a request; it is the `scope` label of
// switchboard_rate_limited_total.
type Scope string

const (
	// ScopeApp is the per-app, per-client-IP limit.
	ScopeApp Scope = "app"
	// ScopeSession is the per-session calls-per-second limit.
	ScopeSession Scope = "session"
)

// The exact 429 bodies (DESIGN 1.2). Each carries both the gateway shape
// (success, error) and the Calls shape (errorCode, errorDescription) so
// either kind of client reads its own fields.
const (
	AppLimitedBody = `{"success":false,"error":"Rate limit exceeded","errorCode":"rate_limited",` +
		`"errorDescription":"Too many requests for this app from this client IP; retry after the number of seconds in the Retry-After header"}`
	SessionLimitedBody = `{"success":false,"error":"Command rate limited","errorCode":"rate_limited",` +
		`"errorDescription":"Too many API calls on this session; retry after the number of seconds in the Retry-After header"}`
)

// WriteLimited writes the 429 response of scope with Retry-After from d.
func WriteLimited(w http.ResponseWriter, scope Scope, d Decision) {
	body := AppLimitedBody
	if scope == ScopeSession {
		body = SessionLimitedBody
	}
	ra := d.RetryAfter
	if ra < 1 {
		ra = 1
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", strconv.Itoa(ra))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(body))
}

// DefaultExempt reports whether a path is a health, readiness or metrics
// endpoint, which are never rate limited.
func DefaultExempt(path string) bool {
	switch strings.TrimSuffix(path, "/") {
	case "/health", "/healthz", "/ready", "/readyz", "/livez", "/metrics":
		return true
	}
	return false
}

// Identity is what the API server knows about a request before handling it.
type Identity struct {
	// AppID is the app the request is addressed to (from the path, or the
	// app owning a TURN key); it may be unknown to the pod.
	AppID string
	// Authenticated is true only when the credentials are valid for AppID.
	Authenticated bool
	// Limited is false for requests outside the app quotas (the demo page,
	// CORS preflights if the server chooses).
	Limited bool
}

// MiddlewareOptions configure Middleware.
type MiddlewareOptions struct {
	Limiter *Limiter
	// Trusted are the proxies whose X-Forwarded-For is believed.
	Trusted *TrustedProxies
	// Identify classifies a request; it must not consume the body.
	Identify func(r *http.Request) Identity
	// Exempt defaults to DefaultExempt.
	Exempt func(path string) bool
	// OnLimited is called for every refused request (metrics); may be nil.
	OnLimited func(appID string, scope Scope)
}

// Middleware enforces the per-app limit in front of next and answers 429
// with AppLimitedBody when it is exceeded.
func Middleware(next http.Handler, o MiddlewareOptions) http.Handler {
	exempt := o.Exempt
	if exempt == nil {
		exempt = DefaultExempt
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		id := o.Identify(r)
		if !id.Limited {
			next.ServeHTTP(w, r)
			return
		}
		ip, ok := ClientIP(r, o.Trusted)
		if !ok {
			// Unparsable RemoteAddr only happens with an in-process caller;
			// fall back to one shared key rather than skipping the limit.
			ip = unknownAddr
		}
		d := o.Limiter.Allow(id.AppID, ip, id.Authenticated)
		if !d.Allowed {
			if o.OnLimited != nil {
				o.OnLimited(id.AppID, ScopeApp)
			}
			WriteLimited(w, ScopeApp, d)
			return
		}
		next.ServeHTTP(w, r)
	})
}
