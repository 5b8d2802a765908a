package usage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ReportPath is the hub endpoint reports are POSTed to.
const ReportPath = "/hub/v1/usage"

// DefaultReportInterval is how often a pod reports (DESIGN 1.3: a crashed
// pod loses at most this much of its own counts).
const DefaultReportInterval = 5 * time.Second

// Pod kinds in a Report.
const (
	KindSFU  = "sfu"
	KindTURN = "turn"
)

// Report is one cumulative snapshot of a process's counters. Counters are
// totals since BootTime, never deltas, so a lost or repeated report cannot
// lose or double bytes: the hub keeps, per (Pod, BootID), the highest Seq
// and counters it has applied and adds only the difference.
type Report struct {
	Pod  string `json:"pod"`
	Pool string `json:"pool,omitempty"`
	Kind string `json:"kind"`
	// BootID is new on every process start; its counters start at zero.
	BootID   string    `json:"bootID"`
	BootTime time.Time `json:"bootTime"`
	// Seq increases by one per report of a boot, starting at 1.
	Seq    uint64    `json:"seq"`
	SentAt time.Time `json:"sentAt"`
	// Final marks the last report of a boot (graceful stop): its gauges
	// drop out of the live totals at once instead of after staleness.
	Final bool `json:"final,omitempty"`
	// Draining: the pod got SIGTERM; it takes no new sessions and keeps its
	// existing ones until they end or DrainDeadline passes.
	Draining bool `json:"draining,omitempty"`
	// DrainDeadline is when a draining pod stops, whatever its sessions.
	DrainDeadline *time.Time `json:"drainDeadline,omitempty"`
	// ConfigVersion is the sfu/config.Pod version the process runs.
	ConfigVersion string      `json:"configVersion,omitempty"`
	Apps          []AppReport `json:"apps"`
}

// Sentinel errors of the Reporter.
var (
	// ErrRejected: the hub refused the report for good (bad token, bad
	// body); retrying the same report cannot help.
	ErrRejected = errors.New("usage report rejected")
	// ErrNotAccepted: the hub did not take the report now (unreachable,
	// not ready, overloaded); a later report carries the same counts.
	ErrNotAccepted = errors.New("usage report not accepted")
)

// ReporterOptions configure a Reporter.
type ReporterOptions struct {
	Meter *Meter
	// HubURL is the manager hub's base URL (sfu/config.Pod.Hub).
	HubURL string
	// Token is the shared bearer token the operator gives pods.
	Token string
	Pod   string
	Pool  string
	// Kind is KindSFU or KindTURN.
	Kind string
	// Interval defaults to DefaultReportInterval.
	Interval time.Duration
	// FinalTimeout bounds the shutdown flush, retries included (default
	// 10 s; keep it inside the pod's termination grace period).
	FinalTimeout time.Duration
	// Client defaults to an http.Client with a 5 s timeout.
	Client *http.Client
	// ConfigVersion returns the config version the pod runs; may be nil.
	ConfigVersion func() string
	Clock         Clock
	Logger        *slog.Logger
}

// Reporter sends the Meter's snapshot to the hub every interval and a
// final one on shutdown. Lifecycle: Run until its context ends; Run then
// flushes once (Final) and returns. Sends are serialised.
type Reporter struct {
	o   ReporterOptions
	mu  sync.Mutex
	seq uint64
	// drain is the drain deadline once Drain was called; kick asks Run
	// for a report now.
	drain atomic.Pointer[time.Time]
	kick  chan struct{}
}

// NewReporter returns a Reporter; it does nothing until Run or Flush.
func NewReporter(o ReporterOptions) *Reporter {
	if o.Interval <= 0 {
		o.Interval = DefaultReportInterval
	}
	if o.FinalTimeout <= 0 {
		o.FinalTimeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Kind == "" {
		o.Kind = KindSFU
	}
	return &Reporter{o: o, kick: make(chan struct{}, 1)}
}

// Drain marks this and every later report, the final one included, as
// draining until deadline, and has Run send a report at once so the
// operator sees the drain within a second or two (then every interval as
// before).
func (r *Reporter) Drain(deadline time.Time) {
	d := deadline.UTC()
	r.drain.Store(&d)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run reports every interval until ctx ends, then sends the final report
// (retrying for up to FinalTimeout) and returns its error. Call it after
// the process has stopped carrying traffic, or count on the final report
// missing whatever is counted after it.
func (r *Reporter) Run(ctx context.Context) error {
	if r.o.HubURL == "" {
		// Dev mode and tests without a manager: nothing to report to.
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.FinalTimeout)
			defer cancel()
			return r.Flush(fctx)
		case <-r.kick:
			t.Reset(r.o.Interval)
			if err := r.Send(ctx); err != nil {
				r.o.Logger.Warn("usage report not delivered", "pod", r.o.Pod, "err", err)
			}
		case <-t.C:
			if err := r.Send(ctx); err != nil {
				// The next report carries these counts too; nothing to retry.
				r.o.Logger.Warn("usage report not delivered", "pod", r.o.Pod, "err", err)
			}
		}
	}
}

// Send builds and posts one periodic report.
func (r *Reporter) Send(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.post(ctx, r.build(false))
}

// Flush sends the final report of this boot, retrying with backoff until
// the hub accepts it, refuses it for good, or ctx ends.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.build(true)
	backoff := 100 * time.Millisecond
	for {
		err := r.post(ctx, rep)
		if err == nil || errors.Is(err, ErrRejected) {
			if err == nil {
				r.o.Logger.Info("final usage report delivered", "pod", r.o.Pod, "seq", rep.Seq)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("final usage report seq %d: %w (last: %v)", rep.Seq, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// build takes the next snapshot; r.mu is held.
func (r *Reporter) build(final bool) Report {
	r.seq++
	rep := Report{
		Pod:      r.o.Pod,
		Pool:     r.o.Pool,
		Kind:     r.o.Kind,
		BootID:   r.o.Meter.BootID(),
		BootTime: r.o.Meter.BootTime().UTC(),
		Seq:      r.seq,
		SentAt:   r.o.Clock().UTC(),
		Final:    final,
		Apps:     r.o.Meter.Snapshot(),
	}
	if r.o.ConfigVersion != nil {
		rep.ConfigVersion = r.o.ConfigVersion()
	}
	if d := r.drain.Load(); d != nil {
		deadline := *d
		rep.Draining, rep.DrainDeadline = true, &deadline
	}
	return rep
}

func (r *Reporter) post(ctx context.Context, rep Report) error {
	if r.o.HubURL == "" {
		return fmt.Errorf("%w: no hub URL configured", ErrNotAccepted)
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode usage report: %w", err)
	}
	url := strings.TrimSuffix(r.o.HubURL, "/") + ReportPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.o.Token)
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: post seq %d: %v", ErrNotAccepted, rep.Seq, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: seq %d: %d %s", ErrRejected, rep.Seq, resp.StatusCode, bytes.TrimSpace(msg))
	default:
		return fmt.Errorf("%w: seq %d: %d %s", ErrNotAccepted, rep.Seq, resp.StatusCode, bytes.TrimSpace(msg))
	}
}
