package usage

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	appA = "0123456789abcdef0123456789abcdef"
	appB = "fedcba9876543210fedcba9876543210"
)

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var t0 = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

func TestConcurrentAddsAreCountedExactly(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	a := m.App(appA)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 10000 {
				a.AddEgressSFU(1200)
				a.AddEgress(SourceTURN, 100+g)
				a.AddIngress(7)
			}
		})
	}
	wg.Wait()
	s := m.Snapshot()
	if len(s) != 1 {
		t.Fatalf("snapshot has %d apps, want 1", len(s))
	}
	c := s[0].Counters
	wantTURN := uint64(0)
	for g := range 8 {
		wantTURN += uint64(10000 * (100 + g))
	}
	if c.EgressSFUBytes != 8*10000*1200 || c.EgressTURNBytes != wantTURN || c.IngressBytes != 8*10000*7 {
		t.Fatalf("counters %+v, want sfu %d turn %d ingress %d", c, 8*10000*1200, wantTURN, 8*10000*7)
	}
}

func TestTURNMeterCountsTURNSource(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	tm := TURNMeter{M: m}
	tm.AddEgress(appA, 1500)
	tm.AddIngress(appA, 40)
	tm.AddEgress("not-served", 7)
	c := m.Snapshot()
	if len(c) != 2 || c[0].Counters.EgressTURNBytes != 1500 || c[0].Counters.EgressSFUBytes != 0 ||
		c[0].Counters.IngressBytes != 40 || c[1].App != UnknownApp || c[1].Counters.EgressTURNBytes != 7 {
		t.Fatalf("snapshot %+v", c)
	}
}

func TestUndeclaredAppIDsShareTheUnknownBucket(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	for i := range 1000 {
		m.App(strings.Repeat("x", i%40)).CountRequest(401)
	}
	apps := m.Apps()
	if len(apps) != 2 || apps[1].ID() != UnknownApp {
		t.Fatalf("apps after 1000 random IDs: %d, want %s and %s", len(apps), appA, UnknownApp)
	}
	if got := m.App("nope").requests[codeIndex[401]].Load(); got != 1000 {
		t.Fatalf("unknown bucket counted %d 401s, want 1000", got)
	}
	// A removed app keeps its counters and is still reported.
	m.App(appA).AddEgressSFU(5)
	m.SetApps([]string{appB})
	var found bool
	for _, r := range m.Snapshot() {
		if r.App == appA && r.Counters.EgressSFUBytes == 5 {
			found = true
		}
	}
	if !found {
		t.Fatal("counters of an app removed from the config were dropped")
	}
}

func TestMetricsUseDesignNamesAndOnlyTheAppLabel(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	a := m.App(appA)
	a.AddEgressSFU(1000)
	a.AddEgressTURN(250)
	a.AddIngress(300)
	a.CountRequest(201)
	a.CountRequest(201)
	a.CountRequest(429)
	a.CountRequest(418)
	a.CountLimited("app")
	a.CountLimited("session")
	a.CountLimited("session")
	a.AddSessions(2)
	a.AddTracks(3)
	a.AddTracks(-1)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	want := `
# HELP switchboard_api_requests_total Session API requests by app and HTTP status code.
# TYPE switchboard_api_requests_total counter
switchboard_api_requests_total{app="0123456789abcdef0123456789abcdef",code="201"} 2
switchboard_api_requests_total{app="0123456789abcdef0123456789abcdef",code="429"} 1
switchboard_api_requests_total{app="0123456789abcdef0123456789abcdef",code="other"} 1
# HELP switchboard_egress_bytes_total Bytes sent to clients, by app and source (sfu: media, RTCP, DataChannels; turn: TURN server-to-client bytes).
# TYPE switchboard_egress_bytes_total counter
switchboard_egress_bytes_total{app="0123456789abcdef0123456789abcdef",source="sfu"} 1000
switchboard_egress_bytes_total{app="0123456789abcdef0123456789abcdef",source="turn"} 250
# HELP switchboard_ingress_bytes_total Bytes received from clients, by app.
# TYPE switchboard_ingress_bytes_total counter
switchboard_ingress_bytes_total{app="0123456789abcdef0123456789abcdef"} 300
# HELP switchboard_rate_limited_total Requests refused with 429, by app and limit scope (app or session).
# TYPE switchboard_rate_limited_total counter
switchboard_rate_limited_total{app="0123456789abcdef0123456789abcdef",scope="app"} 1
switchboard_rate_limited_total{app="0123456789abcdef0123456789abcdef",scope="session"} 2
# HELP switchboard_sessions Live sessions, by app.
# TYPE switchboard_sessions gauge
switchboard_sessions{app="0123456789abcdef0123456789abcdef"} 2
# HELP switchboard_tracks Live tracks, by app.
# TYPE switchboard_tracks gauge
switchboard_tracks{app="0123456789abcdef0123456789abcdef"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestTrafficCollectorExportsOnlyByteCounters(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	m.App(appA).AddEgressSFU(9)
	m.App(appA).CountRequest(200)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.TrafficCollector())
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n != 3 {
		t.Fatalf("traffic collector gathered %d series (%v), want egress sfu, egress turn, ingress", n, err)
	}
	if c, _ := testutil.GatherAndCount(reg, MetricAPIRequests); c != 0 {
		t.Fatalf("traffic collector exported %d request series", c)
	}
}

func TestPerSecondHistoryCoversTheLastMinute(t *testing.T) {
	clk := newFakeClock(t0)
	m := NewMeter(clk.Now)
	m.SetApps([]string{appA})
	a := m.App(appA)
	for range 70 { // an old burst that must age out
		a.CountRequest(200)
	}
	clk.Advance(30 * time.Second)
	for range 40 {
		a.CountRequest(200)
	}
	clk.Advance(time.Second)
	for range 5 {
		a.CountRequest(200)
	}
	r := m.Snapshot()[0]
	if p := r.PeakPerSecond(); p != 70 {
		t.Fatalf("peak 31 s after a 70-request second = %d, want 70", p)
	}
	clk.Advance(30 * time.Second) // the 70 burst is now 61 s old
	r = m.Snapshot()[0]
	if p := r.PeakPerSecond(); p != 40 {
		t.Fatalf("peak once the 70 burst is older than a minute = %d, want 40", p)
	}
	if len(r.PerSecond) != 2 || r.PerSecond[0].Count != 40 || r.PerSecond[1].Count != 5 {
		t.Fatalf("history %+v, want [40 5] oldest first", r.PerSecond)
	}
	// The slot of the old burst is reused cleanly 60 s later.
	clk.Advance(29 * time.Second)
	a.CountRequest(200)
	if p := m.Snapshot()[0].PeakPerSecond(); p != 5 {
		t.Fatalf("peak = %d, want 5 after the 40 burst aged out too", p)
	}
}

func TestLiveSourceReplacesTheGauges(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA, appB})
	m.App(appA).AddSessions(9)
	m.SetLiveSource(func() map[string]Live { return map[string]Live{appA: {Sessions: 2, Tracks: 5}} })
	got := map[string]AppReport{}
	for _, r := range m.Snapshot() {
		got[r.App] = r
	}
	if got[appA].Sessions != 2 || got[appA].Tracks != 5 || got[appB].Sessions != 0 {
		t.Fatalf("snapshot %+v", got)
	}
}

func TestEveryMeterHasItsOwnBootID(t *testing.T) {
	a, b := NewMeter(nil), NewMeter(nil)
	if len(a.BootID()) != 32 || a.BootID() == b.BootID() {
		t.Fatalf("boot IDs %q and %q, want two distinct 32-hex IDs", a.BootID(), b.BootID())
	}
}

// BenchmarkAddEgressSFU is the per-packet cost on the forward path.
func BenchmarkAddEgressSFU(b *testing.B) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	a := m.App(appA)
	b.ReportAllocs()
	for b.Loop() {
		a.AddEgressSFU(1200)
	}
}

// BenchmarkAppLookupAndCountRequest is the per-API-request cost.
func BenchmarkAppLookupAndCountRequest(b *testing.B) {
	m := NewMeter(nil)
	m.SetApps([]string{appA, appB})
	b.ReportAllocs()
	for b.Loop() {
		m.App(appA).CountRequest(201)
	}
}
