package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent readers.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

const appA = "0123456789abcdef0123456789abcdef"
const appB = "fedcba9876543210fedcba9876543210"

var (
	ip1 = netip.MustParseAddr("203.0.113.7")
	ip2 = netip.MustParseAddr("198.51.100.9")
	t0  = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
)

func countAllowed(l *Limiter, app string, ip netip.Addr, auth bool, n int) int {
	ok := 0
	for range n {
		if l.Allow(app, ip, auth).Allowed {
			ok++
		}
	}
	return ok
}

func TestFixedWindowRefusesOverLimitUntilNextWindow(t *testing.T) {
	clk := newFakeClock(t0.Add(100 * time.Millisecond))
	l := New(Options{Clock: clk.Now})
	l.SetApp(appA, Limits{Authenticated: 5})
	for i := range 5 {
		d := l.Allow(appA, ip1, true)
		if !d.Allowed || d.Remaining != 4-i || d.Limit != 5 {
			t.Fatalf("request %d: got %+v, want allowed with %d remaining", i+1, d, 4-i)
		}
	}
	d := l.Allow(appA, ip1, true)
	if d.Allowed || d.RetryAfter != 1 {
		t.Fatalf("6th request: got %+v, want refused with Retry-After 1", d)
	}
	clk.Set(t0.Add(999 * time.Millisecond))
	if l.Allow(appA, ip1, true).Allowed {
		t.Fatal("request at the end of the same window was admitted")
	}
	clk.Set(t0.Add(time.Second))
	if got := countAllowed(l, appA, ip1, true, 10); got != 5 {
		t.Fatalf("next window admitted %d, want 5", got)
	}
}

// RL-01: the documented fixed window admits up to 2L around a boundary.
func TestBoundaryBurstAdmitsTwiceTheLimitAcrossTwoWindows(t *testing.T) {
	clk := newFakeClock(t0.Add(time.Second - time.Millisecond))
	l := New(Options{Clock: clk.Now})
	l.SetApp(appA, Limits{Authenticated: 100})
	before := countAllowed(l, appA, ip1, true, 150)
	clk.Advance(2 * time.Millisecond)
	after := countAllowed(l, appA, ip1, true, 150)
	if before != 100 || after != 100 {
		t.Fatalf("admitted %d before and %d after the boundary, want 100 and 100 (2L within 2 ms, as documented)", before, after)
	}
}

func TestRetryAfterIsWholeSecondsToWindowEndAtLeastOne(t *testing.T) {
	clk := newFakeClock(t0)
	if got := retryAfter(clk.Now()); got != 1 {
		t.Fatalf("at window start Retry-After = %d, want 1", got)
	}
	if got := retryAfter(t0.Add(999999999 * time.Nanosecond)); got != 1 {
		t.Fatalf("1 ns before window end Retry-After = %d, want 1", got)
	}
	before1970 := time.Unix(-5, 500_000_000)
	if w := windowOf(before1970); w != -5 {
		t.Fatalf("window of -4.5 s = %d, want -5", w)
	}
}

func TestDefaultLimitsSeparateAuthenticatedFromUnauthenticated(t *testing.T) {
	clk := newFakeClock(t0)
	l := New(Options{Clock: clk.Now})
	if got := countAllowed(l, appA, ip1, false, 50); got != 10 {
		t.Fatalf("unauthenticated admitted %d, want the default 10", got)
	}
	// A flood of bad credentials does not use up the real client's quota.
	if got := countAllowed(l, appA, ip1, true, 12000); got != 10000 {
		t.Fatalf("authenticated admitted %d, want the default 10000", got)
	}
}

func TestAppsAndClientIPsHaveIndependentCounters(t *testing.T) {
	clk := newFakeClock(t0)
	l := New(Options{Clock: clk.Now})
	l.SetApps(map[string]Limits{appA: {Authenticated: 3}, appB: {Authenticated: 3}})
	if got := countAllowed(l, appA, ip1, true, 10); got != 3 {
		t.Fatalf("app A ip1 admitted %d, want 3", got)
	}
	if got := countAllowed(l, appA, ip2, true, 10); got != 3 {
		t.Fatalf("app A ip2 admitted %d after ip1 was throttled, want 3", got)
	}
	if got := countAllowed(l, appB, ip1, true, 10); got != 3 {
		t.Fatalf("app B ip1 admitted %d after app A was throttled, want 3", got)
	}
	// IPv4 and its IPv4-mapped IPv6 form are one client.
	mapped := netip.AddrFrom16(ip1.As16())
	if l.Allow(appA, mapped, true).Allowed {
		t.Fatal("IPv4-mapped form of a throttled client was admitted")
	}
}

func TestAppLimitChangesApplyToTheNextRequest(t *testing.T) {
	clk := newFakeClock(t0)
	l := New(Options{Clock: clk.Now})
	l.SetApp(appA, Limits{Authenticated: 2})
	if got := countAllowed(l, appA, ip1, true, 3); got != 2 {
		t.Fatalf("admitted %d, want 2", got)
	}
	// Refused requests count too (3 so far), so raising the limit to 4 in
	// the same window admits exactly one more.
	l.SetApp(appA, Limits{Authenticated: 4})
	if got := countAllowed(l, appA, ip1, true, 5); got != 1 {
		t.Fatalf("after raising to 4 in the same window admitted %d more, want 1", got)
	}
	clk.Advance(time.Second)
	if got := countAllowed(l, appA, ip1, true, 9); got != 4 {
		t.Fatalf("next window admitted %d, want the new limit 4", got)
	}
	if lim, ok := l.AppLimits(appA); !ok || lim.Authenticated != 4 || lim.Unauthenticated != 10 {
		t.Fatalf("AppLimits = %+v %v, want authenticated 4 and default unauthenticated 10", lim, ok)
	}
}

// RL-03: concurrent requests on a fresh key are counted exactly.
func TestConcurrentRequestsAreCountedExactly(t *testing.T) {
	clk := newFakeClock(t0)
	l := New(Options{Clock: clk.Now})
	l.SetApp(appA, Limits{Authenticated: 500})
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for range 20 {
		wg.Go(func() {
			for range 50 {
				if l.Allow(appA, ip1, true).Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 500 {
		t.Fatalf("1000 concurrent requests admitted %d, want exactly 500", got)
	}
}

// API-08: a flood of invented client IPs cannot grow memory, and the limit
// still holds for keys that land on the overflow counters.
func TestFloodOfDistinctIPsKeepsMemoryBoundedAndLimitsEnforced(t *testing.T) {
	clk := newFakeClock(t0)
	const maxKeys = 1024
	l := New(Options{Clock: clk.Now, MaxKeys: maxKeys})
	l.SetApp(appA, Limits{Authenticated: 2, Unauthenticated: 2})
	for i := range 100_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(appA, ip, false)
	}
	if k := l.tab.keys(); k > maxKeys {
		t.Fatalf("table holds %d keys after a 100k-IP flood, bound is %d", k, maxKeys)
	}
	// A new client in the flooded window lands on an overflow counter: it
	// may be throttled early but never admitted beyond its limit.
	late := netip.MustParseAddr("192.0.2.1")
	if got := countAllowed(l, appA, late, false, 10); got > 2 {
		t.Fatalf("client on an overflow counter admitted %d, limit 2", got)
	}
	// The next window starts clean.
	clk.Advance(time.Second)
	if got := countAllowed(l, appA, late, false, 10); got != 2 {
		t.Fatalf("next window admitted %d, want 2", got)
	}
	if k := l.tab.keys(); k > maxKeys {
		t.Fatalf("table holds %d keys, bound %d", k, maxKeys)
	}
}

func TestPerReplicaShareRoundsUp(t *testing.T) {
	for _, tc := range []struct{ limit, replicas, want int }{
		{10000, 1, 10000}, {10000, 3, 3334}, {200, 3, 67}, {10, 3, 4}, {2, 3, 1}, {1, 5, 1}, {9, 0, 9}, {0, 3, 0},
	} {
		if got := PerReplica(tc.limit, tc.replicas); got != tc.want {
			t.Errorf("PerReplica(%d, %d) = %d, want %d", tc.limit, tc.replicas, got, tc.want)
		}
	}
}

// RL-02: three replicas each counting locally, a client spreading its
// requests round-robin over them. With the per-replica share the client is
// admitted at least its limit and at most limit + replicas - 1 per window
// (the stated margin); without the share it would get 3×.
func TestThreeReplicasRoundRobinClientStaysWithinStatedMargin(t *testing.T) {
	const replicas = 3
	for _, limit := range []int{10, 200, 1000, 10000} {
		clk := newFakeClock(t0)
		nodes := make([]*Limiter, replicas)
		for i := range nodes {
			nodes[i] = New(Options{Clock: clk.Now})
			nodes[i].SetApp(appA, Limits{Authenticated: limit})
			nodes[i].SetReplicas(replicas)
		}
		for window := range 3 {
			admitted := 0
			for i := range 3*limit + 30 {
				if nodes[i%replicas].Allow(appA, ip1, true).Allowed {
					admitted++
				}
			}
			if admitted < limit || admitted > limit+replicas-1 {
				t.Fatalf("limit %d window %d: round-robin client admitted %d, want within [%d, %d]",
					limit, window, admitted, limit, limit+replicas-1)
			}
			clk.Advance(time.Second)
		}
	}
	// Control: the same setup without the split admits 3× the limit, which
	// is the failure the split prevents.
	clk := newFakeClock(t0)
	admitted := 0
	nodes := []*Limiter{New(Options{Clock: clk.Now}), New(Options{Clock: clk.Now}), New(Options{Clock: clk.Now})}
	for _, n := range nodes {
		n.SetApp(appA, Limits{Authenticated: 100})
	}
	for i := range 600 {
		if nodes[i%3].Allow(appA, ip1, true).Allowed {
			admitted++
		}
	}
	if admitted != 300 {
		t.Fatalf("unsplit replicas admitted %d, want 300 (3x the limit)", admitted)
	}
}

func TestSessionLimiterAdmitsFiftyCallsPerSecondPerSession(t *testing.T) {
	clk := newFakeClock(t0)
	s := NewSessionLimiter(0, clk.Now)
	n := 0
	for range 80 {
		if s.Allow("session-1").Allowed {
			n++
		}
	}
	if n != 50 {
		t.Fatalf("session admitted %d calls, want 50", n)
	}
	if !s.Allow("session-2").Allowed {
		t.Fatal("another session was throttled by session-1's calls")
	}
	d := s.Allow("session-1")
	if d.Allowed || d.RetryAfter != 1 {
		t.Fatalf("51st call: %+v, want refused with Retry-After 1", d)
	}
	clk.Advance(time.Second)
	if !s.Allow("session-1").Allowed {
		t.Fatal("session still throttled in the next window")
	}
	n = 0
	for range 10 {
		if s.AllowWithLimit("session-3", 4).Allowed {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("app-specific session limit 4 admitted %d", n)
	}
}

// RL-04: the per-session limit and the per-app limit are independent, in
// both orders of which one trips first.
func TestSessionAndAppLimitsAreIndependent(t *testing.T) {
	clk := newFakeClock(t0)
	app := New(Options{Clock: clk.Now})
	app.SetApp(appA, Limits{Authenticated: 60})
	sess := NewSessionLimiter(50, clk.Now)
	// Session trips first: 50 pass both, the next 10 pass the app limit only.
	bothOK, sessRefused := 0, 0
	for range 60 {
		a := app.Allow(appA, ip1, true)
		s := sess.Allow("s1")
		if a.Allowed && s.Allowed {
			bothOK++
		}
		if a.Allowed && !s.Allowed {
			sessRefused++
		}
	}
	if bothOK != 50 || sessRefused != 10 {
		t.Fatalf("session-first: %d passed both, %d refused by session; want 50 and 10", bothOK, sessRefused)
	}
	// App trips first (next window, app limit 20): the session still has
	// its own budget.
	clk.Advance(time.Second)
	app.SetApp(appA, Limits{Authenticated: 20})
	appRefused := 0
	for range 30 {
		a := app.Allow(appA, ip1, true)
		s := sess.Allow("s1")
		if !a.Allowed && s.Allowed {
			appRefused++
		}
	}
	if appRefused != 10 {
		t.Fatalf("app-first: %d refused by the app limit with session budget left, want 10", appRefused)
	}
}

// BenchmarkAllow measures one request against the per-app limiter with the
// real clock; the target is ≤ 200 ns and 0 allocs/op.
func BenchmarkAllow(b *testing.B) {
	l := New(Options{})
	l.SetApp(appA, Limits{Authenticated: 1 << 30})
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(appA, ip1, true)
	}
}

// BenchmarkAllowManyClientsParallel spreads requests over 4096 client IPs
// and 8 apps from all cores.
func BenchmarkAllowManyClientsParallel(b *testing.B) {
	l := New(Options{})
	apps := []string{appA, appB, "00000000000000000000000000000001", "00000000000000000000000000000002",
		"00000000000000000000000000000003", "00000000000000000000000000000004",
		"00000000000000000000000000000005", "00000000000000000000000000000006"}
	ips := make([]netip.Addr, 4096)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(apps[i&7], ips[i&4095], true)
			i++
		}
	})
}

func BenchmarkSessionAllow(b *testing.B) {
	s := NewSessionLimiter(1<<30, nil)
	b.ReportAllocs()
	for b.Loop() {
		s.Allow("7d9b1a2c3e4f5a6b7d9b1a2c3e4f5a6b")
	}
}
