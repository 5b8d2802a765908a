package hub

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/usage"
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
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var t0 = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

// boot is one process lifetime of a pod, as the test drives it.
type boot struct {
	pod, id string
	start   time.Time
	seq     uint64
	clk     *fakeClock    // the manager's clock
	skew    time.Duration // the pod's clock minus the manager's
}

// testClock is the clock newBoot pods read (plus their skew); each test
// that drives boots sets it.
var testClock *fakeClock

func newBoot(pod, id string, start time.Time) *boot {
	return &boot{pod: pod, id: id, start: start, clk: testClock}
}

// report builds the next report of b with cumulative counters.
func (b *boot) report(final bool, apps ...usage.AppReport) usage.Report {
	b.seq++
	sent := b.start
	if b.clk != nil {
		sent = b.clk.Now()
	}
	return usage.Report{Pod: b.pod, Pool: "calls/pool", Kind: usage.KindSFU, BootID: b.id, BootTime: b.start.Add(b.skew),
		Seq: b.seq, SentAt: sent.Add(b.skew), Final: final, Apps: apps}
}

func app(id string, sfu, turn, ingress uint64) usage.AppReport {
	return usage.AppReport{App: id, Counters: usage.Counters{EgressSFUBytes: sfu, EgressTURNBytes: turn, IngressBytes: ingress}}
}

func readyLedger(clk *fakeClock, apps ...string) *Ledger {
	testClock = clk
	l := NewLedger(LedgerOptions{Clock: clk.Now})
	for _, a := range apps {
		l.SetApp(a, DefaultBilling)
	}
	l.SetReady()
	return l
}

func mustApply(t *testing.T, l *Ledger, r usage.Report) ApplyResult {
	t.Helper()
	res, err := l.Apply(r)
	if err != nil {
		t.Fatalf("apply %s/%s seq %d: %v", r.Pod, r.BootID, r.Seq, err)
	}
	return res
}

func wantTotals(t *testing.T, l *Ledger, appID string, sfu, turn, ingress int64) Usage {
	t.Helper()
	u, ok := l.Usage(appID)
	if !ok {
		t.Fatalf("app %s unknown to the ledger", appID)
	}
	if u.Totals.EgressSFUBytes != sfu || u.Totals.EgressTURNBytes != turn || u.Totals.IngressBytes != ingress || u.EgressBytes != sfu+turn {
		t.Fatalf("app %s totals %+v (egress %d), want sfu %d turn %d ingress %d", appID, u.Totals, u.EgressBytes, sfu, turn, ingress)
	}
	return u
}

func TestRepeatedRetriedAndReorderedReportsAreCountedOnce(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	b := newBoot("sfu-0", "boot1", t0)
	r1 := b.report(false, app(appA, 1000, 10, 500))
	r2 := b.report(false, app(appA, 2500, 30, 900))
	mustApply(t, l, r1)
	if res := mustApply(t, l, r1); !res.Duplicate || res.Added != 0 {
		t.Fatalf("retry of seq 1: %+v, want a duplicate adding nothing", res)
	}
	mustApply(t, l, r2)
	if res := mustApply(t, l, r1); !res.Duplicate {
		t.Fatalf("late seq 1 after seq 2: %+v, want duplicate", res)
	}
	mustApply(t, l, r2)
	wantTotals(t, l, appA, 2500, 30, 900)
}

func TestLostReportsAreCoveredByTheNextCumulativeOne(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	b := newBoot("sfu-0", "boot1", t0)
	mustApply(t, l, b.report(false, app(appA, 100, 0, 0)))
	b.report(false, app(appA, 200, 0, 0)) // lost on the way
	b.report(false, app(appA, 300, 0, 0)) // lost on the way
	mustApply(t, l, b.report(false, app(appA, 400, 0, 0)))
	wantTotals(t, l, appA, 400, 0, 0)
}

func TestPodRestartCountsTheNewBootFromZero(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	old := newBoot("sfu-0", "boot1", t0)
	mustApply(t, l, old.report(false, app(appA, 5000, 0, 100)))
	clk.Advance(10 * time.Second)
	// Same pod name, new process: counters restart at zero.
	nb := newBoot("sfu-0", "boot2", clk.Now())
	mustApply(t, l, nb.report(false, app(appA, 300, 0, 20)))
	mustApply(t, l, nb.report(false, app(appA, 700, 0, 40)))
	wantTotals(t, l, appA, 5700, 0, 140)
}

// Manager restart: the operator persisted State after some report; the
// new manager restores it and every later report adds exactly what the
// restored watermark had not seen.
func TestManagerRestartResumesFromPersistedStateWithoutLossOrDoubleCount(t *testing.T) {
	for _, persistAfter := range []int{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("persisted after %d reports", persistAfter), func(t *testing.T) {
			clk := newFakeClock(t0)
			l1 := readyLedger(clk, appA)
			b1 := newBoot("sfu-0", "boot1", t0)
			b2 := newBoot("sfu-1", "bootX", t0)
			var persisted AppState
			if persistAfter == 0 {
				persisted, _ = l1.State(appA)
			}
			for i := 1; i <= 3; i++ {
				clk.Advance(5 * time.Second)
				mustApply(t, l1, b1.report(false, app(appA, uint64(i)*1000, uint64(i)*7, uint64(i)*3)))
				mustApply(t, l1, b2.report(false, app(appA, uint64(i)*100, 0, 0)))
				if i == persistAfter {
					persisted, _ = l1.State(appA)
				}
			}
			// The manager dies; a new one restores the last persisted state
			// (through JSON, as status would carry it).
			persisted = roundTrip(t, persisted)
			l2 := NewLedger(LedgerOptions{Clock: clk.Now})
			l2.Restore(appA, persisted, DefaultBilling)
			if _, err := l2.Apply(b1.report(false, app(appA, 3500, 21, 9))); !errors.Is(err, ErrNotReady) {
				t.Fatalf("apply before SetReady: %v, want ErrNotReady", err)
			}
			b1.seq-- // the refused report is sent again later with the same seq
			l2.SetReady()
			clk.Advance(5 * time.Second)
			mustApply(t, l2, b1.report(false, app(appA, 4000, 28, 12)))
			mustApply(t, l2, b2.report(true, app(appA, 450, 0, 0)))
			// A delayed copy of an older report changes nothing.
			old := usage.Report{Pod: "sfu-0", BootID: "boot1", BootTime: t0, Seq: 2, Apps: []usage.AppReport{app(appA, 2000, 14, 6)}}
			mustApply(t, l2, old)
			wantTotals(t, l2, appA, 4450, 28, 12)
		})
	}
}

// A manager down for longer than the watermark TTL must not forget the
// pods that kept running (and counting) meanwhile.
func TestLongManagerOutageDoesNotForgetLivePods(t *testing.T) {
	clk := newFakeClock(t0)
	l1 := readyLedger(clk, appA)
	a := newBoot("sfu-0", "a", t0)
	mustApply(t, l1, a.report(false, app(appA, 1000, 0, 0)))
	st, _ := l1.State(appA)
	clk.Advance(3 * time.Hour)
	l2 := NewLedger(LedgerOptions{Clock: clk.Now})
	l2.Restore(appA, roundTrip(t, st), DefaultBilling)
	if st2, _ := l2.State(appA); len(st2.Watermarks) != 1 {
		t.Fatalf("restored state lost its watermark before ready: %+v", st2)
	}
	l2.SetReady()
	// Another pod reports first, which runs the eviction sweep.
	mustApply(t, l2, newBoot("sfu-1", "b", clk.Now()).report(false, app(appA, 5, 0, 0)))
	mustApply(t, l2, a.report(false, app(appA, 9000, 0, 0)))
	wantTotals(t, l2, appA, 9005, 0, 0)
}

func TestReportForAnUndeclaredAppIsCountedOnceTheAppExists(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	b := newBoot("sfu-0", "boot1", t0)
	mustApply(t, l, b.report(false, app(appA, 10, 0, 0), app(appB, 999, 0, 0)))
	if _, ok := l.Usage(appB); ok {
		t.Fatal("undeclared app appeared in the ledger")
	}
	l.SetApp(appB, DefaultBilling)
	mustApply(t, l, b.report(false, app(appA, 10, 0, 0), app(appB, 1500, 0, 0)))
	wantTotals(t, l, appB, 1500, 0, 0)
	wantTotals(t, l, appA, 10, 0, 0)
}

func TestMonthRolloverStartsNewTotalsAndKeepsThePreviousMonth(t *testing.T) {
	clk := newFakeClock(time.Date(2026, 11, 30, 23, 59, 55, 0, time.UTC))
	l := readyLedger(clk, appA)
	b := newBoot("sfu-0", "boot1", clk.Now().Add(-time.Hour))
	mustApply(t, l, b.report(false, app(appA, 1000, 100, 10)))
	u := wantTotals(t, l, appA, 1000, 100, 10)
	if u.Month != "2026-11" {
		t.Fatalf("month %q, want 2026-11", u.Month)
	}
	clk.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	u = wantTotals(t, l, appA, 0, 0, 0)
	if u.Month != "2026-12" || u.Previous == nil || u.Previous.Month != "2026-11" || u.Previous.Totals.EgressSFUBytes != 1000 {
		t.Fatalf("after rollover: month %q previous %+v", u.Month, u.Previous)
	}
	clk.Advance(5 * time.Second)
	mustApply(t, l, b.report(false, app(appA, 1600, 150, 10)))
	wantTotals(t, l, appA, 600, 50, 0)
	// A manager restored from a November state rolls over too, and
	// counts only the delta after the restored watermark.
	st, _ := l.State(appA)
	l2 := NewLedger(LedgerOptions{Clock: clk.Now})
	nov := st
	nov.Month, nov.Previous, nov.Totals = "2026-11", nil, Totals{EgressSFUBytes: 1000, EgressTURNBytes: 100, IngressBytes: 10}
	nov.Watermarks = []Watermark{{Pod: "sfu-0", BootID: "boot1", BootTime: b.start.Unix(), Seq: 1, LastSeen: clk.Now().Unix(),
		Counted: Totals{EgressSFUBytes: 1000, EgressTURNBytes: 100, IngressBytes: 10}}}
	l2.Restore(appA, nov, DefaultBilling)
	l2.SetReady()
	mustApply(t, l2, b.report(false, app(appA, 1700, 150, 10)))
	u = wantTotals(t, l2, appA, 700, 50, 0)
	if u.Previous == nil || u.Previous.Totals.EgressSFUBytes != 1000 {
		t.Fatalf("restored November state did not roll into previous: %+v", u.Previous)
	}
}

func TestBillableGBAndCostAfterTheSharedFreeTier(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk)
	l.SetApp(appA, Billing{FreeGB: 1, PricePerGBMicroUSD: 50000, MonthlyCapGB: 4})
	b := newBoot("sfu-0", "boot1", t0)
	// 2.5 GB from the SFU and 1 GB from TURN: one free tier for both.
	mustApply(t, l, b.report(false, app(appA, 2_500_000_000, 1_000_000_000, 9_000_000_000)))
	u, _ := l.Usage(appA)
	if u.EgressBytes != 3_500_000_000 || u.BillableBytes != 2_500_000_000 || u.CostMicroUSD != 125_000 || u.QuotaExceeded {
		t.Fatalf("usage %+v, want 3.5 GB egress, 2.5 GB billable, 125000 micro-USD, quota not exceeded", u)
	}
	if got := FormatUSD(u.CostMicroUSD); got != "$0.13" {
		t.Fatalf("cost renders %q, want $0.13", got)
	}
	if got := FormatBytes(u.EgressBytes); got != "3.50 GB" {
		t.Fatalf("egress renders %q, want 3.50 GB", got)
	}
	mustApply(t, l, b.report(false, app(appA, 3_000_000_000, 1_000_000_000, 9_000_000_000)))
	if u, _ = l.Usage(appA); !u.QuotaExceeded {
		t.Fatalf("4 GB egress with a 4 GB cap: QuotaExceeded false")
	}
	// Defaults: 1000 GB free at $0.05; a price change applies at once.
	l.SetApp(appB, DefaultBilling)
	b2 := newBoot("sfu-1", "boot2", t0)
	mustApply(t, l, b2.report(false, app(appB, 1_001_000_000_000, 0, 0)))
	if u, _ = l.Usage(appB); u.BillableBytes != 1_000_000_000 || u.CostMicroUSD != 50_000 {
		t.Fatalf("default billing: %+v, want 1 GB billable costing 50000", u)
	}
	// No overflow at extreme byte counts.
	if c := DefaultBilling.CostMicroUSD(1 << 62); c <= 0 {
		t.Fatalf("cost of 2^62 bytes overflowed: %d", c)
	}
	for n, want := range map[int64]string{0: "0", 999_999: "0", 2_500_000_000: "2.5", 12_345_678_901: "12.345", 7_000_000_000: "7"} {
		if got := FormatGB(n); got != want {
			t.Errorf("FormatGB(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1500: "1.50 kB", 12_345_678_901: "12.3 GB", 123_456_789_012_345: "123 TB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestForgottenBootIsNeverCountedTwice(t *testing.T) {
	clk := newFakeClock(t0)
	testClock = clk
	l := NewLedger(LedgerOptions{Clock: clk.Now, MaxWatermarks: 2})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	a := newBoot("sfu-0", "A", t0)
	a.skew = 10 * time.Minute // a pod clock far ahead must not matter
	mustApply(t, l, a.report(false, app(appA, 1000, 0, 0)))
	// Two more boots push A's watermark out (crash-looping neighbours).
	for i, id := range []string{"B", "C"} {
		clk.Advance(time.Minute)
		nb := newBoot(fmt.Sprintf("sfu-%d", i+1), id, clk.Now())
		nb.skew = -10 * time.Minute // nor one far behind
		mustApply(t, l, nb.report(false, app(appA, 10, 0, 0)))
	}
	st, _ := l.State(appA)
	if len(st.Watermarks) != 2 {
		t.Fatalf("%d watermarks, bound is 2", len(st.Watermarks))
	}
	// A reappears (a partition healed): its cumulative 1500 must not be
	// counted again; only what it sends after re-baselining counts.
	mustApply(t, l, a.report(false, app(appA, 1500, 0, 0)))
	wantTotals(t, l, appA, 1020, 0, 0)
	mustApply(t, l, a.report(false, app(appA, 1800, 0, 0)))
	wantTotals(t, l, appA, 1320, 0, 0)
	// A genuinely new boot after the eviction, its clock 10 minutes
	// behind, is counted from zero.
	clk.Advance(time.Minute)
	d := newBoot("sfu-3", "D", clk.Now().Add(-3*time.Second))
	d.skew = -10 * time.Minute
	mustApply(t, l, d.report(false, app(appA, 77, 0, 0)))
	wantTotals(t, l, appA, 1397, 0, 0)
}

func TestWatermarksStayBoundedAndExpire(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	for i := range 1000 {
		clk.Advance(time.Second)
		b := newBoot("sfu-0", fmt.Sprintf("boot%d", i), clk.Now())
		mustApply(t, l, b.report(i%2 == 0, app(appA, 1, 0, 0)))
	}
	st, _ := l.State(appA)
	if len(st.Watermarks) > DefaultMaxWatermarks {
		t.Fatalf("%d watermarks after 1000 boots, bound %d", len(st.Watermarks), DefaultMaxWatermarks)
	}
	wantTotals(t, l, appA, 1000, 0, 0)
	clk.Advance(DefaultWatermarkTTL + time.Minute)
	if st, _ = l.State(appA); len(st.Watermarks) != 0 {
		t.Fatalf("%d watermarks after an hour of silence, want 0", len(st.Watermarks))
	}
}

func TestLiveGaugesDropStoppedStaleAndRestartedPods(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	gauge := func(sessions, tracks int64) usage.AppReport {
		r := app(appA, 0, 0, 0)
		r.Sessions, r.Tracks = sessions, tracks
		return r
	}
	p0, p1, p2 := newBoot("sfu-0", "a", t0), newBoot("sfu-1", "b", t0), newBoot("sfu-2", "c", t0)
	mustApply(t, l, p0.report(false, gauge(3, 6)))
	mustApply(t, l, p1.report(false, gauge(2, 4)))
	mustApply(t, l, p2.report(false, gauge(1, 1)))
	if u, _ := l.Usage(appA); u.Sessions != 6 || u.Tracks != 11 {
		t.Fatalf("live %d sessions %d tracks, want 6 and 11", u.Sessions, u.Tracks)
	}
	mustApply(t, l, p2.report(true, gauge(1, 1))) // graceful stop
	clk.Advance(10 * time.Second)
	mustApply(t, l, p0.report(false, gauge(3, 6)))
	// sfu-1 restarts: the new boot's gauges replace the old ones.
	p1b := newBoot("sfu-1", "b2", clk.Now())
	mustApply(t, l, p1b.report(false, gauge(1, 2)))
	if u, _ := l.Usage(appA); u.Sessions != 4 || u.Tracks != 8 {
		t.Fatalf("after a stop and a restart: %d sessions %d tracks, want 4 and 8", u.Sessions, u.Tracks)
	}
	// sfu-0 is killed and stops reporting: it drops out after StaleAfter.
	clk.Advance(DefaultStaleAfter - 9*time.Second)
	mustApply(t, l, p1b.report(false, gauge(1, 2)))
	clk.Advance(10 * time.Second)
	if u, _ := l.Usage(appA); u.Sessions != 1 || u.Tracks != 2 {
		t.Fatalf("after sfu-0 went silent: %d sessions %d tracks, want 1 and 2", u.Sessions, u.Tracks)
	}
	pods := l.Pods("calls/pool")
	if len(pods) != 3 || !pods[0].Stale || pods[0].Sessions != 0 || pods[1].Sessions != 1 || !pods[2].Stopped {
		t.Fatalf("pods %+v, want sfu-0 stale, sfu-1 with 1 session, sfu-2 stopped", pods)
	}
}

func TestPeakPerSecondAddsReplicasSecondBySecond(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	s := t0.Unix()
	hist := func(limit int, counts ...uint64) usage.AppReport {
		r := app(appA, 0, 0, 0)
		r.Limit = limit
		for i, n := range counts {
			r.PerSecond = append(r.PerSecond, usage.SecondCount{Unix: s - int64(len(counts)) + int64(i) + 1, Count: n})
		}
		return r
	}
	mustApply(t, l, newBoot("sfu-0", "a", t0).report(false, hist(200, 10, 50, 5)))
	mustApply(t, l, newBoot("sfu-1", "b", t0).report(false, hist(200, 60, 20, 5)))
	u, _ := l.Usage(appA)
	// Per second: 70, 70, 10. Adding per-pod peaks would say 110.
	if u.PeakPerSecond != 70 || u.Limit != 200 {
		t.Fatalf("peak %d limit %d, want 70 and 200", u.PeakPerSecond, u.Limit)
	}
	clk.Advance(2 * time.Minute)
	if u, _ = l.Usage(appA); u.PeakPerSecond != 0 {
		t.Fatalf("peak two minutes later = %d, want 0", u.PeakPerSecond)
	}
}

func TestPodStatusShowsEgressRate(t *testing.T) {
	clk := newFakeClock(t0)
	l := readyLedger(clk, appA)
	b := newBoot("sfu-0", "a", t0)
	mustApply(t, l, b.report(false, app(appA, 1_000_000, 0, 0)))
	clk.Advance(5 * time.Second)
	r := b.report(false, app(appA, 6_000_000, 0, 0))
	r.ConfigVersion = "v7"
	mustApply(t, l, r)
	p := l.Pods("calls/pool")
	if len(p) != 1 || p[0].EgressBytesPerSecond != 1_000_000 || p[0].ConfigVersion != "v7" {
		t.Fatalf("pods %+v, want 1 MB/s and config v7", p)
	}
}

func TestLedgerNotifiesChangedAppsOnly(t *testing.T) {
	clk := newFakeClock(t0)
	testClock = clk
	var got []string
	l := NewLedger(LedgerOptions{Clock: clk.Now, OnChange: func(id string) { got = append(got, id) }})
	l.SetApp(appA, DefaultBilling)
	l.SetApp(appB, DefaultBilling)
	l.SetReady()
	b := newBoot("sfu-0", "a", t0)
	r := b.report(false, app(appA, 1, 0, 0), app(appB, 2, 0, 0), app("ffffffffffffffffffffffffffffffff", 3, 0, 0))
	mustApply(t, l, r)
	mustApply(t, l, r) // duplicate: no notification
	if len(got) != 2 || got[0] != appA || got[1] != appB {
		t.Fatalf("notified %v, want [%s %s] once", got, appA, appB)
	}
}

func TestMalformedReportsAreRefused(t *testing.T) {
	l := readyLedger(newFakeClock(t0), appA)
	for _, r := range []usage.Report{{BootID: "x", Seq: 1}, {Pod: "p", Seq: 1}, {Pod: "p", BootID: "x"}} {
		if _, err := l.Apply(r); !errors.Is(err, ErrBadReport) {
			t.Errorf("Apply(%+v) = %v, want ErrBadReport", r, err)
		}
	}
}
