package hub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

const adminKey = "admin-key-for-tests"

func adminDo(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("X-Admin-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestAdminAPIAnswersBadKeyUnknownAppAndBadBody(t *testing.T) {
	apps := NewMemoryApps(AdminApp{AppID: appA, Name: "calls/a", RateLimit: 10000, UnauthenticatedRateLimit: 10, SessionCallsPerSecond: 50})
	srv := httptest.NewServer((&Admin{Key: adminKey, Apps: apps}).Handler())
	defer srv.Close()
	url := srv.URL + AdminPathPrefix + appA
	for _, tc := range []struct {
		name, method, url, key, body string
		code                         int
		want                         string
	}{
		{"no key", "POST", url, "", `{"rate_limit":200}`, 401, `{"success":false,"error":"missing or invalid X-Admin-API-Key"}`},
		{"wrong key", "GET", url, "nope", ``, 401, `{"success":false,"error":"missing or invalid X-Admin-API-Key"}`},
		{"unknown app", "POST", srv.URL + AdminPathPrefix + appB, adminKey, `{"rate_limit":200}`, 404, `{"success":false,"error":"app not found"}`},
		{"unknown app get", "GET", srv.URL + AdminPathPrefix + appB, adminKey, ``, 404, `{"success":false,"error":"app not found"}`},
		{"not json", "POST", url, adminKey, `rate_limit=200`, 400, `body must be`},
		{"missing field", "POST", url, adminKey, `{}`, 400, `rate_limit must be an integer from 1 to 10000000`},
		{"zero", "POST", url, adminKey, `{"rate_limit":0}`, 400, `rate_limit must be an integer`},
		{"negative", "POST", url, adminKey, `{"rate_limit":-5}`, 400, `rate_limit must be an integer`},
		{"fraction", "POST", url, adminKey, `{"rate_limit":2.5}`, 400, `body must be`},
		{"string", "POST", url, adminKey, `{"rate_limit":"200"}`, 400, `body must be`},
		{"unknown field", "POST", url, adminKey, `{"ratelimit":200}`, 400, `unknown field`},
		{"trailing data", "POST", url, adminKey, `{"rate_limit":200} {}`, 400, `trailing data`},
	} {
		code, body := adminDo(t, tc.method, tc.url, tc.key, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d containing %s", tc.name, code, body, tc.code, tc.want)
		}
	}
	if a, _ := apps.GetApp(context.Background(), appA); a.RateLimit != 10000 {
		t.Fatalf("refused requests changed the limit to %d", a.RateLimit)
	}
}

func TestAdminKeyCannotBeBruteForced(t *testing.T) {
	apps := NewMemoryApps(AdminApp{AppID: appA})
	clk := newFakeClock(t0) // all guesses in one window
	guard := ratelimit.New(ratelimit.Options{Clock: clk.Now})
	srv := httptest.NewServer((&Admin{Key: adminKey, Apps: apps, Guard: guard}).Handler())
	defer srv.Close()
	var limited int
	for i := range 15 {
		code, body := adminDo(t, "GET", srv.URL+AdminPathPrefix+appA, "guess"+string(rune('a'+i)), "")
		if code == http.StatusTooManyRequests {
			limited++
			if body != ratelimit.AppLimitedBody {
				t.Fatalf("429 body %s", body)
			}
		}
	}
	if limited != 5 {
		t.Fatalf("%d of 15 wrong guesses in a second got 429, want 5 (10/s per IP)", limited)
	}
}

// The admin API changes the source of truth, the change is rendered and
// published, and a pod's limiter enforces the new limit within 5 s. In the
// cluster the store is the CallsApp spec and the rendering the operator's;
// the pieces in between are these.
func TestAdminRateLimitChangeIsEnforcedByPodsWithinFiveSeconds(t *testing.T) {
	store := NewConfigStore()
	render := func(a AdminApp, serial int64) *config.Pod {
		p := podConfig("v"+string(rune('0'+serial)), a.RateLimit)
		p.Serial = serial
		return p
	}
	var serial atomic.Int64
	apps := NewMemoryApps(AdminApp{AppID: appA, Name: "calls/a", RateLimit: 10000, UnauthenticatedRateLimit: 10, SessionCallsPerSecond: 50})
	apps.OnChange = func(a AdminApp) { _ = store.Set(pool, render(a, serial.Add(1)), 1) }
	first, _ := apps.GetApp(context.Background(), appA)
	_ = store.Set(pool, render(first, serial.Add(1)), 1)

	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	mux := http.NewServeMux()
	mux.Handle(AdminPathPrefix, (&Admin{Key: adminKey, Apps: apps, Ledger: l}).Handler())
	mux.Handle("/hub/", (&Server{Ledger: l, Configs: store, Token: token}).Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// The pod: a limiter fed by the config source.
	limiter := ratelimit.New(ratelimit.Options{})
	applied := make(chan int, 8)
	src := NewSource(SourceOptions{HubURL: srv.URL, Token: token, Pool: pool, Wait: 20 * time.Second, Retry: 50 * time.Millisecond,
		OnChange: func(u Update) {
			m := map[string]ratelimit.Limits{}
			for _, a := range u.Config.Apps {
				m[a.ID] = ratelimit.LimitsFromConfig(a)
			}
			limiter.SetApps(m)
			limiter.SetReplicas(u.ReadyReplicas)
			applied <- u.Config.Apps[0].RateLimit.AuthenticatedPerSecond
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = src.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if got := <-applied; got != 10000 {
		t.Fatalf("initial limit %d", got)
	}

	start := time.Now()
	code, body := adminDo(t, "POST", srv.URL+AdminPathPrefix+appA, adminKey, `{"rate_limit": 3}`)
	if code != 200 || body != `{"success":true,"app":{"app_id":"`+appA+`","name":"calls/a","rate_limit":3,"unauthenticated_rate_limit":10,"session_calls_per_second":50}}` {
		t.Fatalf("POST: %d %s", code, body)
	}
	select {
	case got := <-applied:
		if got != 3 {
			t.Fatalf("pod applied limit %d, want 3", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pod did not apply the new limit within 5 s")
	}
	t.Logf("admin change enforced by the pod %v after the POST", time.Since(start))
	ip := netip.MustParseAddr("198.51.100.1")
	admitted := 0
	for range 10 {
		if limiter.Allow(appA, ip, true).Allowed {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("pod admitted %d requests in a window after the change, want 3", admitted)
	}

	// GET shows the limit and the usage the pods reported.
	m := usage.NewMeter(nil)
	m.SetApps([]string{appA})
	m.App(appA).AddEgressSFU(2_000_000)
	m.App(appA).CountLimited("app")
	if err := usage.NewReporter(usage.ReporterOptions{Meter: m, HubURL: srv.URL, Token: token, Pod: "sfu-0", Pool: pool}).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, body = adminDo(t, "GET", srv.URL+AdminPathPrefix+appA, adminKey, "")
	var got adminResponse
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.App.RateLimit != 3 || got.Usage == nil ||
		got.Usage.EgressBytes != 2_000_000 || got.Usage.ThrottledApp != 1 || got.Usage.EstimatedCost != "$0.00" {
		t.Fatalf("GET: %d %s", code, body)
	}
}
