package ratelimit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClientIPBelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.10", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer, spoofed header ignored", "203.0.113.5:4242", []string{"1.2.3.4"}, "203.0.113.5"},
		{"untrusted peer, no header", "203.0.113.5:4242", nil, "203.0.113.5"},
		{"trusted peer, one hop", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"trusted peer, client-supplied prefix ignored", "10.1.2.3:80", []string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{"two trusted hops skipped", "10.1.2.3:80", []string{"1.2.3.4, 198.51.100.7, 10.9.9.9, 192.0.2.10"}, "198.51.100.7"},
		{"several headers read in order", "10.1.2.3:80", []string{"1.2.3.4", "198.51.100.7, 10.9.9.9"}, "198.51.100.7"},
		{"entry with a port", "10.1.2.3:80", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"ipv6 entry with port", "10.1.2.3:80", []string{"[2001:db8::7]:5555"}, "2001:db8::7"},
		{"malformed entry stops at the last trusted hop", "10.1.2.3:80", []string{"198.51.100.7, bogus, 10.9.9.9"}, "10.9.9.9"},
		{"only trusted entries: the left-most", "10.1.2.3:80", []string{"10.4.4.4, 10.5.5.5"}, "10.4.4.4"},
		{"trusted peer, no header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"ipv6 trusted peer", "[2001:db8:ffff::1]:443", []string{"2001:db8::9"}, "2001:db8::9"},
		{"mapped ipv4 peer is unmapped", "[::ffff:203.0.113.5]:1", []string{"1.2.3.4"}, "203.0.113.5"},
		{"mapped ipv4 trusted peer", "[::ffff:10.1.2.3]:1", []string{"198.51.100.7"}, "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/apps/x/sessions/new", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, ok := ClientIP(r, trusted)
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ClientIP = %v %v, want %s", got, ok, tc.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.2.3:80"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got, _ := ClientIP(r, nil); got != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("with no trusted proxies ClientIP = %v, want the peer", got)
	}
}

func TestTrustedProxyListFailsClosedOnGarbage(t *testing.T) {
	_, err := ParseTrustedProxies([]string{"10.0.0.0/8", "10.0.0.0/33"})
	if !errors.Is(err, ErrBadCIDR) || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Fatalf("err = %v, want ErrBadCIDR naming the entry", err)
	}
}

func TestLimitedResponsesAreExactBodiesWithRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		scope Scope
		body  string
	}{
		{ScopeApp, `{"success":false,"error":"Rate limit exceeded","errorCode":"rate_limited","errorDescription":"Too many requests for this app from this client IP; retry after the number of seconds in the Retry-After header"}`},
		{ScopeSession, `{"success":false,"error":"Command rate limited","errorCode":"rate_limited","errorDescription":"Too many API calls on this session; retry after the number of seconds in the Retry-After header"}`},
	} {
		w := httptest.NewRecorder()
		WriteLimited(w, tc.scope, Decision{RetryAfter: 1})
		if w.Code != http.StatusTooManyRequests || w.Body.String() != tc.body ||
			w.Header().Get("Retry-After") != "1" || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: got %d %q headers %v", tc.scope, w.Code, w.Body.String(), w.Header())
		}
	}
}

func newLimitedServer(t *testing.T, clk *fakeClock, trusted []string, limited *[]string) *httptest.Server {
	t.Helper()
	tp, err := ParseTrustedProxies(trusted)
	if err != nil {
		t.Fatal(err)
	}
	l := New(Options{Clock: clk.Now})
	l.SetApp(appA, Limits{Authenticated: 3, Unauthenticated: 2})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{}`)
	})
	h := Middleware(next, MiddlewareOptions{
		Limiter: l,
		Trusted: tp,
		Identify: func(r *http.Request) Identity {
			if !strings.HasPrefix(r.URL.Path, "/v1/apps/") {
				return Identity{}
			}
			return Identity{AppID: appA, Authenticated: r.Header.Get("Authorization") == "Bearer good", Limited: true}
		},
		OnLimited: func(app string, scope Scope) { *limited = append(*limited, app+"/"+string(scope)) },
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// API-07 and API-08 end to end over loopback HTTP.
func TestMiddlewareThrottlesAppRequestsAndIgnoresSpoofedForwardedFor(t *testing.T) {
	clk := newFakeClock(t0)
	var limited []string
	srv := newLimitedServer(t, clk, nil, &limited)
	app := srv.URL + "/v1/apps/" + appA + "/sessions/new"
	for i := range 3 {
		// A client rotating X-Forwarded-For is still one client (the peer).
		code, _, _ := get(t, app, map[string]string{"Authorization": "Bearer good", "X-Forwarded-For": "1.2.3." + string(rune('1'+i))})
		if code != 200 {
			t.Fatalf("request %d: status %d", i+1, code)
		}
	}
	code, body, hdr := get(t, app, map[string]string{"Authorization": "Bearer good", "X-Forwarded-For": "9.9.9.9"})
	if code != http.StatusTooManyRequests || body != AppLimitedBody || hdr.Get("Retry-After") != "1" {
		t.Fatalf("4th request: %d %q Retry-After %q, want 429 with the app body", code, body, hdr.Get("Retry-After"))
	}
	// Health, readiness and metrics stay reachable while throttled.
	for _, p := range []string{"/health", "/ready", "/metrics"} {
		if code, _, _ := get(t, srv.URL+p, nil); code != 200 {
			t.Fatalf("%s: status %d while the client is throttled", p, code)
		}
	}
	// Unauthenticated requests have their own, lower budget.
	ok := 0
	for range 4 {
		if code, _, _ := get(t, app, nil); code == 200 {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("unauthenticated admitted %d, want 2", ok)
	}
	if len(limited) != 3 || limited[0] != appA+"/app" {
		t.Fatalf("OnLimited calls = %v, want 3 for %s/app", limited, appA)
	}
	clk.Advance(time.Second)
	if code, _, _ := get(t, app, map[string]string{"Authorization": "Bearer good"}); code != 200 {
		t.Fatalf("next window: status %d", code)
	}
}

func TestMiddlewareKeysOnForwardedClientBehindTrustedProxy(t *testing.T) {
	clk := newFakeClock(t0)
	var limited []string
	srv := newLimitedServer(t, clk, []string{"127.0.0.0/8", "::1/128"}, &limited)
	app := srv.URL + "/v1/apps/" + appA + "/sessions/new"
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		ok := 0
		for range 5 {
			if code, _, _ := get(t, app, map[string]string{"Authorization": "Bearer good", "X-Forwarded-For": client}); code == 200 {
				ok++
			}
		}
		if ok != 3 {
			t.Fatalf("client %s behind the trusted proxy admitted %d, want 3", client, ok)
		}
	}
}
