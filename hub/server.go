package hub

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

// MaxReportBytes bounds a usage report body.
const MaxReportBytes = 4 << 20

// DefaultMaxWait caps a config long-poll.
const DefaultMaxWait = 30 * time.Second

// Server serves the hub endpoints: POST usage.ReportPath, GET ConfigPath
// and POST/GET RevocationsPath (the TURN revocations of Configs), all
// behind one shared bearer token.
type Server struct {
	Ledger  *Ledger
	Configs *ConfigStore
	// Token is the shared secret the operator gives pods; an empty token
	// refuses every request.
	Token   string
	MaxWait time.Duration
	Logger  *slog.Logger
}

// Handler returns the HTTP handler of s.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+usage.ReportPath, s.postReport)
	mux.HandleFunc("GET "+ConfigPath, s.getConfig)
	mux.HandleFunc("POST "+RevocationsPath, s.postRevocation)
	mux.HandleFunc("GET "+RevocationsPath, s.getRevocations)
	return mux
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) authorized(r *http.Request) bool {
	if s.Token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256([]byte(s.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type hubError struct {
	Error string `json:"error"`
}

// reportResponse is the body of an accepted report.
type reportResponse struct {
	Accepted  bool  `json:"accepted"`
	Duplicate bool  `json:"duplicate"`
	Added     int64 `json:"addedEgressBytes"`
}

func (s *Server) postReport(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, hubError{"unauthorized"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReportBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, hubError{"report too large"})
		return
	}
	var rep usage.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		writeJSON(w, http.StatusBadRequest, hubError{"bad report: " + err.Error()})
		return
	}
	res, err := s.Ledger.Apply(rep)
	switch {
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, hubError{err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, hubError{err.Error()})
		return
	}
	s.log().Debug("usage report applied", "pod", rep.Pod, "boot", rep.BootID, "seq", rep.Seq,
		"final", rep.Final, "duplicate", res.Duplicate, "addedEgressBytes", res.Added)
	writeJSON(w, http.StatusOK, reportResponse{Accepted: true, Duplicate: res.Duplicate, Added: res.Added})
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	s.longPoll(w, r, func(pool string) ([]byte, string, <-chan struct{}, bool) {
		return s.Configs.get(pool)
	})
}

// maxRevocationBody bounds a POST RevocationsPath body.
const maxRevocationBody = 4 << 10

// postRevocation records a TURN credential revoked through some pod's
// credentials API, for every pod of its pool.
func (s *Server) postRevocation(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, hubError{"unauthorized"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRevocationBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, hubError{"revocation too large"})
		return
	}
	var req revocationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, hubError{"bad revocation: " + err.Error()})
		return
	}
	if !s.Configs.Known(req.Pool) {
		// Only pools the operator publishes get lists, so the store
		// stays bounded; the pod retries (a restarted manager publishes
		// its pools before it serves).
		writeJSON(w, http.StatusNotFound, hubError{"unknown pool"})
		return
	}
	changed, err := s.Configs.Revocations().Add(req.Pool, req.Revocation)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, hubError{err.Error()})
		return
	}
	if changed {
		s.log().Info("turn credential revocation recorded", "pool", req.Pool, "expiry", req.Expiry)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getRevocations(w http.ResponseWriter, r *http.Request) {
	s.longPoll(w, r, func(pool string) ([]byte, string, <-chan struct{}, bool) {
		if !s.Configs.Known(pool) {
			return nil, "", nil, false
		}
		body, etag, changed := s.Configs.Revocations().get(pool)
		return body, etag, changed, true
	})
}

// longPoll answers GET ?pool=..&wait=.. for a document that get returns
// (body, ETag, a channel closed at its next change, whether the pool is
// known): 200 with the body when If-None-Match differs, else 304 once it
// changes or the wait is over.
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, get func(pool string) ([]byte, string, <-chan struct{}, bool)) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, hubError{"unauthorized"})
		return
	}
	pool := r.URL.Query().Get("pool")
	if pool == "" {
		writeJSON(w, http.StatusBadRequest, hubError{"pool is required"})
		return
	}
	maxWait := s.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 0 {
			writeJSON(w, http.StatusBadRequest, hubError{"wait must be whole seconds"})
			return
		}
		wait = min(time.Duration(secs)*time.Second, maxWait)
	}
	known := r.Header.Get("If-None-Match")
	var timer <-chan time.Time
	for {
		body, etag, changed, ok := get(pool)
		if !ok {
			writeJSON(w, http.StatusNotFound, hubError{"unknown pool"})
			return
		}
		if known == "" || known != etag {
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
			return
		}
		if wait == 0 {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-changed:
		case <-timer:
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}
