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
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
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
	for _, ref := range []string{`src="/demo/config.js"`, `src="/demo/app.js"`, `href="/demo/style.css"`} {
		if !strings.Contains(body, ref) {
			t.Errorf("page does not reference %s", ref)
		}
	}
	for _, path := range []string{"/demo/app.js", "/demo/style.css"} {
		res, body := get(t, h, path)
		if res.StatusCode != http.StatusOK || len(body) < 100 {
			t.Errorf("GET %s = %d with %d bytes", path, res.StatusCode, len(body))
		}
	}
}

func TestConfigScriptCarriesTheAppsAndEscapesMarkup(t *testing.T) {
	h := Handler(Config{APIBase: "http://127.0.0.1:8080/v1", Apps: []App{
		{Name: "default/demo", ID: strings.Repeat("a", 32), Secret: "s3cret</script><b>"},
	}})
	res, body := get(t, h, "/demo/config.js")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("GET /demo/config.js = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", res.Header.Get("Cache-Control"))
	}
	if strings.Contains(body, "</script>") {
		t.Errorf("config script contains a raw </script>: %s", body)
	}
	const prefix = "window.SWITCHBOARD_DEMO = "
	i := strings.Index(body, prefix)
	if i < 0 {
		t.Fatalf("config script does not set window.SWITCHBOARD_DEMO: %s", body)
	}
	raw := strings.TrimSuffix(strings.TrimSpace(body[i+len(prefix):]), ";")
	var got Config
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("config is not JSON: %v: %s", err, raw)
	}
	if got.APIBase != "http://127.0.0.1:8080/v1" || len(got.Apps) != 1 || got.Apps[0].Secret != "s3cret</script><b>" {
		t.Errorf("config = %+v", got)
	}
}

func TestEmptyConfigDefaultsToSameOriginAPI(t *testing.T) {
	_, body := get(t, Handler(Config{}), "/demo/config.js")
	if !strings.Contains(body, `"apiBase":"/v1"`) || !strings.Contains(body, `"apps":[]`) {
		t.Errorf("config.js = %s, want apiBase /v1 and an empty app list", body)
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	h := Handler(Config{})
	for _, path := range []string{"/v1/apps/x/sessions/new", "/demo/", "/demo/index.html", "/demo/nope.js", "/index.html"} {
		if res, _ := get(t, h, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, res.StatusCode)
		}
	}
}
