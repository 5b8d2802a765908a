package sfu_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHealthReadyAndDrain(t *testing.T) {
	e := newEnv(t, envOpt{})
	sid := e.newSession(appA, secretA)
	for _, p := range []string{"/health", "/ready"} {
		if st, raw := e.call("GET", p, "", nil, nil); st != 200 {
			t.Fatalf("%s: %d %s", p, st, raw)
		}
	}
	e.srv.Drain()
	if st, raw := e.call("GET", "/ready", "", nil, nil); st != 503 || !strings.Contains(string(raw), `"ready":false`) {
		t.Fatalf("ready while draining: %d %s", st, raw)
	}
	if st, _ := e.call("GET", "/health", "", nil, nil); st != 200 {
		t.Fatal("health must stay up while draining")
	}
	if st, raw := e.call("POST", "/v1/apps/"+appA+"/sessions/new", secretA, nil, nil); st != 503 || !strings.Contains(string(raw), "temporarily_unavailable_error") {
		t.Fatalf("new session while draining: %d %s", st, raw)
	}
	if st, _ := e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != 200 {
		t.Fatal("existing sessions keep working while draining")
	}
}

func TestMetricsShowSessionsAndTracksPerApp(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "m")
	pull(t, e, appA, secretA, pubSID, "m")
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(raw)
	for _, want := range []string{
		`switchboard_sessions{app="` + appA + `"} 2`,
		`switchboard_sessions{app="` + appB + `"} 0`,
		`switchboard_tracks{app="` + appA + `",location="local"} 2`,
		`switchboard_tracks{app="` + appA + `",location="remote"} 2`,
		`switchboard_api_requests_total{app="` + appA + `",code="201"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
	if strings.Contains(body, pubSID) {
		t.Error("metrics must not be labelled by session")
	}
}

func TestSetConfigAppliesAppsLive(t *testing.T) {
	e := newEnv(t, envOpt{})
	sidB := e.newSession(appB, secretB)
	const appC, secretC = "cccccccccccccccccccccccccccccccc", "secret-of-app-c-0123456789abcdef0123"
	if st, _ := e.call("POST", "/v1/apps/"+appC+"/sessions/new", secretC, nil, nil); st != 401 {
		t.Fatalf("app C before config: %d", st)
	}
	cfg := testConfig(func(a *config.App) { a.QuotaExceeded = true })
	cfg.Apps[1] = config.App{ID: appC, Name: "default/c", SecretSHA256: hashHex(secretC)} // B removed, C added
	if err := e.srv.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if st, raw := e.call("POST", "/v1/apps/"+appC+"/sessions/new", secretC, nil, nil); st != 201 {
		t.Fatalf("added app: %d %s", st, raw)
	}
	if st, _ := e.call("POST", "/v1/apps/"+appB+"/sessions/new", secretB, nil, nil); st != 401 {
		t.Fatalf("removed app: %d", st)
	}
	if n := e.srv.Stats()[appB].Sessions; n != 0 {
		t.Fatalf("sessions of a removed app must close, %d left (%s)", n, sidB)
	}
	st, raw := e.call("POST", "/v1/apps/"+appA+"/sessions/new", secretA, nil, nil)
	if st != http.StatusForbidden || !strings.Contains(string(raw), `"errorCode":"quota_exceeded"`) {
		t.Fatalf("quota exceeded: %d %s", st, raw)
	}
	bad := testConfig()
	bad.Apps[0].ID = "not-hex"
	if err := e.srv.SetConfig(bad); err == nil {
		t.Fatal("an invalid config must be rejected")
	}
	if st, _ := e.call("POST", "/v1/apps/"+appC+"/sessions/new", secretC, nil, nil); st != 201 {
		t.Fatal("the last good config stays in force")
	}
}

func TestUsageCountsEgressAndSurvivesSessionEnd(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	_, pubSID := publish(t, e, appA, secretA, "u")
	sub, subSID := pull(t, e, appA, secretA, pubSID, "u")
	sub.waitMedia("1", "u-video", 20)
	u := e.srv.Usage()[appA]
	// Each forwarded payload here is over 150 bytes.
	if u.EgressBytes < 20*150 || u.IngressBytes < u.EgressBytes/2 {
		t.Fatalf("usage after 20 packets: %+v", u)
	}
	if b := e.srv.Usage()[appB]; b.EgressBytes != 0 {
		t.Fatalf("app B has no traffic: %+v", b)
	}
	sub.close()
	waitFor(t, 15e9, "subscriber disconnected", func() bool { return !e.srv.SessionConnected(appA, subSID) })
	e.clock.Advance(31e9)
	e.srv.Sweep()
	after := e.srv.Usage()[appA]
	if after.EgressBytes < u.EgressBytes {
		t.Fatalf("usage went down when the session ended: %+v then %+v", u, after)
	}
}

// The usage layer learns, without the media core importing it, which
// client address each app's session uses and every API answer.
func TestHooksSeeClientAddressesRequestsAndQuotas(t *testing.T) {
	var mu sync.Mutex
	addrs := map[netip.AddrPort]bool{}
	var addrApps []string
	requests := map[string]int{}
	limited := 0
	hooks := sfu.Hooks{
		RemoteAddr: func(app string, a netip.AddrPort, active bool) {
			mu.Lock()
			defer mu.Unlock()
			addrs[a] = active
			addrApps = append(addrApps, app)
		},
		Request: func(app string, status int) {
			mu.Lock()
			defer mu.Unlock()
			requests[fmt.Sprintf("%s %d", app, status)]++
		},
		RateLimited: func(app, scope string) {
			mu.Lock()
			defer mu.Unlock()
			if app == appA && scope == "session" {
				limited++
			}
		},
	}
	e := newEnv(t, envOpt{fakeClock: true, hooks: hooks})
	pub, sid := publish(t, e, appA, secretA, "h")
	waitFor(t, 5*time.Second, "remote address reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(addrs) == 1
	})
	pair, err := pub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("client pair: %v", err)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr(pair.Local.Address), pair.Local.Port)
	mu.Lock()
	if !addrs[want] || len(addrs) != 1 || addrApps[0] != appA {
		t.Fatalf("reported %v for %v, want %v active", addrs, addrApps, want)
	}
	mu.Unlock()
	for i := 0; i < 51; i++ {
		e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil)
	}
	e.call("POST", "/v1/apps/"+appA+"/sessions/new", "wrong", nil, nil)
	mu.Lock()
	// tracks/new and 49 GETs fill the session's 50 calls in this (fake) second.
	if requests[appA+" 201"] != 1 || requests[appA+" 200"] != 50 || requests[appA+" 429"] != 2 || requests["unknown 401"] != 1 || limited != 2 {
		t.Fatalf("requests %v limited %d", requests, limited)
	}
	mu.Unlock()
	pub.close()
	waitFor(t, 15*time.Second, "disconnect", func() bool { return !e.srv.SessionConnected(appA, sid) })
	e.clock.Advance(31 * time.Second)
	e.srv.Sweep()
	mu.Lock()
	defer mu.Unlock()
	for a, active := range addrs {
		if active {
			t.Fatalf("%v still attributed after the session ended", a)
		}
	}
}
