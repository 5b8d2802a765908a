package usage

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Source is where egress bytes left the platform: the `source` label.
type Source string

const (
	// SourceSFU is media, RTCP and DataChannel bytes an SFU pod sends.
	SourceSFU Source = "sfu"
	// SourceTURN is bytes a TURN pod sends to its TURN client, including
	// TURN framing, except on legs whose peer is one of our SFU pods.
	SourceTURN Source = "turn"
)

// UnknownApp is the app label of requests for app IDs the pod does not
// serve, so a scan of random IDs cannot create label values.
const UnknownApp = "_unknown"

// Clock returns the current time; tests inject a fake one.
type Clock func() time.Time

// trackedCodes are the HTTP statuses counted individually; any other code
// is counted as "other". Fixed so the code label stays bounded.
var trackedCodes = [numTracked]int{200, 201, 204, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 413, 415, 425, 429, 500, 502, 503, 504}

const (
	numTracked = 21
	otherCode  = 0
)

var codeIndex = func() (idx [600]uint8) {
	for i, c := range trackedCodes {
		idx[c] = uint8(i + 1)
	}
	return idx
}()

var codeLabels = func() []string {
	l := make([]string, len(trackedCodes)+1)
	l[otherCode] = "other"
	for i, c := range trackedCodes {
		l[i+1] = strconv.Itoa(c)
	}
	return l
}()

// historySeconds is how far back the per-second request history goes
// (DESIGN: peak requests per second over the last minute).
const historySeconds = 60

type secondSlot struct {
	sec atomic.Int64
	n   atomic.Uint64
}

// App holds one app's counters in this process. Handles are created by a
// Meter and live as long as it; callers (a session, a TURN allocation)
// keep the pointer and add to it without further lookups.
type App struct {
	id  string
	now Clock

	egressSFU      atomic.Uint64
	egressTURN     atomic.Uint64
	ingress        atomic.Uint64
	requests       [numTracked + 1]atomic.Uint64
	limitedApp     atomic.Uint64
	limitedSession atomic.Uint64
	sessions       atomic.Int64
	tracks         atomic.Int64
	limit          atomic.Int64
	history        [historySeconds]secondSlot
}

// ID is the app ID (or UnknownApp).
func (a *App) ID() string { return a.id }

// AddEgress counts n bytes sent to a client from src.
func (a *App) AddEgress(src Source, n int) {
	if src == SourceTURN {
		a.egressTURN.Add(uint64(n))
		return
	}
	a.egressSFU.Add(uint64(n))
}

// AddEgressSFU counts n bytes an SFU pod sent to a client (SRTP, SRTCP,
// DTLS/SCTP); one atomic add.
func (a *App) AddEgressSFU(n int) { a.egressSFU.Add(uint64(n)) }

// AddEgressTURN counts n bytes a TURN pod sent to its client.
func (a *App) AddEgressTURN(n int) { a.egressTURN.Add(uint64(n)) }

// AddIngress counts n bytes received from a client.
func (a *App) AddIngress(n int) { a.ingress.Add(uint64(n)) }

// CountRequest counts one API request answered with code, including
// throttled ones (429), and feeds the per-second history.
func (a *App) CountRequest(code int) {
	i := otherCode
	if code >= 0 && code < len(codeIndex) {
		i = int(codeIndex[code])
	}
	a.requests[i].Add(1)
	a.tick()
}

func (a *App) tick() {
	sec := a.now().Unix()
	s := &a.history[uint64(sec)%historySeconds]
	if old := s.sec.Load(); old != sec {
		// First request of a new second in this slot: reset it. A racing
		// increment between the swap and the store may be lost; this only
		// feeds the displayed peak, never billing.
		if s.sec.CompareAndSwap(old, sec) {
			s.n.Store(0)
		}
	}
	s.n.Add(1)
}

// CountLimited counts one request refused by the limit of scope ("app" or
// "session"). The caller also counts the request itself with CountRequest.
func (a *App) CountLimited(scope string) {
	if scope == "session" {
		a.limitedSession.Add(1)
		return
	}
	a.limitedApp.Add(1)
}

// AddSessions changes the live session gauge by delta (+1 on create, -1 on
// close).
func (a *App) AddSessions(delta int) { a.sessions.Add(int64(delta)) }

// AddTracks changes the live track gauge by delta.
func (a *App) AddTracks(delta int) { a.tracks.Add(int64(delta)) }

// SetRateLimit records the app-wide authenticated limit in force, for the
// reported rate state.
func (a *App) SetRateLimit(perSecond int) { a.limit.Store(int64(perSecond)) }

// Counters are an app's monotonic totals since the process started.
type Counters struct {
	EgressSFUBytes  uint64 `json:"egressSFUBytes"`
	EgressTURNBytes uint64 `json:"egressTURNBytes"`
	IngressBytes    uint64 `json:"ingressBytes"`
	// Requests by HTTP status code ("200", "429", "other").
	Requests           map[string]uint64 `json:"requests,omitempty"`
	RateLimitedApp     uint64            `json:"rateLimitedApp"`
	RateLimitedSession uint64            `json:"rateLimitedSession"`
}

// RequestsTotal sums Requests over all codes.
func (c Counters) RequestsTotal() uint64 {
	var n uint64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// SecondCount is the number of requests in one wall-clock second.
type SecondCount struct {
	Unix  int64  `json:"t"`
	Count uint64 `json:"n"`
}

// AppReport is one app's state in a Report.
type AppReport struct {
	App      string   `json:"app"`
	Counters Counters `json:"counters"`
	Sessions int64    `json:"sessions"`
	Tracks   int64    `json:"tracks"`
	// Limit is the app-wide authenticated limit the pod enforces (before
	// the per-replica split); 0 when unknown.
	Limit int `json:"limit,omitempty"`
	// PerSecond are the non-zero request counts of the last minute, oldest
	// first, so the hub can add replicas second by second for the peak.
	PerSecond []SecondCount `json:"perSecond,omitempty"`
}

// PeakPerSecond is the highest PerSecond count.
func (r AppReport) PeakPerSecond() uint64 {
	var p uint64
	for _, s := range r.PerSecond {
		p = max(p, s.Count)
	}
	return p
}

func (a *App) snapshot() AppReport {
	r := AppReport{
		App: a.id,
		Counters: Counters{
			EgressSFUBytes:     a.egressSFU.Load(),
			EgressTURNBytes:    a.egressTURN.Load(),
			IngressBytes:       a.ingress.Load(),
			RateLimitedApp:     a.limitedApp.Load(),
			RateLimitedSession: a.limitedSession.Load(),
		},
		Sessions: max(a.sessions.Load(), 0),
		Tracks:   max(a.tracks.Load(), 0),
		Limit:    int(a.limit.Load()),
	}
	for i := range a.requests {
		if v := a.requests[i].Load(); v > 0 {
			if r.Counters.Requests == nil {
				r.Counters.Requests = map[string]uint64{}
			}
			r.Counters.Requests[codeLabels[i]] = v
		}
	}
	now := a.now().Unix()
	for i := range a.history {
		s := &a.history[i]
		sec := s.sec.Load()
		if sec > now-historySeconds && sec <= now {
			if n := s.n.Load(); n > 0 {
				r.PerSecond = append(r.PerSecond, SecondCount{Unix: sec, Count: n})
			}
		}
	}
	slices.SortFunc(r.PerSecond, func(x, y SecondCount) int { return int(x.Unix - y.Unix) })
	return r
}

// Meter is the set of per-app counters of one process, identified by a
// boot ID that is new on every start (counters restart at zero with it).
// Safe for concurrent use. It holds no goroutine.
type Meter struct {
	now    Clock
	bootID string
	boot   time.Time

	mu      sync.Mutex // serialises writers of apps
	apps    atomic.Pointer[map[string]*App]
	known   atomic.Pointer[map[string]bool]
	unknown *App
	live    atomic.Pointer[func() map[string]Live]
}

// Live are an app's current sessions and tracks.
type Live struct{ Sessions, Tracks int64 }

// SetLiveSource makes snapshots and metrics take live sessions and tracks
// from f (for example the session manager's own counts) instead of the
// AddSessions/AddTracks gauges. f is called once per snapshot or scrape.
func (m *Meter) SetLiveSource(f func() map[string]Live) { m.live.Store(&f) }

// NewMeter returns a Meter with a fresh random boot ID. clock may be nil.
func NewMeter(clock Clock) *Meter {
	if clock == nil {
		clock = time.Now
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	m := &Meter{now: clock, bootID: hex.EncodeToString(b[:]), boot: clock()}
	m.unknown = &App{id: UnknownApp, now: clock}
	apps := map[string]*App{}
	known := map[string]bool{}
	m.apps.Store(&apps)
	m.known.Store(&known)
	return m
}

// BootID identifies this process's counters.
func (m *Meter) BootID() string { return m.bootID }

// BootTime is when the Meter was created.
func (m *Meter) BootTime() time.Time { return m.boot }

// SetApps declares the app IDs this pod serves (from its config). Counters
// of apps no longer listed are kept (and still reported) so no counted byte
// is dropped; App for an undeclared ID returns the UnknownApp bucket.
func (m *Meter) SetApps(ids []string) {
	k := make(map[string]bool, len(ids))
	for _, id := range ids {
		k[id] = true
	}
	m.known.Store(&k)
	for _, id := range ids {
		m.App(id)
	}
}

// App returns the counters of appID, creating them if the app is declared.
// For a known app it is one atomic load and a map read, no lock.
func (m *Meter) App(appID string) *App {
	if a, ok := (*m.apps.Load())[appID]; ok {
		return a
	}
	if !(*m.known.Load())[appID] {
		return m.unknown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.apps.Load()
	if a, ok := old[appID]; ok {
		return a
	}
	next := make(map[string]*App, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	a := &App{id: appID, now: m.now}
	next[appID] = a
	m.apps.Store(&next)
	return a
}

// Apps returns every app handle, the UnknownApp bucket last if it was used.
func (m *Meter) Apps() []*App {
	cur := *m.apps.Load()
	out := make([]*App, 0, len(cur)+1)
	for _, a := range cur {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y *App) int {
		if x.id < y.id {
			return -1
		}
		if x.id > y.id {
			return 1
		}
		return 0
	})
	if m.unknown.used() {
		out = append(out, m.unknown)
	}
	return out
}

func (a *App) used() bool {
	if a.egressSFU.Load() > 0 || a.egressTURN.Load() > 0 || a.ingress.Load() > 0 ||
		a.limitedApp.Load() > 0 || a.limitedSession.Load() > 0 {
		return true
	}
	for i := range a.requests {
		if a.requests[i].Load() > 0 {
			return true
		}
	}
	return false
}

// Snapshot returns the current state of every app, for a Report.
func (m *Meter) Snapshot() []AppReport {
	apps := m.Apps()
	live := m.liveNow()
	out := make([]AppReport, 0, len(apps))
	for _, a := range apps {
		r := a.snapshot()
		if live != nil {
			l := live[a.id]
			r.Sessions, r.Tracks = l.Sessions, l.Tracks
		}
		out = append(out, r)
	}
	return out
}

// liveNow returns the live source's counts, or nil without a source.
func (m *Meter) liveNow() map[string]Live {
	f := m.live.Load()
	if f == nil || *f == nil {
		return nil
	}
	if l := (*f)(); l != nil {
		return l
	}
	return map[string]Live{}
}

// TURNMeter adapts a Meter to the TURN server's per-app meter hooks
// (AddEgress/AddIngress with uint64 byte counts). The TURN server must not
// pass bytes of allocations whose peer is one of the pool's SFU media
// endpoints: the SFU counts those (docs/metering.md, "counted once").
type TURNMeter struct{ M *Meter }

// AddEgress counts bytes sent to a TURN client as source "turn".
func (t TURNMeter) AddEgress(appID string, n uint64) { t.M.App(appID).egressTURN.Add(n) }

// AddIngress counts bytes received from a TURN client.
func (t TURNMeter) AddIngress(appID string, n uint64) { t.M.App(appID).ingress.Add(n) }
