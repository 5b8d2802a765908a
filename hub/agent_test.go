package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func agentConfig(hubURL, version string, limit int) *config.Pod {
	return &config.Pod{Version: version, Serial: int64(version[1] - '0'), Pool: pool, Hub: hubURL, Apps: []config.App{{
		ID: appA, Name: "calls/a", SecretSHA256: sha("secret-a"),
		RateLimit: config.RateLimit{AuthenticatedPerSecond: limit, UnauthenticatedPerSecond: 2},
		Sessions:  config.SessionLimit{CallsPerSecond: 3},
	}}}
}

func call(t *testing.T, method, url, secret string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// One pod, end to end over loopback: config from file and hub, per-app and
// per-session limits with the exact bodies, a live limit change, and the
// counts arriving in the manager's ledger with the final report.
func TestAgentLimitsCountsAndReportsAPodsTraffic(t *testing.T) {
	clk := newFakeClock(t0)
	ledger := NewLedger(LedgerOptions{Clock: clk.Now})
	ledger.SetApp(appA, DefaultBilling)
	ledger.SetReady()
	store := NewConfigStore()
	hubSrv := httptest.NewServer((&Server{Ledger: ledger, Configs: store, Token: token}).Handler())
	t.Cleanup(hubSrv.Close)
	_ = store.Set(pool, agentConfig(hubSrv.URL, "v1", 5), 1)

	file := filepath.Join(t.TempDir(), config.FileName)
	b, _ := json.Marshal(agentConfig(hubSrv.URL, "v1", 5))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(AgentOptions{ConfigFile: file, Pod: "sfu-0", HubToken: token, SessionLimit: true,
		Clock: clk.Now, SourceOptions: SourceOptions{Retry: 50 * time.Millisecond, FileInterval: 50 * time.Millisecond, Wait: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(agent.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sessions/new") {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = io.WriteString(w, "{}")
	})))
	t.Cleanup(api.Close)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = agent.Run(ctx); close(runDone) }()
	repCtx, stopReports := context.WithCancel(context.Background())
	repDone := make(chan error, 1)
	go func() { repDone <- agent.Report(repCtx) }()
	t.Cleanup(func() { cancel(); <-runDone })

	base := api.URL + "/v1/apps/" + appA
	created, limited := 0, 0
	for range 7 {
		switch code, body := call(t, "POST", base+"/sessions/new", "secret-a"); code {
		case 201:
			created++
		case 429:
			limited++
			if body != ratelimit.AppLimitedBody {
				t.Fatalf("app 429 body %s", body)
			}
		}
	}
	if created != 5 || limited != 2 {
		t.Fatalf("7 sessions/new: %d created, %d limited; want 5 and 2", created, limited)
	}
	if code, _ := call(t, "GET", api.URL+"/health", ""); code != 200 {
		t.Fatalf("/health while throttled: %d", code)
	}

	clk.Advance(time.Second)
	ok, sessLimited := 0, 0
	for range 4 {
		switch code, body := call(t, "PUT", base+"/sessions/s1/renegotiate", "secret-a"); code {
		case 200:
			ok++
		case 429:
			sessLimited++
			if body != ratelimit.SessionLimitedBody {
				t.Fatalf("session 429 body %s", body)
			}
		}
	}
	if ok != 3 || sessLimited != 1 {
		t.Fatalf("4 calls on one session: %d ok, %d limited; want 3 and 1", ok, sessLimited)
	}
	if code, _ := call(t, "PUT", base+"/sessions/s1/tracks/close", "secret-a"); code != 200 {
		t.Fatalf("cleanup call on a throttled session: %d, want 200", code)
	}

	// The operator re-renders with a lower limit: enforced within 5 s.
	_ = store.Set(pool, agentConfig(hubSrv.URL, "v2", 1), 1)
	deadline := time.Now().Add(5 * time.Second)
	for agent.Config().Config.Version != "v2" {
		if time.Now().After(deadline) {
			t.Fatal("new config not applied within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	clk.Advance(time.Second)
	if code, _ := call(t, "POST", base+"/sessions/new", "secret-a"); code != 201 {
		t.Fatalf("first request under the new limit: %d", code)
	}
	if code, _ := call(t, "POST", base+"/sessions/new", "secret-a"); code != 429 {
		t.Fatalf("second request under limit 1: %d, want 429", code)
	}

	agent.Meter.App(appA).AddEgressSFU(123456)
	stopReports() // the pod has drained: final report
	if err := <-repDone; err != nil {
		t.Fatal(err)
	}
	u, _ := ledger.Usage(appA)
	// 7 + 4 + 1 + 2 requests; throttled 2 + 1 by app, 1 by session.
	if u.Totals.EgressSFUBytes != 123456 || u.Totals.Requests != 14 || u.Totals.RateLimitedApp != 3 ||
		u.Totals.RateLimitedSession != 1 || u.Limit != 1 || u.PeakPerSecond != 7 {
		t.Fatalf("ledger usage %+v limit %d peak %d", u.Totals, u.Limit, u.PeakPerSecond)
	}
	if p := ledger.Pods(pool); len(p) != 1 || p[0].ConfigVersion != "v2" || !p[0].Stopped {
		t.Fatalf("pod status %+v", p)
	}
}

func TestAppOverItsEgressCapGetsNoNewSessionsButKeepsOldOnes(t *testing.T) {
	cfg := agentConfig("", "v1", 100)
	cfg.Apps[0].QuotaExceeded = true
	file := filepath.Join(t.TempDir(), config.FileName)
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(AgentOptions{ConfigFile: file, Pod: "sfu-0", RefuseOverQuota: true})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(agent.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "{}")
	})))
	defer api.Close()
	base := api.URL + "/v1/apps/" + appA
	if code, body := call(t, "POST", base+"/sessions/new", "secret-a"); code != 403 || body != QuotaExceededBody {
		t.Fatalf("new session over quota: %d %s", code, body)
	}
	if code, _ := call(t, "POST", base+"/sessions/s1/tracks/new", "secret-a"); code != 200 {
		t.Fatalf("existing session over quota: %d, want 200", code)
	}
}

// An API server that enforces the session limit itself: its 429s are
// counted as session-scope throttles.
func TestAgentCountsTheAPIServersOwnSessionThrottles(t *testing.T) {
	cfg := agentConfig("", "v1", 100)
	cfg.HubToken = "from-config"
	file := filepath.Join(t.TempDir(), config.FileName)
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(AgentOptions{ConfigFile: file, Pod: "sfu-0"})
	if err != nil {
		t.Fatal(err)
	}
	if agent.o.HubToken != "from-config" {
		t.Fatalf("hub token %q, want the one from the config", agent.o.HubToken)
	}
	api := httptest.NewServer(agent.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ratelimit.WriteLimited(w, ratelimit.ScopeSession, ratelimit.Decision{RetryAfter: 1})
	})))
	defer api.Close()
	if code, body := call(t, "PUT", api.URL+"/v1/apps/"+appA+"/sessions/s1/renegotiate", "secret-a"); code != 429 || body != ratelimit.SessionLimitedBody {
		t.Fatalf("%d %s", code, body)
	}
	snap := agent.Meter.Snapshot()
	if len(snap) != 1 || snap[0].Counters.RateLimitedSession != 1 || snap[0].Counters.RateLimitedApp != 0 || snap[0].Counters.Requests["429"] != 1 {
		t.Fatalf("counters %+v", snap)
	}
}

func TestSessionCallsOutsideSessionsOrCleanupAreNotSessionLimited(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/apps/a/sessions/new":                   "",
		"/v1/apps/a/sessions/s1/tracks/new":         "a/s1",
		"/apps/a/sessions/s1/renegotiate":           "a/s1",
		"/v1/apps/a/sessions/s1":                    "a/s1",
		"/v1/apps/a/sessions/s1/tracks/close":       "",
		"/v1/apps/a/sessions/s1/datachannels/close": "",
		"/v1/apps/a/sessions/s1/datachannels/new":   "a/s1",
		"/v1/turn/keys/k/credentials/generate":      "",
		"/v1/apps/a/sessions/":                      "",
	} {
		sid, counted := sessionOf(path)
		if sid != want || counted != (want != "") {
			t.Errorf("sessionOf(%q) = %q %v, want %q", path, sid, counted, want)
		}
	}
}

// A call another fleet pod forwarded was limited and counted on the entry
// pod; the owner's agent lets it through without limiting or counting it
// again.
func TestAgentPassesForwardedCallsThroughUncounted(t *testing.T) {
	file := filepath.Join(t.TempDir(), config.FileName)
	b, _ := json.Marshal(agentConfig("", "v1", 1))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(AgentOptions{ConfigFile: file, Pod: "sfu-1",
		Forwarded: func(r *http.Request) bool { return r.Header.Get("X-Test-Forwarded") == "yes" }})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(agent.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	t.Cleanup(api.Close)
	post := func(forwarded bool) int {
		req, _ := http.NewRequest("POST", api.URL+"/v1/apps/"+appA+"/sessions/new", nil)
		req.Header.Set("Authorization", "Bearer secret-a")
		if forwarded {
			req.Header.Set("X-Test-Forwarded", "yes")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Limit 1 per second: forwarded calls are never refused.
	for i := range 5 {
		if st := post(true); st != http.StatusCreated {
			t.Fatalf("forwarded call %d: %d, want 201", i, st)
		}
	}
	if st := post(false); st != http.StatusCreated {
		t.Fatalf("first direct call: %d", st)
	}
	if st := post(false); st != http.StatusTooManyRequests {
		t.Fatalf("second direct call within the second: %d, want 429", st)
	}
	found := false
	for _, rep := range agent.Meter.Snapshot() {
		if rep.App != appA {
			continue
		}
		found = true
		var n uint64
		for _, v := range rep.Counters.Requests {
			n += v
		}
		if n != 2 || rep.Counters.RateLimitedApp != 1 {
			t.Fatalf("counters %+v, want the 2 direct requests and 1 throttle only", rep.Counters)
		}
	}
	if !found {
		t.Fatal("no counters for the app")
	}
}
