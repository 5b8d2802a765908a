package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

var (
	devAppIDLine    = regexp.MustCompile(`(?m)^\s*app ID\s+([0-9a-f]{32})$`)
	devSecretLine   = regexp.MustCompile(`(?m)^\s*secret\s+(\S+)$`)
	devAdminKeyLine = regexp.MustCompile(`(?m)^\s*admin key\s+([0-9a-f]{64})$`)
)

// appLimited429 is the body a client over its app's limit reads (DESIGN
// 1.2), byte for byte.
const appLimited429 = `{"success":false,"error":"Rate limit exceeded","errorCode":"rate_limited",` +
	`"errorDescription":"Too many requests for this app from this client IP; retry after the number of seconds in the Retry-After header"}`

type adminReply struct {
	Success bool            `json:"success"`
	App     *hub.AdminApp   `json:"app"`
	Usage   *hub.AdminUsage `json:"usage"`
	Error   string          `json:"error"`
}

func adminCall(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Admin-API-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(raw)
}

func decodeAdmin(t *testing.T, raw string) adminReply {
	t.Helper()
	var r adminReply
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("admin reply %q: %v", raw, err)
	}
	return r
}

// A POST to dev's admin API changes the limit dev enforces within 5 s: a
// burst from one client then gets the exact 429 body with Retry-After, and
// GET shows the new limit and the throttled requests in the app's usage.
func TestDevAdminAPIChangesTheRateLimitDevEnforces(t *testing.T) {
	out, _ := startDevInProcess(t, "--turn-port", "-1")
	base, id, secret, key := devBaseLine.FindStringSubmatch(out), devAppIDLine.FindStringSubmatch(out),
		devSecretLine.FindStringSubmatch(out), devAdminKeyLine.FindStringSubmatch(out)
	if base == nil || id == nil || secret == nil || key == nil {
		t.Fatalf("banner lacks the base URL, app ID, secret or admin key:\n%s", out)
	}
	if n := strings.Count(out, key[1]); n != 1 {
		t.Errorf("the generated admin key is printed %d times, want once", n)
	}
	origin := strings.TrimSuffix(base[1], "/v1")
	appID, adminKey := id[1], key[1]
	appURL := origin + hub.AdminPathPrefix + appID

	if code, body := adminCall(t, "GET", appURL, "not-the-key", ""); code != 401 ||
		body != `{"success":false,"error":"missing or invalid X-Admin-API-Key"}`+"\n" {
		t.Errorf("wrong key: %d %s", code, body)
	}
	if code, body := adminCall(t, "POST", appURL, "", `{"rate_limit":3}`); code != 401 {
		t.Errorf("no key: %d %s", code, body)
	}
	if code, body := adminCall(t, "POST", origin+hub.AdminPathPrefix+strings.Repeat("f", 32), adminKey, `{"rate_limit":3}`); code != 404 ||
		body != `{"success":false,"error":"app not found"}`+"\n" {
		t.Errorf("unknown app: %d %s", code, body)
	}
	for _, bad := range []string{`{"rate_limit":"fast"}`, `{"rate_limit":0}`, `{}`, `{"rate_limit":3,"burst":9}`, `not json`} {
		code, body := adminCall(t, "POST", appURL, adminKey, bad)
		if r := decodeAdmin(t, body); code != 400 || r.Success || !strings.Contains(r.Error, "rate_limit") {
			t.Errorf("body %s: %d %s", bad, code, body)
		}
	}

	newSession := func() (int, http.Header, string) {
		req, _ := http.NewRequest("POST", base[1]+"/apps/"+appID+"/sessions/new", nil)
		req.Header.Set("Authorization", "Bearer "+secret[1])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(raw)
	}
	// burst sends 7 requests; within one second they span at most two
	// 1 s windows, so a limit of 3 lets at most 6 through.
	burst := func() (created, limited int, took time.Duration) {
		start := time.Now()
		for range 7 {
			code, h, body := newSession()
			switch code {
			case http.StatusCreated:
				created++
			case http.StatusTooManyRequests:
				limited++
				if body != appLimited429 || h.Get("Retry-After") != "1" || h.Get("Content-Type") != "application/json" {
					t.Errorf("429 reads Retry-After %q, Content-Type %q, body %s; want 1, application/json, %s",
						h.Get("Retry-After"), h.Get("Content-Type"), body, appLimited429)
				}
			default:
				t.Fatalf("sessions/new: %d %s", code, body)
			}
		}
		return created, limited, time.Since(start)
	}
	if created, _, _ := burst(); created != 7 {
		t.Fatalf("before the change, %d of 7 sessions/new got through the default limit of 10,000/s", created)
	}

	code, body := adminCall(t, "POST", appURL, adminKey, `{"rate_limit": 3}`)
	if r := decodeAdmin(t, body); code != 200 || !r.Success || r.App == nil || r.App.RateLimit != 3 || r.App.AppID != appID {
		t.Fatalf("POST rate_limit 3: %d %s", code, body)
	}
	changed := time.Now()
	throttled := 0
	for {
		if time.Since(changed) > 5*time.Second {
			t.Fatalf("no 429 within 5 s of POST rate_limit 3")
		}
		created, limited, took := burst()
		throttled += limited
		if took >= time.Second {
			continue // too slow to prove anything about one window; try again
		}
		if limited > 0 {
			if created > 6 {
				t.Fatalf("%d of 7 requests in %v got through a limit of 3/s", created, took)
			}
			t.Logf("limit 3/s enforced %v after the POST (%d created, %d refused in %v)", time.Since(changed).Round(time.Millisecond), created, limited, took)
			break
		}
	}
	// In a fresh window the client gets its 3, not nothing: the limit is 3,
	// not a refusal of everything.
	for {
		time.Sleep(1100 * time.Millisecond)
		created, limited, took := burst()
		throttled += limited
		if took >= time.Second {
			continue
		}
		if created < 3 || created > 6 || limited < 1 {
			t.Fatalf("a fresh burst of 7 under a limit of 3/s: %d created, %d refused", created, limited)
		}
		break
	}

	// GET shows the limit in force and, after the next usage report (every
	// 5 s), the refused requests.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := adminCall(t, "GET", appURL, adminKey, "")
		r := decodeAdmin(t, body)
		if code != 200 || r.App == nil || r.App.RateLimit != 3 || r.App.UnauthenticatedRateLimit != config.DefaultUnauthenticatedPerSecond ||
			r.App.SessionCallsPerSecond != config.DefaultSessionCallsPerSecond || r.App.Name != "default/demo-app" {
			t.Fatalf("GET: %d %s", code, body)
		}
		if u := r.Usage; u != nil && u.ThrottledApp == int64(throttled) {
			if u.Month != time.Now().UTC().Format("2006-01") || u.PeakRequestsPerSecond < 4 {
				t.Errorf("usage: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET usage never showed the %d throttled requests: %s", throttled, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// A key given with --admin-key opens the admin API and is not printed.
func TestDevAdminKeyFromTheFlagIsUsedAndNotPrinted(t *testing.T) {
	const key = "my-own-dev-admin-key-0123456789"
	out, _ := startDevInProcess(t, "--turn-port", "-1", "--admin-key", key)
	base, id := devBaseLine.FindStringSubmatch(out), devAppIDLine.FindStringSubmatch(out)
	if base == nil || id == nil {
		t.Fatalf("banner:\n%s", out)
	}
	if strings.Contains(out, key) || devAdminKeyLine.MatchString(out) {
		t.Errorf("the banner prints an admin key although --admin-key gave it:\n%s", out)
	}
	url := strings.TrimSuffix(base[1], "/v1") + hub.AdminPathPrefix + id[1]
	if code, body := adminCall(t, "GET", url, key, ""); code != 200 || decodeAdmin(t, body).App == nil || decodeAdmin(t, body).App.AppID != id[1] {
		t.Errorf("GET with the --admin-key value: %d %s", code, body)
	}
}

// A limit set through the admin API outlives reloads of an unchanged YAML,
// and gives way when the YAML's own limit for the app changes.
func TestDevRateLimitOverrideYieldsToAYAMLEdit(t *testing.T) {
	app := func(limit int) devApp {
		a := devApp{name: "default/a", creds: render.AppCredentials{AppID: strings.Repeat("a", 32), AppSecret: "s"}, billing: hub.DefaultBilling}
		a.config = config.App{ID: a.creds.AppID, Name: a.name, SecretSHA256: strings.Repeat("0", 64)}
		a.config.RateLimit.AuthenticatedPerSecond = limit
		return a
	}
	dir := t.TempDir()
	h, err := newDevHub([]devApp{app(0)}, devNet{udpPort: 3479}, "http://127.0.0.1:1", dir)
	if err != nil {
		t.Fatal(err)
	}
	limitInFile := func() int {
		p, err := config.Load(filepath.Join(dir, devPodFile))
		if err != nil {
			t.Fatal(err)
		}
		return p.Apps[0].RateLimit.AuthenticatedPerSecond
	}
	got := func() int {
		a, err := h.GetApp(t.Context(), strings.Repeat("a", 32))
		if err != nil {
			t.Fatal(err)
		}
		return a.RateLimit
	}
	if got() != config.DefaultAuthenticatedPerSecond {
		t.Fatalf("default limit shows as %d", got())
	}
	if _, err := h.SetRateLimit(t.Context(), strings.Repeat("a", 32), 7); err != nil {
		t.Fatal(err)
	}
	if got() != 7 || limitInFile() != 7 {
		t.Fatalf("after the POST: admin view %d, pod file %d; want 7", got(), limitInFile())
	}
	if err := h.setApps([]devApp{app(0)}); err != nil {
		t.Fatal(err)
	}
	if got() != 7 {
		t.Fatalf("a reload of the unchanged YAML reset the limit to %d", got())
	}
	if err := h.setApps([]devApp{app(50)}); err != nil {
		t.Fatal(err)
	}
	if got() != 50 || limitInFile() != 50 {
		t.Fatalf("after the YAML set 50: admin view %d, pod file %d", got(), limitInFile())
	}
	if _, err := h.GetApp(t.Context(), strings.Repeat("b", 32)); err == nil {
		t.Fatal("an unknown app was found")
	}
}
