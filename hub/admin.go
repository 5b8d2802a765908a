package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"sync"

	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
)

// AdminPathPrefix is where the admin API lives on the manager (and in
// `switchboard dev`): GET and POST /admin/apps/{appId}.
const AdminPathPrefix = "/admin/apps/"

// ErrAppNotFound is returned by an AppStore for an unknown app ID.
var ErrAppNotFound = errors.New("app not found")

// MaxAdminRateLimit bounds rate_limit in the admin API.
const MaxAdminRateLimit = 10_000_000

// AdminApp is one app as the admin API shows it.
type AdminApp struct {
	AppID string `json:"app_id"`
	// Name is "namespace/name" of the CallsApp.
	Name                     string `json:"name"`
	RateLimit                int    `json:"rate_limit"`
	UnauthenticatedRateLimit int    `json:"unauthenticated_rate_limit"`
	SessionCallsPerSecond    int    `json:"session_calls_per_second"`
}

// AppStore is where the admin API reads and changes apps. In the manager
// it is the CallsApp spec (the single source of truth: a change is a spec
// update, which the operator renders down to the pods); in dev mode it is
// the dev server's apps (cmd/switchboard/dev_admin.go).
type AppStore interface {
	// GetApp returns ErrAppNotFound (wrapped) for an unknown app.
	GetApp(ctx context.Context, appID string) (AdminApp, error)
	// SetRateLimit sets the app's authenticated requests per second.
	SetRateLimit(ctx context.Context, appID string, perSecond int) (AdminApp, error)
}

// Admin serves the admin API.
type Admin struct {
	// Key is the value X-Admin-API-Key must carry; empty refuses all.
	Key  string
	Apps AppStore
	// Ledger, if set, adds usage to GET responses.
	Ledger *Ledger
	// Guard limits requests with a wrong or missing key per client IP
	// (10/s by default) so the key cannot be brute-forced.
	Guard   *ratelimit.Limiter
	Trusted *ratelimit.TrustedProxies
	Logger  *slog.Logger
}

// AdminUsage is the usage part of a GET response.
type AdminUsage struct {
	Month                 string `json:"month"`
	EgressBytes           int64  `json:"egress_bytes"`
	EgressSFUBytes        int64  `json:"egress_sfu_bytes"`
	EgressTURNBytes       int64  `json:"egress_turn_bytes"`
	IngressBytes          int64  `json:"ingress_bytes"`
	BillableBytes         int64  `json:"billable_bytes"`
	EstimatedCost         string `json:"estimated_cost_usd"`
	Sessions              int64  `json:"sessions"`
	Tracks                int64  `json:"tracks"`
	PeakRequestsPerSecond int64  `json:"peak_requests_per_second"`
	ThrottledApp          int64  `json:"throttled_app"`
	ThrottledSession      int64  `json:"throttled_session"`
}

type adminResponse struct {
	Success bool        `json:"success"`
	App     *AdminApp   `json:"app,omitempty"`
	Usage   *AdminUsage `json:"usage,omitempty"`
	Error   string      `json:"error,omitempty"`
}

type adminRequest struct {
	RateLimit *int `json:"rate_limit"`
}

const adminGuardApp = "admin"

// Handler returns the admin API handler.
func (a *Admin) Handler() http.Handler {
	if a.Guard == nil {
		a.Guard = ratelimit.New(ratelimit.Options{})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPathPrefix+"{appId}", a.get)
	mux.HandleFunc("POST "+AdminPathPrefix+"{appId}", a.post)
	return mux
}

func (a *Admin) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// authorize answers 401 (or 429 when a client keeps guessing) and returns
// false unless the key is right.
func (a *Admin) authorize(w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Get("X-Admin-API-Key")
	x := sha256.Sum256([]byte(got))
	y := sha256.Sum256([]byte(a.Key))
	if a.Key != "" && subtle.ConstantTimeCompare(x[:], y[:]) == 1 {
		return true
	}
	ip, ok := ratelimit.ClientIP(r, a.Trusted)
	if !ok {
		ip = netip.IPv6Unspecified()
	}
	if d := a.Guard.Allow(adminGuardApp, ip, false); !d.Allowed {
		ratelimit.WriteLimited(w, ratelimit.ScopeApp, d)
		return false
	}
	writeJSON(w, http.StatusUnauthorized, adminResponse{Error: "missing or invalid X-Admin-API-Key"})
	return false
}

func (a *Admin) get(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	app, err := a.Apps.GetApp(r.Context(), r.PathValue("appId"))
	if a.storeError(w, err) {
		return
	}
	resp := adminResponse{Success: true, App: &app}
	if a.Ledger != nil {
		if u, ok := a.Ledger.Usage(app.AppID); ok {
			resp.Usage = &AdminUsage{
				Month: u.Month, EgressBytes: u.EgressBytes, EgressSFUBytes: u.Totals.EgressSFUBytes,
				EgressTURNBytes: u.Totals.EgressTURNBytes, IngressBytes: u.Totals.IngressBytes,
				BillableBytes: u.BillableBytes, EstimatedCost: FormatUSD(u.CostMicroUSD),
				Sessions: u.Sessions, Tracks: u.Tracks, PeakRequestsPerSecond: u.PeakPerSecond,
				ThrottledApp: u.Totals.RateLimitedApp, ThrottledSession: u.Totals.RateLimitedSession,
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *Admin) post(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminResponse{Error: "body too large"})
		return
	}
	var req adminRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminResponse{Error: "body must be {\"rate_limit\": <requests per second>}: " + err.Error()})
		return
	}
	if req.RateLimit == nil || *req.RateLimit < 1 || *req.RateLimit > MaxAdminRateLimit {
		writeJSON(w, http.StatusBadRequest, adminResponse{Error: fmt.Sprintf("rate_limit must be an integer from 1 to %d", MaxAdminRateLimit)})
		return
	}
	appID := r.PathValue("appId")
	app, err := a.Apps.SetRateLimit(r.Context(), appID, *req.RateLimit)
	if a.storeError(w, err) {
		return
	}
	a.log().Info("app rate limit changed through the admin API", "app", appID, "name", app.Name, "rateLimit", app.RateLimit)
	writeJSON(w, http.StatusOK, adminResponse{Success: true, App: &app})
}

func (a *Admin) storeError(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrAppNotFound):
		writeJSON(w, http.StatusNotFound, adminResponse{Error: "app not found"})
	default:
		a.log().Error("admin API store failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, adminResponse{Error: "internal error"})
	}
	return true
}

// MemoryApps is an in-memory AppStore for tests and embedders. OnChange,
// if set, is called after every change. Safe for concurrent use.
type MemoryApps struct {
	mu       sync.Mutex
	apps     map[string]AdminApp
	OnChange func(AdminApp)
}

// NewMemoryApps returns a store holding apps.
func NewMemoryApps(apps ...AdminApp) *MemoryApps {
	m := &MemoryApps{apps: map[string]AdminApp{}}
	for _, a := range apps {
		m.apps[a.AppID] = a
	}
	return m
}

// GetApp implements AppStore.
func (m *MemoryApps) GetApp(_ context.Context, appID string) (AdminApp, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.apps[appID]
	if !ok {
		return AdminApp{}, fmt.Errorf("%w: %s", ErrAppNotFound, appID)
	}
	return a, nil
}

// SetRateLimit implements AppStore.
func (m *MemoryApps) SetRateLimit(_ context.Context, appID string, perSecond int) (AdminApp, error) {
	m.mu.Lock()
	a, ok := m.apps[appID]
	if !ok {
		m.mu.Unlock()
		return AdminApp{}, fmt.Errorf("%w: %s", ErrAppNotFound, appID)
	}
	a.RateLimit = perSecond
	m.apps[appID] = a
	cb := m.OnChange
	m.mu.Unlock()
	if cb != nil {
		cb(a)
	}
	return a, nil
}

// List returns every app sorted by ID.
func (m *MemoryApps) List() []AdminApp {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AdminApp, 0, len(m.apps))
	for _, a := range m.apps {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AppID < out[j].AppID })
	return out
}
