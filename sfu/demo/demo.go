package demo

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// App is one Calls app the page can use.
type App struct {
	// Name is shown in the app picker, e.g. "default/demo".
	Name string `json:"name"`
	// ID is the app ID in the API path.
	ID string `json:"id"`
	// Secret is the app's bearer secret. It reaches the browser: dev only.
	Secret string `json:"secret"`
}

// Config is what the page learns from /demo/config.json.
type Config struct {
	// APIBase is the API base URL the page calls, e.g. "/v1" (same origin)
	// or "http://127.0.0.1:8080/v1".
	APIBase string `json:"apiBase"`
	// Apps lists the apps to pick from; the first one is used by default.
	Apps []App `json:"apps"`
}

//go:embed static
var staticFS embed.FS

// Page serves the demo page. It is an http.Handler; SetConfig swaps the
// app list while it serves.
type Page struct {
	mux    *http.ServeMux
	config atomic.Pointer[[]byte] // JSON of the current Config
}

// Handler serves the page at "/" and its assets and config under "/demo/".
// The config (with the app secrets) is answered only for a loopback Host and
// never to a cross-site fetch. Mount it at the root of a mux for exactly
// those two patterns, e.g.
//
//	mux.Handle("GET /{$}", h)
//	mux.Handle("GET /demo/", h)
//
// Any other path answers 404.
func Handler(cfg Config) *Page {
	assets, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(fmt.Sprintf("demo: static files: %v", err))
	}
	files := http.FileServerFS(assets)
	p := &Page{mux: http.NewServeMux()}
	p.SetConfig(cfg)

	p.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		http.ServeFileFS(w, r, assets, "index.html")
	})
	p.mux.HandleFunc("GET /demo/config.json", func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		if !sameMachine(r) {
			http.Error(w, "the demo config is served to pages on this machine only", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*p.config.Load())
	})
	p.mux.Handle("GET /demo/", http.StripPrefix("/demo/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path == "index.html" {
			// The page lives at "/"; FileServer would redirect index.html.
			http.NotFound(w, r)
			return
		}
		noStore(w)
		files.ServeHTTP(w, r)
	})))
	return p
}

// SetConfig replaces the app list; pages loaded from now on see it.
func (p *Page) SetConfig(cfg Config) {
	if cfg.APIBase == "" {
		cfg.APIBase = "/v1"
	}
	if cfg.Apps == nil {
		cfg.Apps = []App{}
	}
	// The error is impossible for these plain types.
	body, err := json.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("demo: encode config: %v", err))
	}
	p.config.Store(&body)
}

// ServeHTTP serves the page, its assets and its config.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// sameMachine reports whether a config request comes from the demo page on
// a loopback origin. The config holds app secrets: JSON (not a script) with
// no CORS header already keeps other sites from reading it; refusing
// cross-site fetches and non-loopback Host names also stops a DNS-rebinding
// page from reading it as "same origin".
func sameMachine(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// noStore keeps browsers from caching the page across dev restarts, when
// the app list or the page itself may have changed.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}
