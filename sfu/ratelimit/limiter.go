package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Window is the fixed window length of every limit in this package.
const Window = time.Second

// Clock returns the current time; tests inject a fake one.
type Clock func() time.Time

// Limits are the per-second quotas of one app for one client IP.
type Limits struct {
	// Authenticated applies to requests with valid credentials for the app.
	Authenticated int
	// Unauthenticated applies to requests with no or invalid credentials.
	Unauthenticated int
}

// DefaultLimits are the DESIGN 1.2 defaults.
var DefaultLimits = Limits{
	Authenticated:   config.DefaultAuthenticatedPerSecond,
	Unauthenticated: config.DefaultUnauthenticatedPerSecond,
}

// LimitsFromConfig reads an app's limits from the pod configuration.
func LimitsFromConfig(a config.App) Limits {
	return Limits{
		Authenticated:   a.RateLimit.AuthenticatedPerSecond,
		Unauthenticated: a.RateLimit.UnauthenticatedPerSecond,
	}.withDefaults()
}

func (l Limits) withDefaults() Limits {
	if l.Authenticated <= 0 {
		l.Authenticated = DefaultLimits.Authenticated
	}
	if l.Unauthenticated <= 0 {
		l.Unauthenticated = DefaultLimits.Unauthenticated
	}
	return l
}

// Decision is the outcome of one request against a limit.
type Decision struct {
	Allowed bool
	// Limit is the quota enforced by this replica for this window.
	Limit int
	// Remaining is how many more requests this window admits.
	Remaining int
	// RetryAfter is the whole seconds until the window ends, at least 1;
	// the value of the Retry-After header on a 429.
	RetryAfter int
}

// PerReplica is the share of an app-wide limit each of replicas API pods
// enforces when every pod counts locally: ceil(limit / replicas), at least
// 1. A client spread evenly over all replicas is admitted at most
// limit + replicas - 1 requests per window (docs/ratelimits.md).
func PerReplica(limit, replicas int) int {
	if replicas <= 1 {
		return limit
	}
	if limit <= 0 {
		return 0
	}
	share := (limit + replicas - 1) / replicas
	if share < 1 {
		share = 1
	}
	return share
}

type settings struct {
	apps     map[string]Limits
	defaults Limits
	replicas int
}

// Limiter is the per-app, per-client-IP fixed-window limiter. It is safe
// for concurrent use; limits and the replica count can change while it
// serves (the new values apply from the next request). It holds no
// goroutine and needs no Close.
type Limiter struct {
	now  Clock
	seed maphash.Seed
	tab  *table
	cfg  atomic.Pointer[settings]
	mu   sync.Mutex // serialises writers of cfg
}

// Options configure a Limiter; zero values pick the defaults.
type Options struct {
	// Clock defaults to time.Now.
	Clock Clock
	// Defaults apply to apps without their own limits (and to unknown app
	// IDs, whose requests are unauthenticated by definition).
	Defaults Limits
	// MaxKeys bounds the distinct (app, IP, class) keys tracked per window;
	// DefaultMaxKeys when zero.
	MaxKeys int
}

// New returns a Limiter.
func New(o Options) *Limiter {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	l := &Limiter{now: o.Clock, seed: maphash.MakeSeed(), tab: newTable(o.MaxKeys)}
	l.cfg.Store(&settings{apps: map[string]Limits{}, defaults: o.Defaults.withDefaults(), replicas: 1})
	return l
}

// SetApps replaces the limits of every app at once (a new pod config).
func (l *Limiter) SetApps(apps map[string]Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cfg.Load()
	m := make(map[string]Limits, len(apps))
	for id, lim := range apps {
		m[id] = lim.withDefaults()
	}
	l.cfg.Store(&settings{apps: m, defaults: old.defaults, replicas: old.replicas})
}

// SetApp changes one app's limits live.
func (l *Limiter) SetApp(appID string, lim Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cfg.Load()
	m := make(map[string]Limits, len(old.apps)+1)
	for id, v := range old.apps {
		m[id] = v
	}
	m[appID] = lim.withDefaults()
	l.cfg.Store(&settings{apps: m, defaults: old.defaults, replicas: old.replicas})
}

// SetReplicas sets how many API replicas share each app limit; values
// below 1 mean 1 (the pod enforces the whole limit).
func (l *Limiter) SetReplicas(n int) {
	if n < 1 {
		n = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cfg.Load()
	l.cfg.Store(&settings{apps: old.apps, defaults: old.defaults, replicas: n})
}

// AppLimits returns the app-wide limits configured for appID (before the
// per-replica split) and whether the app has its own entry.
func (l *Limiter) AppLimits(appID string) (Limits, bool) {
	s := l.cfg.Load()
	lim, ok := s.apps[appID]
	if !ok {
		return s.defaults, false
	}
	return lim, true
}

// Allow counts one request of appID from ip and says whether it is within
// the limit. authenticated is true only when the request carried valid
// credentials for appID. Zero allocations.
func (l *Limiter) Allow(appID string, ip netip.Addr, authenticated bool) Decision {
	now := l.now()
	s := l.cfg.Load()
	lim, ok := s.apps[appID]
	if !ok {
		lim = s.defaults
	}
	limit := lim.Unauthenticated
	if authenticated {
		limit = lim.Authenticated
	}
	limit = PerReplica(limit, s.replicas)
	key := l.key(appID, ip, authenticated)
	return decide(l.tab.incr(key, windowOf(now)), limit, now)
}

func (l *Limiter) key(appID string, ip netip.Addr, authenticated bool) uint64 {
	h := maphash.String(l.seed, appID)
	b := ip.Unmap().As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
		uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	h = mix(h ^ mix(hi+0x9e3779b97f4a7c15) ^ bits.RotateLeft64(mix(lo), 17))
	if authenticated {
		h = mix(h ^ 0xa0761d6478bd642f)
	}
	return h
}

// mix is the splitmix64 finaliser: a cheap bijective scramble.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func windowOf(t time.Time) int64 {
	ns := t.UnixNano()
	w := ns / int64(Window)
	if ns < 0 && ns%int64(Window) != 0 {
		w--
	}
	return w
}

func decide(count uint32, limit int, now time.Time) Decision {
	d := Decision{Limit: limit, RetryAfter: retryAfter(now)}
	if int64(count) <= int64(limit) {
		d.Allowed = true
		d.Remaining = limit - int(count)
	}
	return d
}

// retryAfter is the whole seconds until the current window ends, ≥ 1.
func retryAfter(now time.Time) int {
	end := (windowOf(now) + 1) * int64(Window)
	left := end - now.UnixNano()
	secs := int((left + int64(time.Second) - 1) / int64(time.Second))
	if secs < 1 {
		secs = 1
	}
	return secs
}

// SessionLimiter is the per-session limit of DESIGN 1.1 (50 API calls per
// second per session) on the same fixed window. The caller decides which
// calls count: cleanup calls (tracks/close, datachannels/close) are exempt
// and must not be passed in. Safe for concurrent use; bounded like Limiter.
type SessionLimiter struct {
	now   Clock
	seed  maphash.Seed
	tab   *table
	limit atomic.Int64
}

// NewSessionLimiter returns a limiter admitting perSecond calls per session
// per window (config.DefaultSessionCallsPerSecond when ≤ 0).
func NewSessionLimiter(perSecond int, clock Clock) *SessionLimiter {
	if clock == nil {
		clock = time.Now
	}
	s := &SessionLimiter{now: clock, seed: maphash.MakeSeed(), tab: newTable(0)}
	s.SetLimit(perSecond)
	return s
}

// SetLimit changes the per-session limit live.
func (s *SessionLimiter) SetLimit(perSecond int) {
	if perSecond <= 0 {
		perSecond = config.DefaultSessionCallsPerSecond
	}
	s.limit.Store(int64(perSecond))
}

// Allow counts one call on sessionID. Zero allocations.
func (s *SessionLimiter) Allow(sessionID string) Decision {
	now := s.now()
	key := mix(maphash.String(s.seed, sessionID))
	return decide(s.tab.incr(key, windowOf(now)), int(s.limit.Load()), now)
}

// AllowWithLimit is Allow with the app's own per-session limit
// (config.App.Sessions.CallsPerSecond) instead of the limiter's default.
func (s *SessionLimiter) AllowWithLimit(sessionID string, perSecond int) Decision {
	if perSecond <= 0 {
		perSecond = int(s.limit.Load())
	}
	now := s.now()
	key := mix(maphash.String(s.seed, sessionID))
	return decide(s.tab.incr(key, windowOf(now)), perSecond, now)
}
