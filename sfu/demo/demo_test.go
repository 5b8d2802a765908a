package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	return getFrom(t, h, "http://127.0.0.1:8080"+path, nil)
}

func getFrom(t *testing.T, h http.Handler, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func TestPageLoadsItsScriptsFromTheHandler(t *testing.T) {
	h := Handler(Config{})
	res, body := get(t, h, "/")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q, want 200 text/html", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, ref := range []string{`src="/demo/app.js"`, `href="/demo/style.css"`} {
		if !strings.Contains(body, ref) {
			t.Errorf("page does not reference %s", ref)
		}
	}
	if _, js := get(t, h, "/demo/app.js"); !strings.Contains(js, "fetch('/demo/config.json'") {
		t.Error("app.js does not load /demo/config.json")
	}
	for _, path := range []string{"/demo/app.js", "/demo/style.css"} {
		res, body := get(t, h, path)
		if res.StatusCode != http.StatusOK || len(body) < 100 {
			t.Errorf("GET %s = %d with %d bytes", path, res.StatusCode, len(body))
		}
	}
}

func TestConfigCarriesTheApps(t *testing.T) {
	h := Handler(Config{APIBase: "http://127.0.0.1:8080/v1", Apps: []App{
		{Name: "default/demo", ID: strings.Repeat("a", 32), Secret: "s3cret"},
	}})
	res, body := get(t, h, "/demo/config.json")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /demo/config.json = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", res.Header.Get("Cache-Control"))
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("config answers CORS (%q): other sites could read the secret", res.Header.Get("Access-Control-Allow-Origin"))
	}
	var got Config
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("config is not JSON: %v: %s", err, body)
	}
	if got.APIBase != "http://127.0.0.1:8080/v1" || len(got.Apps) != 1 || got.Apps[0].Secret != "s3cret" {
		t.Errorf("config = %+v", got)
	}
}

func TestConfigIsRefusedToOtherSitesAndRebindingHosts(t *testing.T) {
	h := Handler(Config{Apps: []App{{Name: "a", ID: strings.Repeat("a", 32), Secret: "s3cret"}}})
	for _, c := range []struct {
		url    string
		header map[string]string
		want   int
	}{
		{"http://127.0.0.1:8080/demo/config.json", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"http://localhost:8080/demo/config.json", nil, http.StatusOK},
		{"http://[::1]:8080/demo/config.json", nil, http.StatusOK},
		{"http://127.0.0.1:8080/demo/config.json", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"http://rebind.example:8080/demo/config.json", nil, http.StatusForbidden},
		{"http://192.0.2.7:8080/demo/config.json", nil, http.StatusForbidden},
	} {
		res, body := getFrom(t, h, c.url, c.header)
		if res.StatusCode != c.want {
			t.Errorf("GET %s %v = %d, want %d", c.url, c.header, res.StatusCode, c.want)
		}
		if c.want != http.StatusOK && strings.Contains(body, "s3cret") {
			t.Errorf("GET %s %v leaked the secret", c.url, c.header)
		}
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	h := Handler(Config{})
	for _, path := range []string{"/v1/apps/x/sessions/new", "/demo/", "/demo/index.html", "/demo/nope.js", "/demo/config.js", "/index.html"} {
		if res, _ := get(t, h, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, res.StatusCode)
		}
	}
}

func TestSetConfigChangesTheAppListServed(t *testing.T) {
	h := Handler(Config{Apps: []App{{Name: "old", ID: strings.Repeat("a", 32), Secret: "one"}}})
	h.SetConfig(Config{Apps: []App{{Name: "new", ID: strings.Repeat("b", 32), Secret: "two"}}})
	_, body := get(t, h, "/demo/config.json")
	if !strings.Contains(body, `"name":"new"`) || strings.Contains(body, `"name":"old"`) {
		t.Errorf("config after SetConfig = %s, want only the new app", body)
	}
}
