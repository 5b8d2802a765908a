package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// Default size bounds (DESIGN 2.5: bounded everything).
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxSDPBytes  = 256 << 10
)

// Options configures a Handler.
type Options struct {
	Apps     *Apps
	Sessions *session.Manager
	Clock    clock.Clock
	Logger   *slog.Logger
	// MaxBodyBytes and MaxSDPBytes bound requests (413 above); 0 means the defaults.
	MaxBodyBytes int64
	MaxSDPBytes  int
	// OnRequest, if set, sees every Calls API answer: the app ID ("unknown"
	// when authentication failed) and the HTTP status.
	OnRequest func(app string, status int)
	// OnRateLimited, if set, sees every request refused by a quota; scope
	// is "session" here.
	OnRateLimited func(app, scope string)
	// TURN, if set, serves the TURN credentials API under /v1/turn/keys/
	// and /turn/keys/ (package turn's API; it answers its own CORS).
	TURN http.Handler
}

// Handler is the HTTP face of one SFU node.
type Handler struct {
	opts     Options
	log      *slog.Logger
	apps     *Apps
	sessions *session.Manager
	limiter  *sessionLimiter
	metrics  *metrics
	mux      *http.ServeMux
	draining atomic.Bool
}

// New builds the handler and its routes.
func New(o Options) *Handler {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxSDPBytes == 0 {
		o.MaxSDPBytes = DefaultMaxSDPBytes
	}
	h := &Handler{opts: o, log: o.Logger, apps: o.Apps, sessions: o.Sessions, limiter: newSessionLimiter(o.Clock),
		metrics: newMetrics(o.Apps, o.Sessions), mux: http.NewServeMux()}
	h.metrics.onRequest, h.metrics.onLimited = o.OnRequest, o.OnRateLimited
	newTracks := sdpCall(h, func(q *session.TracksRequest) *session.SessionDescription { return q.SessionDescription },
		(*session.Session).NewTracks)
	closeTracks := sdpCall(h, func(q *session.CloseRequest) *session.SessionDescription { return q.SessionDescription },
		(*session.Session).CloseTracks)
	for _, prefix := range []string{"/v1/apps/{appId}", "/apps/{appId}"} {
		h.mux.HandleFunc("POST "+prefix+"/sessions/new", h.app(h.newSession))
		h.mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/tracks/new", h.sess(true, newTracks))
		h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/renegotiate", h.sess(true, h.renegotiate))
		h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/tracks/close", h.sess(false, closeTracks))
		h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/tracks/update", h.sess(true, h.updateTracks))
		h.mux.HandleFunc("GET "+prefix+"/sessions/{sessionId}", h.sess(true, h.getSession))
		h.registerDataChannels(prefix)
	}
	h.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if h.draining.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "draining": true})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{}))
	return h
}

// SetDraining marks the node as draining: /ready fails and new sessions
// are refused; existing sessions keep working.
func (h *Handler) SetDraining(d bool) { h.draining.Store(d) }

// ServeHTTP adds CORS to every response and answers preflight.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.TURN != nil && (strings.HasPrefix(r.URL.Path, "/v1/turn/keys/") || strings.HasPrefix(r.URL.Path, "/turn/keys/")) {
		h.opts.TURN.ServeHTTP(w, r)
		return
	}
	hd := w.Header()
	hd.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin != "" {
		hd.Set("Access-Control-Allow-Origin", origin)
	} else {
		hd.Set("Access-Control-Allow-Origin", "*")
	}
	hd.Set("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
	hd.Set("Access-Control-Allow-Headers", "authorization, content-type")
	hd.Set("Access-Control-Max-Age", "86400")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// Unknown path or method: still a JSON body, as clients always parse one.
		writeJSON(w, http.StatusNotFound, errorBody{ErrorCode: session.CodeNotFound,
			ErrorDescription: r.Method + " " + r.URL.Path + " is not an endpoint of this API"})
		return
	}
	h.mux.ServeHTTP(w, r)
}

// errorBody is the Calls error shape.
type errorBody struct {
	ErrorCode        string `json:"errorCode"`
	ErrorDescription string `json:"errorDescription"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) fail(w http.ResponseWriter, appID string, err error) {
	e := session.AsError(err)
	if e.Status >= 500 {
		h.log.Warn("request failed", "app", appID, "code", e.Code, "err", err)
	} else {
		h.log.Debug("request refused", "app", appID, "code", e.Code, "err", err)
	}
	h.metrics.request(appID, e.Status)
	writeJSON(w, e.Status, errorBody{ErrorCode: e.Code, ErrorDescription: e.Description})
}

func (h *Handler) ok(w http.ResponseWriter, appID string, status int, v any) {
	h.metrics.request(appID, status)
	writeJSON(w, status, v)
}

type appHandler func(w http.ResponseWriter, r *http.Request, a *app)
type sessHandler func(w http.ResponseWriter, r *http.Request, a *app, s *session.Session)

func errUnauthorized() *session.Error {
	return &session.Error{Status: http.StatusUnauthorized, Code: session.CodeUnauthorized,
		Description: "Authentication failed: the app ID and Bearer secret do not match"}
}

// app authenticates the request for {appId}.
func (h *Handler) app(next appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := session.AppID(r.PathValue("appId"))
		a := h.apps.authenticate(id, r.Header.Get("Authorization"))
		if a == nil {
			h.fail(w, "unknown", errUnauthorized())
			return
		}
		next(w, r, a)
	}
}

// sess authenticates, finds the session and applies the per-session call
// quota (limited=false exempts cleanup calls).
func (h *Handler) sess(limited bool, next sessHandler) http.HandlerFunc {
	return h.app(func(w http.ResponseWriter, r *http.Request, a *app) {
		id := session.SessionID(r.PathValue("sessionId"))
		s, err := h.sessions.Get(session.AppID(a.cfg.ID), id)
		if err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		// Only live sessions get a quota window, so made-up IDs cannot grow it.
		if limited && !h.limiter.allow(id, a.cfg.Sessions.CallsPerSecond) {
			h.metrics.limited(a.cfg.ID, "session")
			h.metrics.request(a.cfg.ID, http.StatusTooManyRequests)
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, map[string]any{
				"success": false, "error": "Command rate limited", "errorCode": "rate_limited",
				"errorDescription": fmt.Sprintf("More than %d calls per second on this session", a.cfg.Sessions.CallsPerSecond),
			})
			return
		}
		next(w, r, a, s)
	})
}

// decode reads a JSON body whatever its Content-Type. An empty body leaves
// v untouched when allowEmpty.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &session.Error{Status: http.StatusRequestEntityTooLarge, Code: session.CodePayloadTooLarge,
				Description: fmt.Sprintf("Request body larger than %d bytes", h.opts.MaxBodyBytes), Err: err}
		}
		return &session.Error{Status: http.StatusBadRequest, Code: session.CodeDecodingError, Description: "Cannot read request body", Err: err}
	}
	if len(body) == 0 || (allowEmpty && len(trimSpace(body)) == 0) {
		if allowEmpty {
			return nil
		}
		return &session.Error{Status: http.StatusBadRequest, Code: session.CodeDecodingError, Description: "JSON body validation error: empty body"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &session.Error{Status: http.StatusBadRequest, Code: session.CodeDecodingError,
			Description: "JSON body validation error: " + err.Error(), Err: err}
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func (h *Handler) checkSDP(sd *session.SessionDescription) error {
	if sd != nil && len(sd.SDP) > h.opts.MaxSDPBytes {
		return &session.Error{Status: http.StatusRequestEntityTooLarge, Code: session.CodePayloadTooLarge,
			Description: fmt.Sprintf("Session description larger than %d bytes", h.opts.MaxSDPBytes), Err: session.ErrSDPTooLarge}
	}
	return nil
}

type newSessionRequest struct {
	SessionDescription *session.SessionDescription `json:"sessionDescription,omitempty"`
}

type newSessionResponse struct {
	SessionID          string                      `json:"sessionId"`
	SessionDescription *session.SessionDescription `json:"sessionDescription,omitempty"`
}

func (h *Handler) newSession(w http.ResponseWriter, r *http.Request, a *app) {
	var req newSessionRequest
	if err := h.decode(w, r, &req, true); err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	if err := h.checkSDP(req.SessionDescription); err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	switch {
	case h.draining.Load():
		h.fail(w, a.cfg.ID, session.ErrDraining)
		return
	case a.cfg.QuotaExceeded:
		h.fail(w, a.cfg.ID, &session.Error{Status: http.StatusForbidden, Code: "quota_exceeded",
			Description: "The app's monthly egress quota is used up; new sessions are refused", Err: session.ErrQuotaExceeded})
		return
	case a.cfg.Sessions.MaxSessions > 0 && h.sessions.CountByApp(session.AppID(a.cfg.ID)) >= a.cfg.Sessions.MaxSessions:
		h.fail(w, a.cfg.ID, &session.Error{Status: http.StatusServiceUnavailable, Code: session.CodeTemporarilyUnavailable,
			Description: fmt.Sprintf("The app already has %d sessions on this node", a.cfg.Sessions.MaxSessions), Err: session.ErrSessionCap})
		return
	}
	thirdparty, _ := strconv.ParseBool(r.URL.Query().Get("thirdparty"))
	s, err := h.sessions.Create(session.AppID(a.cfg.ID), thirdparty)
	if err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	resp := newSessionResponse{SessionID: string(s.ID)}
	if req.SessionDescription != nil {
		answer, err := s.AnswerOffer(*req.SessionDescription)
		if err != nil {
			s.Close()
			h.fail(w, a.cfg.ID, err)
			return
		}
		resp.SessionDescription = answer
	}
	h.ok(w, a.cfg.ID, http.StatusCreated, resp)
}

// sdpCall is the shape of the session calls whose body may carry an SDP
// (tracks/new, tracks/close, datachannels/establish): decode, bound the SDP,
// run the session operation, answer 200 with its result.
func sdpCall[Req any, Resp any](h *Handler, sdp func(*Req) *session.SessionDescription,
	op func(*session.Session, Req, session.Limits) (Resp, error)) sessHandler {
	return func(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
		var req Req
		if err := h.decode(w, r, &req, false); err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		if err := h.checkSDP(sdp(&req)); err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		resp, err := op(s, req, a.limits)
		if err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		h.ok(w, a.cfg.ID, http.StatusOK, resp)
	}
}

type renegotiateRequest struct {
	SessionDescription *session.SessionDescription `json:"sessionDescription"`
}

type renegotiateResponse struct {
	SessionDescription *session.SessionDescription `json:"sessionDescription,omitempty"`
}

func (h *Handler) renegotiate(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
	var req renegotiateRequest
	if err := h.decode(w, r, &req, false); err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	if req.SessionDescription == nil {
		h.fail(w, a.cfg.ID, &session.Error{Status: http.StatusBadRequest, Code: session.CodeDecodingError,
			Description: "JSON body validation error: sessionDescription is required"})
		return
	}
	if err := h.checkSDP(req.SessionDescription); err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	sd, err := s.Renegotiate(*req.SessionDescription)
	if err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	h.ok(w, a.cfg.ID, http.StatusOK, renegotiateResponse{SessionDescription: sd})
}

func (h *Handler) updateTracks(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
	var req session.UpdateRequest
	if err := h.decode(w, r, &req, false); err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	resp, err := s.UpdateTracks(req, a.limits)
	if err != nil {
		h.fail(w, a.cfg.ID, err)
		return
	}
	h.ok(w, a.cfg.ID, http.StatusOK, resp)
}

func (h *Handler) getSession(w http.ResponseWriter, _ *http.Request, a *app, s *session.Session) {
	h.ok(w, a.cfg.ID, http.StatusOK, s.State())
}
