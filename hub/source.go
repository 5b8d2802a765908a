package hub

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Origins of an Update.
const (
	FromFile = "file"
	FromHub  = "hub"
)

// Update is a configuration a pod should apply.
type Update struct {
	Config *config.Pod
	// ReadyReplicas is the hub's ready SFU replica count; a file update
	// carries the last count the hub gave (0 if it never answered).
	ReadyReplicas int
	From          string
}

// SourceOptions configure a Source.
type SourceOptions struct {
	// File is the mounted Secret's config file (config.FileName in the
	// mount directory). It survives pod restarts and hub outages.
	File string
	// HubURL, Token and Pool address the hub; empty HubURL means file only.
	HubURL string
	Token  string
	Pool   string
	// Wait is the long-poll duration asked of the hub (default 25 s).
	Wait time.Duration
	// Retry is the pause after a failed hub request (default 1 s).
	Retry time.Duration
	// FileInterval is how often the file is re-read (default 2 s).
	FileInterval time.Duration
	Client       *http.Client
	// OnChange is called, never concurrently, whenever the effective
	// configuration or replica count changes.
	OnChange func(Update)
	Logger   *slog.Logger
}

// Source merges the two config channels of a pod. Rules:
//   - the hub's answer is applied whenever it differs from the current one
//     (and, when both carry a Serial, is not older);
//   - the mounted file is applied at start, and afterwards only while the
//     hub is not answering, and only if its content changed since the
//     hub's last answer and it is not older by Serial. The kubelet syncs a
//     Secret volume up to a minute or more after the hub served the same
//     rendering; an unchanged or older file must never replace a newer hub
//     answer;
//   - an invalid rendering from either side is logged and skipped; the pod
//     keeps serving its last valid configuration.
//
// Lifecycle: NewSource, then Run until the context ends. Current may be
// read at any time.
type Source struct {
	o SourceOptions

	mu        sync.Mutex
	cur       Update
	etag      string
	hubOK     bool
	replicas  int
	fileHash  [32]byte // content last read from the file
	hubFile   [32]byte // file content when the hub last answered 200
	pending   *config.Pod
	curHash   [32]byte
	callbacks sync.Mutex
}

func contentHash(p *config.Pod) [32]byte {
	b, _ := json.Marshal(p)
	return sha256.Sum256(b)
}

// NewSource returns a Source; nothing happens until Run.
func NewSource(o SourceOptions) *Source {
	if o.Wait <= 0 {
		o.Wait = 25 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.FileInterval <= 0 {
		o.FileInterval = 2 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Wait + 10*time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Source{o: o}
}

// Current returns the configuration in effect (Config is nil before any).
func (s *Source) Current() Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Run reads the file once, then follows the hub and the file until ctx
// ends. It returns ctx.Err().
func (s *Source) Run(ctx context.Context) error {
	s.checkFile()
	var wg sync.WaitGroup
	if s.o.HubURL != "" {
		wg.Go(func() { s.followHub(ctx) })
	}
	t := time.NewTicker(s.o.FileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-t.C:
			s.checkFile()
		}
	}
}

func (s *Source) checkFile() {
	if s.o.File == "" {
		return
	}
	data, err := os.ReadFile(s.o.File)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.o.Logger.Warn("read pod config file", "path", s.o.File, "err", err)
		}
		return
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	if sum == s.fileHash {
		s.mu.Unlock()
		return
	}
	s.fileHash = sum
	s.mu.Unlock()
	p, err := config.Parse(data)
	if err != nil {
		s.o.Logger.Error("pod config file invalid; keeping the last config", "path", s.o.File, "err", err)
		return
	}
	s.mu.Lock()
	s.pending = p
	s.mu.Unlock()
	s.considerFile()
}

// considerFile applies the pending file content if the rules allow.
func (s *Source) considerFile() {
	s.mu.Lock()
	p := s.pending
	if p == nil || s.hubOK {
		s.mu.Unlock()
		return
	}
	s.pending = nil
	stale := s.cur.Config != nil && (s.fileHash == s.hubFile && s.cur.From == FromHub ||
		p.Serial > 0 && s.cur.Config.Serial > p.Serial)
	s.mu.Unlock()
	if stale {
		return
	}
	s.apply(p, -1, FromFile)
}

// apply installs p (replicas < 0: keep the last known count) if anything
// changed, and calls OnChange.
func (s *Source) apply(p *config.Pod, replicas int, from string) {
	s.callbacks.Lock()
	defer s.callbacks.Unlock()
	s.mu.Lock()
	if replicas < 0 {
		replicas = s.replicas
	}
	s.replicas = replicas
	// Same content and replica count: nothing to do. Content, not only
	// Version, because hand-written configs (dev, tests) may keep one
	// version string across edits.
	sum := contentHash(p)
	if s.cur.Config != nil && sum == s.curHash && s.cur.ReadyReplicas == replicas {
		s.mu.Unlock()
		return
	}
	s.curHash = sum
	s.cur = Update{Config: p, ReadyReplicas: replicas, From: from}
	u := s.cur
	s.mu.Unlock()
	s.o.Logger.Info("pod config applied", "pool", p.Pool, "version", p.Version, "from", from, "readyReplicas", replicas)
	if s.o.OnChange != nil {
		s.o.OnChange(u)
	}
}

// hubHealthy reports whether the last hub exchange succeeded.
func (s *Source) hubHealthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hubOK
}

func (s *Source) setHubOK(ok bool) {
	s.mu.Lock()
	was := s.hubOK
	s.hubOK = ok
	s.mu.Unlock()
	if !ok && was {
		s.o.Logger.Warn("config hub unreachable; following the mounted file", "pool", s.o.Pool)
		s.considerFile()
	}
}

func (s *Source) followHub(ctx context.Context) {
	followLongPoll(ctx, s.o.Retry, s.pollHub, func(err error) {
		s.setHubOK(false)
		s.o.Logger.Debug("config hub poll failed", "pool", s.o.Pool, "err", err)
	})
}

// followLongPoll runs poll until ctx ends: again at once after an answer,
// after retry when it failed (failed is told why first).
func followLongPoll(ctx context.Context, retry time.Duration, poll func(context.Context) error, failed func(error)) {
	for ctx.Err() == nil {
		err := poll(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failed(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (s *Source) pollHub(ctx context.Context) error {
	s.mu.Lock()
	etag := s.etag
	s.mu.Unlock()
	req, err := longPoll(ctx, s.o.HubURL, ConfigPath, s.o.Pool, s.o.Wait, s.o.Token, etag)
	if err != nil {
		return err
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		s.setHubOK(true)
		return nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("config hub: %d %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var doc ConfigDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxReportBytes)).Decode(&doc); err != nil {
		return fmt.Errorf("config hub: decode: %w", err)
	}
	etag = resp.Header.Get("ETag")
	if doc.Config == nil {
		return fmt.Errorf("config hub: %w: empty config", config.ErrInvalid)
	}
	doc.Config.Default()
	if err := doc.Config.Validate(); err != nil {
		// Do not spin on a bad rendering: remember its ETag and wait for
		// the next one, serving the last valid config meanwhile.
		s.mu.Lock()
		s.etag = etag
		s.mu.Unlock()
		s.setHubOK(true)
		s.o.Logger.Error("config from hub invalid; keeping the last config", "pool", s.o.Pool, "err", err)
		return nil
	}
	s.mu.Lock()
	s.etag = etag
	s.hubFile = s.fileHash
	older := s.cur.Config != nil && doc.Config.Serial > 0 && s.cur.Config.Serial > doc.Config.Serial
	s.mu.Unlock()
	s.setHubOK(true)
	if older {
		s.o.Logger.Warn("config from hub older than the one in use; keeping it", "pool", s.o.Pool,
			"hubSerial", doc.Config.Serial, "serial", s.Current().Config.Serial)
		return nil
	}
	s.apply(doc.Config, doc.ReadyReplicas, FromHub)
	return nil
}

// longPoll builds a hub long-poll GET of path for pool: the hub answers 304
// when its ETag still equals etag after up to wait, else 200 with the body.
func longPoll(ctx context.Context, hubURL, path, pool string, wait time.Duration, token, etag string) (*http.Request, error) {
	q := url.Values{"pool": {pool}, "wait": {fmt.Sprint(int(wait / time.Second))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(hubURL, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	return req, nil
}
