package hub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

const pool = "calls/pool"

func podConfig(version string, limit int) *config.Pod {
	return &config.Pod{Version: version, Serial: int64(limit), Pool: pool, Apps: []config.App{{
		ID: appA, Name: "calls/app-a", SecretSHA256: strings.Repeat("ab", 32),
		RateLimit: config.RateLimit{AuthenticatedPerSecond: limit},
	}}}
}

func writeConfigFile(t *testing.T, path string, p *config.Pod) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet swaps a symlink; a rename is the same atomic step.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func hubGet(t *testing.T, url, etag, tok string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestConfigEndpointServesETagAndWakesLongPollOnChange(t *testing.T) {
	store := NewConfigStore()
	if err := store.Set(pool, podConfig("v1", 100), 3); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&Server{Ledger: NewLedger(LedgerOptions{}), Configs: store, Token: token}).Handler())
	defer srv.Close()
	base := srv.URL + ConfigPath + "?pool=" + pool
	code, hdr, body := hubGet(t, base, "", token)
	var doc ConfigDoc
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || doc.Config.Version != "v1" || doc.ReadyReplicas != 3 {
		t.Fatalf("GET: %d %s", code, body)
	}
	etag := hdr.Get("ETag")
	if etag != `"v1.r3"` {
		t.Fatalf("ETag %q, want \"v1.r3\"", etag)
	}
	if code, _, _ := hubGet(t, base, etag, token); code != http.StatusNotModified {
		t.Fatalf("conditional GET: %d, want 304", code)
	}
	// Setting identical content wakes nobody and keeps the ETag.
	if err := store.Set(pool, podConfig("v1", 100), 3); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.AfterFunc(200*time.Millisecond, func() { _ = store.Set(pool, podConfig("v2", 200), 3) })
	code, hdr, body = hubGet(t, base+"&wait=10", etag, token)
	took := time.Since(start)
	if code != 200 || !strings.Contains(body, `"version":"v2"`) || hdr.Get("ETag") != `"v2.r3"` {
		t.Fatalf("long poll: %d %s %v", code, body, hdr)
	}
	if took < 150*time.Millisecond || took > 5*time.Second {
		t.Fatalf("long poll answered after %v, want soon after the 200 ms change", took)
	}
	// A replica change alone is a new document.
	_ = store.Set(pool, podConfig("v2", 200), 4)
	if code, hdr, _ := hubGet(t, base, `"v2.r3"`, token); code != 200 || hdr.Get("ETag") != `"v2.r4"` {
		t.Fatalf("after scaling: %d %v", code, hdr.Get("ETag"))
	}
	if code, _, _ := hubGet(t, srv.URL+ConfigPath+"?pool=calls/other", "", token); code != http.StatusNotFound {
		t.Fatalf("unknown pool: %d, want 404", code)
	}
	if code, _, body := hubGet(t, base, "", "wrong"); code != http.StatusUnauthorized || strings.Contains(body, "version") {
		t.Fatalf("bad token: %d %s, want 401 without the config", code, body)
	}
}

// recorder collects a Source's updates.
type recorder struct {
	mu  sync.Mutex
	got []Update
	ch  chan Update
}

func newRecorder() *recorder { return &recorder{ch: make(chan Update, 64)} }

func (r *recorder) on(u Update) {
	r.mu.Lock()
	r.got = append(r.got, u)
	r.mu.Unlock()
	r.ch <- u
}

// waitFor returns the first update for which ok holds, failing after d.
func (r *recorder) waitFor(t *testing.T, d time.Duration, what string, ok func(Update) bool) Update {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case u := <-r.ch:
			if ok(u) {
				return u
			}
		case <-deadline:
			t.Fatalf("no update with %s within %v; got %+v", what, d, r.got)
		}
	}
}

func version(v string) func(Update) bool {
	return func(u Update) bool { return u.Config.Version == v }
}

func startSource(t *testing.T, o SourceOptions) (*Source, *recorder, context.CancelFunc) {
	t.Helper()
	rec := newRecorder()
	o.OnChange = rec.on
	o.Pool, o.Token = pool, token
	if o.Retry == 0 {
		o.Retry = 50 * time.Millisecond
	}
	if o.FileInterval == 0 {
		o.FileInterval = 50 * time.Millisecond
	}
	if o.Wait == 0 {
		o.Wait = time.Second
	}
	s := NewSource(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, rec, stop
}

func TestPodAppliesAChangedAppWithinFiveSeconds(t *testing.T) {
	store := NewConfigStore()
	_ = store.Set(pool, podConfig("v1", 100), 2)
	sw := &switchable{}
	sw.set((&Server{Ledger: NewLedger(LedgerOptions{}), Configs: store, Token: token}).Handler())
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close) // after the source stops (cleanups run last-in first-out)
	dir := t.TempDir()
	file := filepath.Join(dir, config.FileName)
	writeConfigFile(t, file, podConfig("v0", 50)) // the kubelet has not synced v1 yet
	_, rec, _ := startSource(t, SourceOptions{File: file, HubURL: srv.URL, Wait: 20 * time.Second})
	first := rec.waitFor(t, 5*time.Second, "the file's v0", version("v0"))
	if first.From != FromFile {
		t.Fatalf("first update from %s, want the file", first.From)
	}
	u := rec.waitFor(t, 5*time.Second, "the hub's v1", version("v1"))
	if u.From != FromHub || u.ReadyReplicas != 2 || u.Config.Apps[0].RateLimit.AuthenticatedPerSecond != 100 {
		t.Fatalf("hub update %+v", u)
	}
	// The admin API raises the limit; the operator re-renders.
	start := time.Now()
	_ = store.Set(pool, podConfig("v2", 200), 2)
	u = rec.waitFor(t, 5*time.Second, "v2", version("v2"))
	if took := time.Since(start); took > 5*time.Second || u.Config.Apps[0].RateLimit.AuthenticatedPerSecond != 200 {
		t.Fatalf("v2 applied after %v with %+v", took, u.Config.Apps[0].RateLimit)
	}
	t.Logf("config change applied %v after the operator published it (long-poll)", time.Since(start))
	// Scaling the pool changes only the replica count.
	_ = store.Set(pool, podConfig("v2", 200), 3)
	rec.waitFor(t, 5*time.Second, "3 replicas", func(u Update) bool { return u.ReadyReplicas == 3 })
}

func TestPodKeepsItsLastConfigThroughHubOutageAndRestart(t *testing.T) {
	store := NewConfigStore()
	_ = store.Set(pool, podConfig("v2", 200), 2)
	sw := &switchable{}
	hub := (&Server{Ledger: NewLedger(LedgerOptions{}), Configs: store, Token: token}).Handler()
	sw.set(hub)
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), config.FileName)
	writeConfigFile(t, file, podConfig("v1", 100))
	s, rec, stop := startSource(t, SourceOptions{File: file, HubURL: srv.URL})
	rec.waitFor(t, 5*time.Second, "the hub's v2", version("v2"))

	// A stale file change while the hub answers is ignored (and stays
	// ignored when the hub goes away: its Serial is lower).
	writeConfigFile(t, file, podConfig("v1b", 150))
	time.Sleep(300 * time.Millisecond)
	if v := s.Current().Config.Version; v != "v2" {
		t.Fatalf("with the hub answering, a file change replaced v2 with %s", v)
	}

	// The operator goes down: the pod keeps v2, never falls back to the
	// older file.
	sw.set(nil)
	deadline := time.Now().Add(5 * time.Second)
	for s.hubHealthy() {
		if time.Now().After(deadline) {
			t.Fatal("source still trusts the hub 5 s into the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if v := s.Current().Config.Version; v != "v2" {
		t.Fatalf("during the outage the pod switched to %s", v)
	}
	// The kubelet syncs a newer Secret during the outage: followed.
	writeConfigFile(t, file, podConfig("v3", 300))
	u := rec.waitFor(t, 5*time.Second, "the file's v3", version("v3"))
	if u.From != FromFile || u.ReadyReplicas != 2 {
		t.Fatalf("file update %+v, want from the file keeping 2 replicas", u)
	}

	// The pod restarts while the operator is still down: it serves v3
	// from the file at once.
	stop()
	_, rec2, _ := startSource(t, SourceOptions{File: file, HubURL: srv.URL})
	rec2.waitFor(t, 5*time.Second, "v3 after restart", version("v3"))

	// The operator returns with v4.
	_ = store.Set(pool, podConfig("v4", 400), 2)
	sw.set(hub)
	rec2.waitFor(t, 5*time.Second, "v4 once the hub is back", version("v4"))
}

// Hand-written configs (dev mode) may keep one version string across
// edits: a content change is still applied.
func TestPodAppliesAnEditedFileWithTheSameVersion(t *testing.T) {
	file := filepath.Join(t.TempDir(), config.FileName)
	writeConfigFile(t, file, podConfig("dev", 100))
	s, rec, _ := startSource(t, SourceOptions{File: file})
	rec.waitFor(t, 5*time.Second, "the first file", version("dev"))
	if s.Current().From != FromFile {
		t.Fatalf("first config from %s", s.Current().From)
	}
	edited := podConfig("dev", 100)
	edited.Apps[0].RateLimit.AuthenticatedPerSecond = 7
	writeConfigFile(t, file, edited)
	rec.waitFor(t, 5*time.Second, "the edit", func(u Update) bool { return u.Config.Apps[0].RateLimit.AuthenticatedPerSecond == 7 })
	if got := len(rec.got); got != 2 {
		t.Fatalf("%d updates, want 2", got)
	}
}

func TestPodSkipsAnInvalidRenderingAndKeepsServing(t *testing.T) {
	store := NewConfigStore()
	_ = store.Set(pool, podConfig("v1", 100), 1)
	srv := httptest.NewServer((&Server{Ledger: NewLedger(LedgerOptions{}), Configs: store, Token: token}).Handler())
	t.Cleanup(srv.Close)
	s, rec, _ := startSource(t, SourceOptions{HubURL: srv.URL})
	rec.waitFor(t, 5*time.Second, "v1", version("v1"))
	bad := podConfig("v2", 100)
	bad.Apps[0].ID = "not-an-app-id"
	_ = store.Set(pool, bad, 1)
	time.Sleep(300 * time.Millisecond)
	if v := s.Current().Config.Version; v != "v1" {
		t.Fatalf("after an invalid rendering the pod runs %s, want v1", v)
	}
	_ = store.Set(pool, podConfig("v3", 100), 1)
	rec.waitFor(t, 5*time.Second, "v3 after the bad one", version("v3"))
}
