package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrNoHub is returned by Forward when no hub is configured.
var ErrNoHub = errors.New("no hub configured")

// maxPendingForwards bounds the revocations a pod holds while the hub is
// unreachable.
const maxPendingForwards = 4096

// ForwarderOptions configure a RevocationForwarder.
type ForwarderOptions struct {
	// Target returns the hub URL, token and pool in effect (from the pod's
	// current configuration); an empty URL means no hub.
	Target func() (hubURL, token, pool string)
	// Wait is how long Forward waits for the hub before it returns and
	// leaves the revocation to the retry loop (default 1 s).
	Wait time.Duration
	// Retry is the first pause between retries; it doubles up to 10 s
	// (default 500 ms).
	Retry  time.Duration
	Client *http.Client
	Clock  Clock
	Logger *slog.Logger
}

// RevocationForwarder is the API pod's side of fleet-wide revocation: it
// posts every revocation to the hub and retries until the hub accepts it
// or the credential expires.
type RevocationForwarder struct {
	o    ForwarderOptions
	wake chan struct{}

	mu      sync.Mutex
	pending map[string]int64 // username -> expiry (Unix s)
}

// NewRevocationForwarder returns a forwarder; Run retries.
func NewRevocationForwarder(o ForwarderOptions) *RevocationForwarder {
	if o.Wait <= 0 {
		o.Wait = time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 500 * time.Millisecond
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &RevocationForwarder{o: o, wake: make(chan struct{}, 1), pending: map[string]int64{}}
}

// Forward sends one revocation to the hub, waiting at most Wait. If the
// hub does not accept it in time the revocation stays pending and Run
// retries it; the error says why it is still pending.
func (f *RevocationForwarder) Forward(username string, expiry time.Time) error {
	hubURL, _, _ := f.o.Target()
	if hubURL == "" {
		return ErrNoHub
	}
	f.mu.Lock()
	if len(f.pending) >= maxPendingForwards {
		f.dropExpiredLocked()
	}
	if len(f.pending) < maxPendingForwards {
		f.pending[username] = expiry.Unix()
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), f.o.Wait)
	defer cancel()
	err := f.send(ctx, Revocation{Username: username, Expiry: expiry.Unix()})
	if err == nil {
		f.done(username)
		return nil
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return err
}

// Pending is the number of revocations the hub has not accepted yet.
func (f *RevocationForwarder) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

func (f *RevocationForwarder) done(username string) {
	f.mu.Lock()
	delete(f.pending, username)
	f.mu.Unlock()
}

func (f *RevocationForwarder) dropExpiredLocked() {
	now := f.o.Clock().Unix()
	for u, exp := range f.pending {
		if exp <= now {
			delete(f.pending, u)
		}
	}
}

// errRefused marks an answer that retrying will not change.
var errRefused = errors.New("hub refused the revocation")

func (f *RevocationForwarder) send(ctx context.Context, r Revocation) error {
	hubURL, token, pool := f.o.Target()
	if hubURL == "" {
		return ErrNoHub
	}
	body, _ := json.Marshal(revocationRequest{Pool: pool, Revocation: r})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(hubURL, "/")+RevocationsPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("forward revocation: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch {
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusBadRequest:
		return fmt.Errorf("%w: %s", errRefused, strings.TrimSpace(string(msg)))
	default:
		return fmt.Errorf("forward revocation: hub answered %d %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
}

// Run retries pending revocations until ctx ends, then tries once more
// (for at most Wait) so a stopping pod hands over what it still holds.
func (f *RevocationForwarder) Run(ctx context.Context) {
	pause := f.o.Retry
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), f.o.Wait)
			f.flush(fctx)
			cancel()
			return
		case <-f.wake:
		case <-time.After(pause):
		}
		if f.flush(ctx) {
			pause = f.o.Retry
		} else {
			pause = min(2*pause, 10*time.Second)
			// The wake that the failed Forward left must not cut the
			// back-off short.
			select {
			case <-f.wake:
			default:
			}
		}
	}
}

// flush sends every pending revocation; it reports whether none failed.
func (f *RevocationForwarder) flush(ctx context.Context) bool {
	f.mu.Lock()
	f.dropExpiredLocked()
	batch := make([]Revocation, 0, len(f.pending))
	for u, exp := range f.pending {
		batch = append(batch, Revocation{Username: u, Expiry: exp})
	}
	f.mu.Unlock()
	ok := true
	for _, r := range batch {
		err := f.send(ctx, r)
		switch {
		case err == nil:
			f.done(r.Username)
		case errors.Is(err, errRefused):
			f.o.Logger.Error("hub refused a turn revocation; dropping it", "err", err)
			f.done(r.Username)
		default:
			ok = false
			f.o.Logger.Warn("turn revocation not yet forwarded to the hub; retrying", "pending", f.Pending(), "err", err)
			return ok
		}
	}
	return ok
}

// FollowerOptions configure a RevocationFollower.
type FollowerOptions struct {
	// HubURL, Token and Pool address the hub; empty HubURL means the file
	// only.
	HubURL string
	Token  string
	Pool   string
	// File is the persisted list mounted beside the pod's configuration
	// (RevocationsFileName in the config Secret's mount); read at start
	// and every FileInterval, so a pod that starts while the hub is down
	// still refuses what was revoked before.
	File string
	// Wait is the long-poll duration asked of the hub (default 25 s),
	// Retry the pause after a failed request (default 1 s), FileInterval
	// how often File is re-read (default 5 s).
	Wait         time.Duration
	Retry        time.Duration
	FileInterval time.Duration
	Client       *http.Client
	// OnRevocation is called, never concurrently, once for every
	// revocation the pod had not seen yet.
	OnRevocation func(Revocation)
	Clock        Clock
	Logger       *slog.Logger
}

// RevocationFollower is the TURN pod's side: it follows the pool's
// revocation list on the hub (long-poll) and in the mounted file, and
// hands each new entry to OnRevocation. What it has seen stays applied
// when the hub goes away: lists only grow until entries expire.
type RevocationFollower struct {
	o FollowerOptions

	mu       sync.Mutex
	seen     map[string]int64
	etag     string
	fileHash [32]byte
}

// NewRevocationFollower returns a follower; nothing happens until Run.
func NewRevocationFollower(o FollowerOptions) *RevocationFollower {
	if o.Wait <= 0 {
		o.Wait = 25 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.FileInterval <= 0 {
		o.FileInterval = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Wait + 10*time.Second}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &RevocationFollower{o: o, seen: map[string]int64{}}
}

// LoadFile applies the file's list now (a pod calls it before it serves).
func (f *RevocationFollower) LoadFile() { f.checkFile() }

// Run reads the file once, then follows the hub and the file until ctx
// ends.
func (f *RevocationFollower) Run(ctx context.Context) {
	f.checkFile()
	var wg sync.WaitGroup
	if f.o.HubURL != "" {
		wg.Go(func() { f.followHub(ctx) })
	}
	t := time.NewTicker(f.o.FileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			f.checkFile()
		}
	}
}

// Seen is the number of live revocations the follower has applied.
func (f *RevocationFollower) Seen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// apply hands the entries not seen yet to OnRevocation.
func (f *RevocationFollower) apply(l RevocationList, from string) {
	now := f.o.Clock().Unix()
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, exp := range f.seen {
		if exp <= now {
			delete(f.seen, u)
		}
	}
	n := 0
	for _, r := range l.Revocations {
		if r.Expiry <= now || !validUsername(r.Username) {
			continue
		}
		if old, ok := f.seen[r.Username]; ok && old >= r.Expiry {
			continue
		}
		f.seen[r.Username] = r.Expiry
		n++
		if f.o.OnRevocation != nil {
			f.o.OnRevocation(r)
		}
	}
	if n > 0 {
		f.o.Logger.Info("turn revocations applied", "pool", f.o.Pool, "new", n, "from", from, "live", len(f.seen))
	}
}

func (f *RevocationFollower) checkFile() {
	if f.o.File == "" {
		return
	}
	data, err := os.ReadFile(f.o.File)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.o.Logger.Warn("read turn revocations file", "path", f.o.File, "err", err)
		}
		return
	}
	sum := sha256.Sum256(data)
	f.mu.Lock()
	same := sum == f.fileHash
	f.fileHash = sum
	f.mu.Unlock()
	if same {
		return
	}
	l, err := ParseRevocationList(data)
	if err != nil {
		f.o.Logger.Error("turn revocations file invalid; ignoring it", "path", f.o.File, "err", err)
		return
	}
	f.apply(l, FromFile)
}

func (f *RevocationFollower) followHub(ctx context.Context) {
	followLongPoll(ctx, f.o.Retry, f.poll, func(err error) {
		f.o.Logger.Debug("turn revocations poll failed", "pool", f.o.Pool, "err", err)
	})
}

func (f *RevocationFollower) poll(ctx context.Context) error {
	f.mu.Lock()
	etag := f.etag
	f.mu.Unlock()
	req, err := longPoll(ctx, f.o.HubURL, RevocationsPath, f.o.Pool, f.o.Wait, f.o.Token, etag)
	if err != nil {
		return err
	}
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("revocations hub: %d %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReportBytes))
	if err != nil {
		return fmt.Errorf("revocations hub: read: %w", err)
	}
	l, err := ParseRevocationList(body)
	if err != nil {
		return fmt.Errorf("revocations hub: %w", err)
	}
	f.apply(l, FromHub)
	f.mu.Lock()
	f.etag = resp.Header.Get("ETag")
	f.mu.Unlock()
	return nil
}
