package fleet

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// maxPlacedBody bounds the sessions/new body buffered so that placement
// can try more than one pod. A larger body is served here, where the API
// refuses it with its own size error.
const maxPlacedBody = 4 << 20

// errTryNext makes the proxy give up on one pod and lets placement try
// the next.
var errTryNext = errors.New("pod cannot take a new session now")

// isNewSession reports whether path is /v1/apps/{app}/sessions/new (or
// the same without /v1).
func isNewSession(path string) bool {
	parts := strings.Split(strings.TrimPrefix(strings.TrimPrefix(path, "/v1"), "/"), "/")
	return len(parts) == 4 && parts[0] == "apps" && parts[1] != "" && parts[2] == "sessions" && parts[3] == "new"
}

// place serves sessions/new on the least-loaded available pod: here, or
// on a peer through the forwarding mechanics (the peer serves the call
// locally, so the session ID names it and the client gets the peer's 201
// body as is). A peer that cannot be reached or answers 503 (draining
// meanwhile, or an app's per-pod session cap) is skipped and forgotten
// until its next poll; when no peer takes the session it is served here,
// which answers 503 only if this pod is draining too. A draining pod whose
// view holds no available peer polls its peers once more before that.
func (rt *Router) place(w http.ResponseWriter, r *http.Request, m *Members) {
	self := rt.Self()
	order := Order(self, rt.View.Peers())
	if len(order) == 0 && !self.Available() {
		// Draining and no peer known to take it (the view may be older
		// than the drain, or empty just after start): ask the peers now.
		rt.View.Refresh(r.Context())
		order = Order(self, rt.View.Peers())
	}
	if len(order) == 0 || order[0].Ordinal == m.Self() {
		rt.Local.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPlacedBody+1))
	if err != nil || len(body) > maxPlacedBody {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		rt.Local.ServeHTTP(w, r)
		return
	}
	for _, c := range order {
		if c.Ordinal == m.Self() {
			break
		}
		addr, err := m.Address(c.Ordinal)
		if err != nil {
			continue
		}
		if rt.tryPlace(w, r, addr, m.Token(), body) {
			rt.View.Placed(c.Ordinal)
			rt.Logger.Debug("new session placed on peer", "ordinal", c.Ordinal, "sessions", c.Sessions)
			return
		}
		rt.View.Forget(c.Ordinal)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rt.Local.ServeHTTP(w, r)
}

// tryPlace forwards sessions/new to the pod at addr. It returns false,
// having written nothing, when the pod could not be reached or answered
// 503.
func (rt *Router) tryPlace(w http.ResponseWriter, r *http.Request, addr, token string, body []byte) bool {
	failed := false
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.GetBody = nil
	p := rt.proxy(addr, token, r.Host)
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode == http.StatusServiceUnavailable {
			return errTryNext
		}
		return nil
	}
	p.ErrorHandler = func(_ http.ResponseWriter, _ *http.Request, err error) {
		failed = true
		rt.Logger.Debug("placement on peer failed", "peer", addr, "err", err)
	}
	p.ServeHTTP(w, out)
	return !failed
}

// proxy returns a reverse proxy to the pod at addr that marks the call
// with the fleet token, so the pod serves it locally.
func (rt *Router) proxy(addr, token, host string) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: addr}
	return &httputil.ReverseProxy{
		Transport: rt.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = host
			pr.SetXForwarded()
			pr.Out.Header.Set(TokenHeader, token)
		},
	}
}
