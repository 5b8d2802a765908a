package hub

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

// Clock returns the current time; tests inject a fake one.
type Clock func() time.Time

// Sentinel errors of the Ledger.
var (
	// ErrNotReady: the ledger has not been restored from persisted state
	// yet; applying a report now could count it twice. Pods retry.
	ErrNotReady = errors.New("usage ledger not ready")
	// ErrBadReport: the report is malformed.
	ErrBadReport = errors.New("bad usage report")
)

// Defaults of LedgerOptions.
const (
	DefaultStaleAfter    = 3 * usage.DefaultReportInterval
	DefaultWatermarkTTL  = time.Hour
	DefaultFinalTTL      = 2 * time.Minute
	DefaultMaxWatermarks = 64
)

// DefaultBilling is the Calls pricing (DESIGN 1.3).
var DefaultBilling = Billing{FreeGB: config.DefaultFreeGB, PricePerGBMicroUSD: config.DefaultPricePerGBMicroUSD}

// LedgerOptions configure a Ledger; zero values pick the defaults.
type LedgerOptions struct {
	Clock Clock
	// StaleAfter: a pod boot that has not reported for this long no longer
	// counts in live sessions and tracks (a killed pod).
	StaleAfter time.Duration
	// WatermarkTTL: a boot silent this long is forgotten.
	WatermarkTTL time.Duration
	// FinalTTL: a boot is forgotten this long after its final report.
	FinalTTL time.Duration
	// MaxWatermarks bounds the watermarks kept per app.
	MaxWatermarks int
	// OnChange, if set, is called after a report changed an app's usage,
	// outside the ledger's lock (e.g. to enqueue the CallsApp reconcile).
	OnChange func(appID string)
}

// Ledger turns pod usage reports into per-app monthly usage. Safe for
// concurrent use. Lifecycle: NewLedger; Restore every existing app from
// its persisted AppState (or SetApp for apps with none); SetReady; then
// Apply reports. Reports for apps the ledger does not know are ignored
// without moving any watermark, so they are counted once the app is known.
type Ledger struct {
	o LedgerOptions

	mu      sync.Mutex
	ready   bool
	readyAt time.Time
	apps    map[string]*appLedger
	pods    map[string]*podView // by pod name
}

type bootKey struct{ pod, boot string }

type appLedger struct {
	billing Billing
	state   AppState
	marks   map[bootKey]*Watermark
	live    map[bootKey]*liveGauges
	version uint64
}

// liveGauges are the latest non-monotonic values of one boot for one app.
type liveGauges struct {
	sessions, tracks int64
	limit            int
	perSecond        []usage.SecondCount
	seen             time.Time
	final            bool
}

type podView struct {
	PodStatus
	egressTotal int64
	at          time.Time
	// final is the pod's latest final report with the sessions it still
	// had (PodStatus zeroes them), kept across the pod's later boots so the
	// end of a drain can be told after a pod of the same name started.
	final *PodStatus
}

// NewLedger returns an empty, not yet ready Ledger.
func NewLedger(o LedgerOptions) *Ledger {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.WatermarkTTL <= 0 {
		o.WatermarkTTL = DefaultWatermarkTTL
	}
	if o.FinalTTL <= 0 {
		o.FinalTTL = DefaultFinalTTL
	}
	if o.MaxWatermarks <= 0 {
		o.MaxWatermarks = DefaultMaxWatermarks
	}
	return &Ledger{o: o, apps: map[string]*appLedger{}, pods: map[string]*podView{}}
}

// Restore declares appID with the state last persisted for it. Call it for
// every existing app before SetReady; calling it later replaces the app's
// state (only safe if no report was applied since that state was taken).
func (l *Ledger) Restore(appID string, st AppState, b Billing) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := &appLedger{billing: b.withDefaults(), state: st, marks: map[bootKey]*Watermark{}, live: map[bootKey]*liveGauges{}}
	a.state.Watermarks = nil
	for i := range st.Watermarks {
		w := st.Watermarks[i]
		a.marks[bootKey{w.Pod, w.BootID}] = &w
	}
	if a.state.Month == "" {
		a.state.Month = MonthOf(l.o.Clock())
	}
	a.version = 1
	l.apps[appID] = a
}

// SetApp declares appID (a new app starts at zero) or updates its billing.
func (l *Ledger) SetApp(appID string, b Billing) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.apps[appID]; ok {
		if a.billing != b.withDefaults() {
			a.billing = b.withDefaults()
			a.version++
		}
		return
	}
	l.apps[appID] = &appLedger{
		billing: b.withDefaults(),
		state:   AppState{Month: MonthOf(l.o.Clock())},
		marks:   map[bootKey]*Watermark{},
		live:    map[bootKey]*liveGauges{},
		version: 1,
	}
}

// RemoveApp forgets a deleted app.
func (l *Ledger) RemoveApp(appID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.apps, appID)
}

// SetReady opens the ledger to reports once every app is restored.
func (l *Ledger) SetReady() {
	l.mu.Lock()
	if !l.ready {
		l.ready, l.readyAt = true, l.o.Clock()
	}
	l.mu.Unlock()
}

// Ready reports whether SetReady was called.
func (l *Ledger) Ready() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

func (b Billing) withDefaults() Billing {
	if b.FreeGB < 0 {
		b.FreeGB = 0
	}
	if b.PricePerGBMicroUSD < 0 {
		b.PricePerGBMicroUSD = 0
	}
	return b
}

// ApplyResult says what a report changed.
type ApplyResult struct {
	// Duplicate is true when the report was not newer than what was
	// applied for its boot (a retry or reordering); nothing was added.
	Duplicate bool
	// Added is the egress newly counted over all apps.
	Added int64
}

func validate(r *usage.Report) error {
	switch {
	case r.Pod == "":
		return fmt.Errorf("%w: no pod", ErrBadReport)
	case r.BootID == "":
		return fmt.Errorf("%w: no boot ID", ErrBadReport)
	case r.Seq == 0:
		return fmt.Errorf("%w: seq must start at 1", ErrBadReport)
	case len(r.Apps) > 10000:
		return fmt.Errorf("%w: %d apps", ErrBadReport, len(r.Apps))
	}
	return nil
}

// Apply adds a report. It is idempotent: applying the same report again,
// or an older one of the same boot, adds nothing.
func (l *Ledger) Apply(r usage.Report) (ApplyResult, error) {
	if err := validate(&r); err != nil {
		return ApplyResult{}, err
	}
	res, changed, err := l.apply(r)
	if l.o.OnChange != nil {
		for _, id := range changed {
			l.o.OnChange(id)
		}
	}
	return res, err
}

func (l *Ledger) apply(r usage.Report) (ApplyResult, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready {
		return ApplyResult{}, nil, ErrNotReady
	}
	var changed []string
	now := l.o.Clock()
	key := bootKey{r.Pod, r.BootID}
	res := ApplyResult{Duplicate: true}
	var podEgress int64
	var podSessions, podTracks, finalSessions int64
	for _, ar := range r.Apps {
		a, ok := l.apps[ar.App]
		if !ok {
			continue
		}
		l.rollover(a, now)
		c := toTotals(ar.Counters)
		podEgress += c.EgressBytes()
		if !r.Final {
			podSessions += ar.Sessions
			podTracks += ar.Tracks
		} else {
			finalSessions += ar.Sessions
		}
		added, dup := l.applyCounters(a, key, r, c, now)
		res.Added += added
		if !dup {
			res.Duplicate = false
			l.applyGauges(a, key, r, ar, now)
			changed = append(changed, ar.App)
		}
	}
	l.notePod(r, podEgress, podSessions, podTracks, finalSessions, now)
	return res, changed, nil
}

func toTotals(c usage.Counters) Totals {
	return Totals{
		EgressSFUBytes:     clampInt64(c.EgressSFUBytes),
		EgressTURNBytes:    clampInt64(c.EgressTURNBytes),
		IngressBytes:       clampInt64(c.IngressBytes),
		Requests:           clampInt64(c.RequestsTotal()),
		RateLimitedApp:     clampInt64(c.RateLimitedApp),
		RateLimitedSession: clampInt64(c.RateLimitedSession),
	}
}

func clampInt64(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}

// applyCounters adds the part of c not yet counted for the boot.
func (l *Ledger) applyCounters(a *appLedger, key bootKey, r usage.Report, c Totals, now time.Time) (int64, bool) {
	w, ok := a.marks[key]
	if !ok {
		// Place the boot on the ledger's clock by the pod's own uptime
		// (SentAt - BootTime, one clock, so skew between pod and manager
		// cancels out).
		bootAt := now.Add(-max(r.SentAt.Sub(r.BootTime), 0)).Unix()
		w = &Watermark{Pod: key.pod, BootID: key.boot, BootTime: bootAt}
		if a.state.EvictedHorizon != 0 && bootAt <= a.state.EvictedHorizon {
			// This boot may have been counted and then forgotten: start
			// from its current counters rather than risk counting twice.
			w.Counted = c
		}
		a.marks[key] = w
		l.boundMarks(a, now, key)
	} else if int64(r.Seq) <= w.Seq {
		return 0, true
	}
	d := Totals{
		EgressSFUBytes:     max(c.EgressSFUBytes-w.Counted.EgressSFUBytes, 0),
		EgressTURNBytes:    max(c.EgressTURNBytes-w.Counted.EgressTURNBytes, 0),
		IngressBytes:       max(c.IngressBytes-w.Counted.IngressBytes, 0),
		Requests:           max(c.Requests-w.Counted.Requests, 0),
		RateLimitedApp:     max(c.RateLimitedApp-w.Counted.RateLimitedApp, 0),
		RateLimitedSession: max(c.RateLimitedSession-w.Counted.RateLimitedSession, 0),
	}
	w.Counted = maxTotals(w.Counted, c)
	w.Seq = int64(r.Seq)
	w.LastSeen = now.Unix()
	w.Final = w.Final || r.Final
	t := &a.state.Totals
	t.EgressSFUBytes += d.EgressSFUBytes
	t.EgressTURNBytes += d.EgressTURNBytes
	t.IngressBytes += d.IngressBytes
	t.Requests += d.Requests
	t.RateLimitedApp += d.RateLimitedApp
	t.RateLimitedSession += d.RateLimitedSession
	a.version++
	return d.EgressBytes(), false
}

func maxTotals(x, y Totals) Totals {
	return Totals{
		EgressSFUBytes:     max(x.EgressSFUBytes, y.EgressSFUBytes),
		EgressTURNBytes:    max(x.EgressTURNBytes, y.EgressTURNBytes),
		IngressBytes:       max(x.IngressBytes, y.IngressBytes),
		Requests:           max(x.Requests, y.Requests),
		RateLimitedApp:     max(x.RateLimitedApp, y.RateLimitedApp),
		RateLimitedSession: max(x.RateLimitedSession, y.RateLimitedSession),
	}
}

func (l *Ledger) applyGauges(a *appLedger, key bootKey, r usage.Report, ar usage.AppReport, now time.Time) {
	// A new boot of the same pod replaces the old one's gauges.
	for k := range a.live {
		if k.pod == key.pod && k.boot != key.boot {
			delete(a.live, k)
		}
	}
	a.live[key] = &liveGauges{
		sessions:  ar.Sessions,
		tracks:    ar.Tracks,
		limit:     ar.Limit,
		perSecond: slices.Clone(ar.PerSecond),
		seen:      now,
		final:     r.Final,
	}
}

// boundMarks drops expired watermarks and enforces MaxWatermarks, keeping
// keep. It records the newest dropped LastSeen in EvictedHorizon.
func (l *Ledger) boundMarks(a *appLedger, now time.Time, keep bootKey) {
	evict := func(k bootKey, w *Watermark) {
		a.version++
		a.state.EvictedHorizon = max(a.state.EvictedHorizon, w.LastSeen, w.BootTime)
		delete(a.marks, k)
		delete(a.live, k)
	}
	for k, w := range a.marks {
		if k == keep || !l.ready {
			continue
		}
		ttl := l.o.WatermarkTTL
		if w.Final {
			ttl = l.o.FinalTTL
		}
		// Silence is counted from when this ledger became ready at the
		// earliest: pods could not report while no manager was ready, and
		// forgetting them for it would lose their usage of the outage.
		if now.Unix()-max(w.LastSeen, l.readyAt.Unix()) > int64(ttl/time.Second) {
			evict(k, w)
		}
	}
	for len(a.marks) > l.o.MaxWatermarks {
		var oldest bootKey
		var ow *Watermark
		for k, w := range a.marks {
			if k == keep {
				continue
			}
			if ow == nil || w.LastSeen < ow.LastSeen {
				oldest, ow = k, w
			}
		}
		evict(oldest, ow)
	}
}

// rollover closes the month when the UTC calendar month has changed.
// Watermarks carry over: bytes reported after the change count in the new
// month, whichever month they were sent in (at most one report interval
// lands in the new month).
func (l *Ledger) rollover(a *appLedger, now time.Time) {
	m := MonthOf(now)
	if a.state.Month == m {
		return
	}
	if a.state.Month != "" {
		a.state.Previous = &MonthTotals{Month: a.state.Month, Totals: a.state.Totals}
	}
	a.state.Month = m
	a.state.Totals = Totals{}
	a.version++
}

func (l *Ledger) notePod(r usage.Report, egress, sessions, tracks, finalSessions int64, now time.Time) {
	p, ok := l.pods[r.Pod]
	if ok && p.BootID == r.BootID && r.Seq <= uint64(p.Seq) {
		return
	}
	next := &podView{PodStatus: PodStatus{
		Pod: r.Pod, Pool: r.Pool, Kind: r.Kind, BootID: r.BootID, Seq: int64(r.Seq),
		ConfigVersion: r.ConfigVersion, Sessions: sessions, Tracks: tracks,
		LastReport: now, Stopped: r.Final, Draining: r.Draining, DrainDeadline: r.DrainDeadline,
	}, egressTotal: egress, at: now}
	if ok && p.BootID == r.BootID {
		if dt := now.Sub(p.at).Seconds(); dt > 0 && egress >= p.egressTotal {
			next.EgressBytesPerSecond = int64(float64(egress-p.egressTotal) / dt)
		}
	}
	if ok {
		next.final = p.final
	}
	if r.Final {
		f := next.PodStatus
		f.Sessions = finalSessions
		next.final = &f
	}
	l.pods[r.Pod] = next
	// Forget pods silent for the watermark TTL.
	for name, v := range l.pods {
		if now.Sub(v.at) > l.o.WatermarkTTL {
			delete(l.pods, name)
		}
	}
}

// PodStatus is one pod as its latest report shows it, for SFUPool status.
type PodStatus struct {
	Pod           string
	Pool          string
	Kind          string
	BootID        string
	Seq           int64
	ConfigVersion string
	Sessions      int64
	Tracks        int64
	// EgressBytesPerSecond over the last two reports of the same boot.
	EgressBytesPerSecond int64
	LastReport           time.Time
	// Stopped: the pod sent its final report.
	Stopped bool
	// Draining and DrainDeadline as the pod's latest report says.
	Draining      bool
	DrainDeadline *time.Time
	// Stale: no report for StaleAfter.
	Stale bool
}

// Pods returns the pods of pool ("namespace/name"), sorted by name.
func (l *Ledger) Pods(pool string) []PodStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.o.Clock()
	var out []PodStatus
	for _, p := range l.pods {
		if p.Pool != pool {
			continue
		}
		s := p.PodStatus
		s.Stale = now.Sub(p.at) > l.o.StaleAfter
		if s.Stale || s.Stopped {
			s.Sessions, s.Tracks, s.EgressBytesPerSecond = 0, 0, 0
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// LastFinal returns the latest final report pod of pool sent (a graceful
// stop), with the sessions it still had then, which Pods shows as 0. It is
// kept across the pod's later boots until the pod is forgotten, so a newer
// boot's reports do not hide how the previous one ended.
func (l *Ledger) LastFinal(pool, pod string) (PodStatus, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.pods[pod]
	if !ok || p.final == nil || p.final.Pool != pool {
		return PodStatus{}, false
	}
	return *p.final, true
}

// Usage is an app's usage as CallsApp status shows it.
type Usage struct {
	Month    string
	Totals   Totals
	Previous *MonthTotals
	// EgressBytes is SFU + TURN.
	EgressBytes   int64
	BillableBytes int64
	CostMicroUSD  int64
	QuotaExceeded bool
	// Live gauges over pods that reported within StaleAfter.
	Sessions int64
	Tracks   int64
	// Rate state.
	Limit         int
	PeakPerSecond int64
	// Version changes whenever the totals, billing or persisted state
	// change. Live gauges and the peak also move with time (a pod going
	// stale), so compare those values themselves before writing status.
	Version uint64
	// State is what to persist, consistent with Totals.
	State AppState
}

// Usage returns appID's usage now (rolling the month over if needed).
func (l *Ledger) Usage(appID string) (Usage, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.apps[appID]
	if !ok {
		return Usage{}, false
	}
	now := l.o.Clock()
	l.rollover(a, now)
	u := Usage{
		Month:       a.state.Month,
		Totals:      a.state.Totals,
		EgressBytes: a.state.Totals.EgressBytes(),
		State:       l.stateLocked(a),
	}
	if a.state.Previous != nil {
		p := *a.state.Previous
		u.Previous = &p
	}
	u.BillableBytes = a.billing.BillableBytes(u.EgressBytes)
	u.CostMicroUSD = a.billing.CostMicroUSD(u.BillableBytes)
	u.QuotaExceeded = a.billing.MonthlyCapGB > 0 && u.EgressBytes >= a.billing.MonthlyCapGB*bytesPerGB
	bySecond := map[int64]int64{}
	for _, g := range a.live {
		if !g.final && now.Sub(g.seen) <= l.o.StaleAfter {
			u.Sessions += g.sessions
			u.Tracks += g.tracks
		}
		u.Limit = max(u.Limit, g.limit)
		for _, s := range g.perSecond {
			if s.Unix > now.Unix()-60 && s.Unix <= now.Unix()+5 {
				bySecond[s.Unix] += int64(s.Count)
			}
		}
	}
	for _, n := range bySecond {
		u.PeakPerSecond = max(u.PeakPerSecond, n)
	}
	u.Version = a.version
	return u, true
}

// State returns the AppState to persist for appID.
func (l *Ledger) State(appID string) (AppState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.apps[appID]
	if !ok {
		return AppState{}, false
	}
	l.rollover(a, l.o.Clock())
	return l.stateLocked(a), true
}

func (l *Ledger) stateLocked(a *appLedger) AppState {
	l.boundMarks(a, l.o.Clock(), bootKey{})
	st := a.state
	if st.Previous != nil {
		p := *st.Previous
		st.Previous = &p
	}
	st.Watermarks = make([]Watermark, 0, len(a.marks))
	for _, w := range a.marks {
		st.Watermarks = append(st.Watermarks, *w)
	}
	sort.Slice(st.Watermarks, func(i, j int) bool {
		x, y := st.Watermarks[i], st.Watermarks[j]
		if x.Pod != y.Pod {
			return x.Pod < y.Pod
		}
		return x.BootID < y.BootID
	})
	return st
}
