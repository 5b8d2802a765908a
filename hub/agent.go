package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

// AgentOptions configure an Agent.
type AgentOptions struct {
	// ConfigFile is the mounted pod configuration (required).
	ConfigFile string
	// Pod is this pod's name; Kind is usage.KindSFU or usage.KindTURN.
	Pod  string
	Kind string
	// HubToken authenticates to the hub (default config.Pod.HubToken);
	// HubURL overrides config.Pod.Hub.
	HubToken string
	HubURL   string
	// ReportInterval defaults to usage.DefaultReportInterval.
	ReportInterval time.Duration
	// SessionLimit makes Middleware enforce the per-session limit too
	// (for API servers that do not enforce it themselves).
	SessionLimit bool
	// RefuseOverQuota makes Middleware answer sessions/new of an app whose
	// monthly egress cap is reached (config.App.QuotaExceeded) with 403
	// QuotaExceededBody; existing sessions are untouched.
	RefuseOverQuota bool
	// OnConfig is called after the agent applied a configuration, for the
	// rest of the pod (apps, session limits, TURN keys).
	OnConfig func(Update)
	// Forwarded reports whether another pod of the fleet forwarded r to
	// this one (a call for a session owned here, or a new session placed
	// here). The entry pod already limited and counted it, so Middleware
	// passes it through untouched. Nil: no fleet.
	Forwarded func(r *http.Request) bool
	Clock     ratelimit.Clock
	Logger    *slog.Logger
	// SourceOptions tunes the config source (tests); File, HubURL, Token,
	// Pool and OnChange are set by the agent.
	SourceOptions SourceOptions
}

// Agent is the pod side of the hub in one piece: it follows the pod's
// configuration (mounted file plus hub), keeps the rate limiters and the
// usage meter in step with it, limits and counts API requests, and reports
// usage. Lifecycle: NewAgent; run Run (config) for the pod's life; run
// Report (usage) and cancel its context only after the pod has drained, so
// the final report carries every byte.
type Agent struct {
	o        AgentOptions
	Meter    *usage.Meter
	Limiter  *ratelimit.Limiter
	Sessions *ratelimit.SessionLimiter

	source    *Source
	reporter  *usage.Reporter
	ident     atomic.Pointer[ratelimit.Identifier]
	trusted   atomic.Pointer[ratelimit.TrustedProxies]
	sessLim   atomic.Pointer[map[string]int]
	overQuota atomic.Pointer[map[string]bool]
}

// QuotaExceededBody answers a new session of an app over its monthly
// egress cap.
const QuotaExceededBody = `{"errorCode":"quota_exceeded","errorDescription":"The app has reached its monthly egress cap; ` +
	`existing sessions keep running, new sessions are refused until the cap is raised or the month ends"}`

// ErrNoConfig is returned when the pod has no configuration to start from.
var ErrNoConfig = errors.New("no pod configuration")

// NewAgent loads the configuration file and prepares the agent.
func NewAgent(o AgentOptions) (*Agent, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Kind == "" {
		o.Kind = usage.KindSFU
	}
	first, err := config.Load(o.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoConfig, err)
	}
	a := &Agent{
		o:        o,
		Meter:    usage.NewMeter(usage.Clock(o.Clock)),
		Limiter:  ratelimit.New(ratelimit.Options{Clock: o.Clock}),
		Sessions: ratelimit.NewSessionLimiter(0, o.Clock),
	}
	hubURL := o.HubURL
	if hubURL == "" {
		hubURL = first.Hub
	}
	if o.HubToken == "" {
		o.HubToken = first.HubToken
		a.o.HubToken = first.HubToken
	}
	so := o.SourceOptions
	so.File, so.HubURL, so.Token, so.Pool = o.ConfigFile, hubURL, o.HubToken, first.Pool
	so.OnChange = a.applyUpdate
	if so.Logger == nil {
		so.Logger = o.Logger
	}
	a.source = NewSource(so)
	a.applyUpdate(Update{Config: first, From: FromFile})
	// The source starts from what was just applied, so its first read of
	// the same file is not reported again.
	a.source.cur = Update{Config: first, From: FromFile}
	a.source.curHash = contentHash(first)
	a.reporter = usage.NewReporter(usage.ReporterOptions{
		Meter: a.Meter, HubURL: hubURL, Token: o.HubToken, Pod: o.Pod, Pool: first.Pool, Kind: o.Kind,
		Interval: o.ReportInterval, Logger: o.Logger, Clock: usage.Clock(o.Clock),
		ConfigVersion: func() string {
			if c := a.source.Current().Config; c != nil {
				return c.Version
			}
			return ""
		},
	})
	return a, nil
}

// Config returns the configuration in effect.
func (a *Agent) Config() Update { return a.source.Current() }

// Run follows the configuration until ctx ends.
func (a *Agent) Run(ctx context.Context) error { return a.source.Run(ctx) }

// Report sends usage until ctx ends, then the final report (see
// usage.Reporter.Run).
func (a *Agent) Report(ctx context.Context) error { return a.reporter.Run(ctx) }

// Drain marks the pod's reports as draining until deadline, the final
// one included, and sends one at once (usage.Reporter.Drain).
func (a *Agent) Drain(deadline time.Time) { a.reporter.Drain(deadline) }

func (a *Agent) applyUpdate(u Update) {
	p := u.Config
	limits := make(map[string]ratelimit.Limits, len(p.Apps))
	ids := make([]string, 0, len(p.Apps))
	sess := make(map[string]int, len(p.Apps))
	over := map[string]bool{}
	for _, app := range p.Apps {
		l := ratelimit.LimitsFromConfig(app)
		limits[app.ID] = l
		ids = append(ids, app.ID)
		sess[app.ID] = app.Sessions.CallsPerSecond
		if app.QuotaExceeded {
			over[app.ID] = true
		}
	}
	a.overQuota.Store(&over)
	a.Limiter.SetApps(limits)
	a.Limiter.SetReplicas(u.ReadyReplicas)
	a.Meter.SetApps(ids)
	for _, app := range p.Apps {
		a.Meter.App(app.ID).SetRateLimit(limits[app.ID].Authenticated)
	}
	a.sessLim.Store(&sess)
	a.ident.Store(ratelimit.NewIdentifier(p))
	if tp, err := ratelimit.ParseTrustedProxies(p.TrustedProxies); err != nil {
		a.o.Logger.Error("trusted proxies invalid; keeping the previous list", "err", err)
	} else {
		a.trusted.Store(tp)
	}
	if a.o.OnConfig != nil {
		a.o.OnConfig(u)
	}
}

// statusRecorder captures the status code for the request counters.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Middleware limits (per app and client IP, and per session if
// SessionLimit) and counts every Calls API request in front of next.
func (a *Agent) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ratelimit.DefaultExempt(r.URL.Path) || (a.o.Forwarded != nil && a.o.Forwarded(r)) {
			next.ServeHTTP(w, r)
			return
		}
		id := a.ident.Load().Identify(r)
		if !id.Limited {
			next.ServeHTTP(w, r)
			return
		}
		app := a.Meter.App(id.AppID)
		ip, ok := ratelimit.ClientIP(r, a.trusted.Load())
		if !ok {
			ip = unknownClient
		}
		if d := a.Limiter.Allow(id.AppID, ip, id.Authenticated); !d.Allowed {
			app.CountLimited(string(ratelimit.ScopeApp))
			app.CountRequest(http.StatusTooManyRequests)
			ratelimit.WriteLimited(w, ratelimit.ScopeApp, d)
			return
		}
		if a.o.SessionLimit && id.Authenticated {
			if sid, counted := sessionOf(r.URL.Path); counted {
				if d := a.Sessions.AllowWithLimit(sid, (*a.sessLim.Load())[id.AppID]); !d.Allowed {
					app.CountLimited(string(ratelimit.ScopeSession))
					app.CountRequest(http.StatusTooManyRequests)
					ratelimit.WriteLimited(w, ratelimit.ScopeSession, d)
					return
				}
			}
		}
		if a.o.RefuseOverQuota && id.Authenticated && (*a.overQuota.Load())[id.AppID] && isNewSession(r) {
			app.CountRequest(http.StatusForbidden)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(QuotaExceededBody))
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		if rec.code == http.StatusTooManyRequests {
			// The app limit answers above; a 429 from the API server
			// behind is its per-session limit.
			app.CountLimited(string(ratelimit.ScopeSession))
		}
		app.CountRequest(rec.code)
	})
}

func isNewSession(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/sessions/new")
}

// sessionOf returns the session ID of a session-scoped Calls path and
// whether the call counts against the per-session limit (cleanup calls —
// tracks/close, datachannels/close — do not).
func sessionOf(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/apps/")
	if !ok {
		if rest, ok = strings.CutPrefix(path, "/apps/"); !ok {
			return "", false
		}
	}
	parts := strings.Split(rest, "/")
	// {app} sessions {sid} [op...]
	if len(parts) < 3 || parts[1] != "sessions" || parts[2] == "new" || parts[2] == "" {
		return "", false
	}
	if strings.HasSuffix(path, "/tracks/close") || strings.HasSuffix(path, "/datachannels/close") {
		return "", false
	}
	return parts[0] + "/" + parts[2], true
}

var unknownClient = netip.IPv6Unspecified()
