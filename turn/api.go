package turn

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// APIPrefix is where the session API server mounts the credentials API.
// APIAliasPrefix is the same API without the version, as the session API
// also answers /apps/... beside /v1/apps/... (CONTRACT §5).
const (
	APIPrefix      = "/v1/turn/keys/"
	APIAliasPrefix = "/turn/keys/"
)

const maxAPIBody = 4 << 10

// API serves the Calls TURN credentials API:
//
//	POST /v1/turn/keys/{keyId}/credentials/generate-ice-servers  201 {"iceServers":[...]}
//	POST /v1/turn/keys/{keyId}/credentials/generate              200 {"iceServers":{...}}
//	POST /v1/turn/keys/{keyId}/credentials/{username}/revoke     204
//
// Mount it at APIPrefix (and APIAliasPrefix). It reads keys and URLs from the pod configuration
// set with Update, and writes revocations to its Revocations.
type API struct {
	rev Revocations
	now func() time.Time
	log *slog.Logger
	cfg atomic.Pointer[apiConfig]
}

type apiConfig struct {
	keys *Keyring
	stun []string
	turn []string
}

// NewAPI returns the handler. now may be nil (time.Now), log may be nil.
func NewAPI(pod *config.Pod, rev Revocations, now func() time.Time, log *slog.Logger) *API {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	a := &API{rev: rev, now: now, log: log.With("component", "turn-api")}
	a.Update(pod)
	return a
}

// Update applies a new pool configuration (keys and TURN URLs).
func (a *API) Update(pod *config.Pod) {
	c := &apiConfig{keys: NewKeyring(pod)}
	if pod != nil {
		c.stun, c.turn = splitURLs(pod.TURN.URLs)
	}
	a.cfg.Store(c)
}

// splitURLs keeps the configured TURN URLs and derives one STUN URL per
// host:port that serves plain UDP (a TURN server answers Binding requests).
func splitURLs(urls []string) (stunURLs, turnURLs []string) {
	seen := map[string]bool{}
	for _, u := range urls {
		switch {
		case strings.HasPrefix(u, "stun:"):
			if !seen[u] {
				seen[u] = true
				stunURLs = append(stunURLs, u)
			}
			continue
		case strings.HasPrefix(u, "turn:"):
			hostport, query, _ := strings.Cut(strings.TrimPrefix(u, "turn:"), "?")
			q, _ := url.ParseQuery(query)
			if t := q.Get("transport"); t == "" || t == "udp" {
				s := "stun:" + hostport
				if !seen[s] {
					seen[s] = true
					stunURLs = append(stunURLs, s)
				}
			}
		}
		turnURLs = append(turnURLs, u)
	}
	return stunURLs, turnURLs
}

// APIError is the Calls error body.
type APIError struct {
	ErrorCode        string `json:"errorCode"`
	ErrorDescription string `json:"errorDescription"`
}

// ICEServer is one RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

type generateRequest struct {
	TTL *json.Number `json:"ttl"`
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cors(w, r)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), APIPrefix)
	if !ok {
		rest, ok = strings.CutPrefix(r.URL.EscapedPath(), APIAliasPrefix)
	}
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 3 || parts[0] == "" || parts[1] != "credentials" {
		writeErr(w, http.StatusNotFound, "not_found", "no such TURN API path")
		return
	}
	keyID, err := url.PathUnescape(parts[0])
	if err != nil {
		writeErr(w, http.StatusNotFound, "not_found", "no such TURN API path")
		return
	}
	var op, username string
	switch {
	case len(parts) == 3 && (parts[2] == "generate-ice-servers" || parts[2] == "generate"):
		op = parts[2]
	case len(parts) == 4 && parts[3] == "revoke" && parts[2] != "":
		op = "revoke"
		if username, err = url.PathUnescape(parts[2]); err != nil {
			writeErr(w, http.StatusNotFound, "not_found", "no such TURN API path")
			return
		}
	default:
		writeErr(w, http.StatusNotFound, "not_found", "no such TURN API path")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeErr(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	cfg := a.cfg.Load()
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	key, ok := cfg.keys.AuthorizeToken(keyID, strings.TrimSpace(token))
	if !ok {
		writeErr(w, http.StatusUnauthorized, "unauthorized", "TURN key ID or API token not accepted")
		return
	}
	if op == "revoke" {
		a.revoke(w, cfg, key, username)
		return
	}
	ttl, err := readTTL(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "decoding_error", err.Error())
		return
	}
	if len(cfg.turn) == 0 {
		writeErr(w, http.StatusServiceUnavailable, "turn_unavailable", "no TURN endpoints are configured for this pool")
		return
	}
	cred, err := Issue(key, ttl, a.now())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal_error", "could not issue a credential")
		return
	}
	if op == "generate" {
		urls := append(append([]string{}, cfg.stun...), cfg.turn...)
		writeJSON(w, http.StatusOK, map[string]ICEServer{"iceServers": {URLs: urls, Username: cred.Username, Credential: cred.Password}})
		return
	}
	servers := []ICEServer{}
	if len(cfg.stun) > 0 {
		servers = append(servers, ICEServer{URLs: cfg.stun})
	}
	servers = append(servers, ICEServer{URLs: cfg.turn, Username: cred.Username, Credential: cred.Password})
	writeJSON(w, http.StatusCreated, map[string][]ICEServer{"iceServers": servers})
}

func (a *API) revoke(w http.ResponseWriter, cfg *apiConfig, key *Key, username string) {
	u, err := ParseUsername(username)
	if err != nil || u.KeyID != key.ID {
		// Only this key's credentials can be revoked with its token.
		writeErr(w, http.StatusNotFound, "not_found", "no such credential for this TURN key")
		return
	}
	if !u.Expiry.After(a.now()) {
		w.WriteHeader(http.StatusNoContent) // already refused everywhere
		return
	}
	a.rev.Revoke(username, u.Expiry)
	a.log.Info("turn credential revoked", "key", key.ID, "app", key.AppID)
	w.WriteHeader(http.StatusNoContent)
}

// readTTL parses {"ttl": seconds} whatever the Content-Type. A missing body
// or ttl means the default (24 h). A ttl that is not a positive integer, or
// above 48 h, is refused with 400: Calls rejects TTLs above its 48 h maximum,
// so a client written for Calls never relies on a silent clamp.
func readTTL(r *http.Request) (time.Duration, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		return 0, errors.New("could not read the request body")
	}
	if len(body) > maxAPIBody {
		return 0, errors.New("request body too large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return config.DefaultTURNTTL, nil
	}
	var req generateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return 0, errors.New("request body is not valid JSON")
	}
	if req.TTL == nil {
		return config.DefaultTURNTTL, nil
	}
	n, err := req.TTL.Int64()
	max := int64(config.MaxTURNTTL / time.Second)
	if err != nil || n <= 0 || n > max {
		return 0, errors.New("ttl must be an integer number of seconds between 1 and 172800 (48 h)")
	}
	return time.Duration(n) * time.Second, nil
}

// cors answers like the session API: any origin, echoed, with Vary: Origin.
func cors(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "authorization, content-type")
	h.Set("Access-Control-Max-Age", "86400")
}

func writeErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, APIError{ErrorCode: code, ErrorDescription: desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
