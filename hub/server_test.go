package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

const token = "hub-token-for-tests"

// switchable is one loopback URL whose backing hub can go down and be
// replaced, as a manager restart looks to pods behind a Service.
type switchable struct {
	mu sync.Mutex
	h  http.Handler // nil: down
	// loseResponses makes the next N accepted requests look failed to the
	// caller after the hub has processed them (a lost response).
	loseResponses atomic.Int32
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	if h == nil {
		http.Error(w, "hub down", http.StatusBadGateway)
		return
	}
	if s.loseResponses.Load() > 0 {
		s.loseResponses.Add(-1)
		h.ServeHTTP(httptest.NewRecorder(), r)
		http.Error(w, "response lost", http.StatusBadGateway)
		return
	}
	h.ServeHTTP(w, r)
}

func (s *switchable) set(h http.Handler) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

func startHub(t *testing.T, l *Ledger) (*switchable, string) {
	t.Helper()
	sw := &switchable{}
	sw.set((&Server{Ledger: l, Configs: NewConfigStore(), Token: token}).Handler())
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	return sw, srv.URL
}

func newPod(url, name string) (*usage.Meter, *usage.App, *usage.Reporter) {
	m := usage.NewMeter(nil)
	m.SetApps([]string{appA})
	r := usage.NewReporter(usage.ReporterOptions{Meter: m, HubURL: url, Token: token, Pod: name, Pool: "calls/pool",
		Interval: 20 * time.Millisecond, FinalTimeout: 10 * time.Second})
	return m, m.App(appA), r
}

func totalOf(m *usage.Meter) (sfu, ingress int64) {
	for _, a := range m.Snapshot() {
		if a.App == appA {
			return int64(a.Counters.EgressSFUBytes), int64(a.Counters.IngressBytes)
		}
	}
	return 0, 0
}

func TestHubRefusesReportsWithoutTheToken(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	for _, tc := range []struct{ name, serverToken, sent string }{
		{"wrong token", token, "nope"},
		{"no token configured", "", ""},
	} {
		srv := httptest.NewServer((&Server{Ledger: l, Configs: NewConfigStore(), Token: tc.serverToken}).Handler())
		m := usage.NewMeter(nil)
		m.SetApps([]string{appA})
		m.App(appA).AddEgressSFU(100)
		rep := usage.NewReporter(usage.ReporterOptions{Meter: m, HubURL: srv.URL, Token: tc.sent, Pod: "p"})
		err := rep.Flush(context.Background())
		srv.Close()
		if !errors.Is(err, usage.ErrRejected) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("%s: flush err = %v, want ErrRejected with 401", tc.name, err)
		}
	}
	if u, _ := l.Usage(appA); u.EgressBytes != 0 {
		t.Fatalf("unauthorised reports counted %d bytes", u.EgressBytes)
	}
}

// A graceful stop: traffic stops, Run's context is cancelled (SIGTERM),
// the final report carries everything.
func TestGracefulPodStopLosesNoBytes(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	_, url := startHub(t, l)
	m, a, rep := newPod(url, "sfu-0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	for i := range 200 {
		a.AddEgressSFU(1200 + i)
		a.AddIngress(100)
		if i%50 == 0 {
			time.Sleep(15 * time.Millisecond)
		}
	}
	a.AddEgressSFU(7) // counted just before SIGTERM
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("final flush: %v", err)
	}
	sfu, in := totalOf(m)
	u, _ := l.Usage(appA)
	if u.Totals.EgressSFUBytes != sfu || u.Totals.IngressBytes != in || sfu == 0 {
		t.Fatalf("ledger has %d/%d bytes, pod counted %d/%d", u.Totals.EgressSFUBytes, u.Totals.IngressBytes, sfu, in)
	}
	if p := l.Pods("calls/pool"); len(p) != 1 || !p[0].Stopped {
		t.Fatalf("pods %+v, want sfu-0 stopped", p)
	}
}

// A killed pod never sends its final report: what it counted after its
// last delivered report is lost, and nothing more.
func TestKilledPodLosesAtMostOneReportInterval(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	_, url := startHub(t, l)
	m, a, rep := newPod(url, "sfu-0")
	ctx := context.Background()
	var sinceLastReport int64
	for tick := range 5 { // five report intervals of traffic
		for range 100 {
			a.AddEgressSFU(1000)
		}
		sinceLastReport = 100 * 1000
		if tick < 4 {
			if err := rep.Send(ctx); err != nil {
				t.Fatal(err)
			}
			sinceLastReport = 0
		}
	}
	// SIGKILL: no flush.
	sfu, _ := totalOf(m)
	u, _ := l.Usage(appA)
	lost := sfu - u.Totals.EgressSFUBytes
	if lost < 0 || lost > sinceLastReport || lost != 100_000 {
		t.Fatalf("lost %d bytes, want exactly the last interval's %d", lost, sinceLastReport)
	}
	// The pod restarts with a new boot and its bytes add on top.
	m2, a2, rep2 := newPod(url, "sfu-0")
	a2.AddEgressSFU(5000)
	if err := rep2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s2, _ := totalOf(m2)
	if u, _ = l.Usage(appA); u.Totals.EgressSFUBytes != sfu-lost+s2 {
		t.Fatalf("after restart ledger %d, want %d", u.Totals.EgressSFUBytes, sfu-lost+s2)
	}
}

// A response lost after the hub applied a report: the retry is a duplicate.
func TestRetryAfterLostResponseIsNotCountedTwice(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	l.SetReady()
	sw, url := startHub(t, l)
	m, a, rep := newPod(url, "sfu-0")
	a.AddEgressSFU(4242)
	sw.loseResponses.Store(2)
	if err := rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	sfu, _ := totalOf(m)
	if u, _ := l.Usage(appA); u.Totals.EgressSFUBytes != sfu {
		t.Fatalf("ledger %d after two lost responses and a retry, pod counted %d", u.Totals.EgressSFUBytes, sfu)
	}
}

// Manager restart mid-stream: pods keep counting while the hub is down
// and while the new manager is restoring; nothing is lost or doubled.
func TestManagerRestartMidStreamLosesNothing(t *testing.T) {
	l1 := NewLedger(LedgerOptions{})
	l1.SetApp(appA, DefaultBilling)
	l1.SetReady()
	sw, url := startHub(t, l1)
	m0, a0, rep0 := newPod(url, "sfu-0")
	m1, a1, rep1 := newPod(url, "sfu-1")
	ctx := context.Background()
	send := func(rep *usage.Reporter) { _ = rep.Send(ctx) }
	var persisted AppState
	for tick := range 6 {
		a0.AddEgressSFU(1000)
		a1.AddEgressSFU(10)
		send(rep0)
		send(rep1)
		if tick == 2 { // the operator's throttled status write
			persisted, _ = l1.State(appA)
			persisted = roundTrip(t, persisted)
		}
	}
	// The manager dies; pods keep carrying traffic and fail to report.
	sw.set(nil)
	for range 3 {
		a0.AddEgressSFU(1000)
		a1.AddEgressSFU(10)
		if err := rep0.Send(ctx); !errors.Is(err, usage.ErrNotAccepted) {
			t.Fatalf("send while the hub is down: %v", err)
		}
	}
	// The new manager serves before it has restored: reports are refused.
	l2 := NewLedger(LedgerOptions{})
	sw.set((&Server{Ledger: l2, Configs: NewConfigStore(), Token: token}).Handler())
	a0.AddEgressSFU(1000)
	if err := rep0.Send(ctx); !errors.Is(err, usage.ErrNotAccepted) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("send before restore: %v, want 503", err)
	}
	l2.Restore(appA, persisted, DefaultBilling)
	l2.SetReady()
	a0.AddEgressSFU(1000)
	a1.AddEgressSFU(10)
	send(rep0)
	send(rep1)
	// Both pods stop gracefully.
	if err := rep0.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rep1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s0, _ := totalOf(m0)
	s1, _ := totalOf(m1)
	if u, _ := l2.Usage(appA); u.Totals.EgressSFUBytes != s0+s1 {
		t.Fatalf("after a manager restart the ledger has %d bytes, pods counted %d", u.Totals.EgressSFUBytes, s0+s1)
	}
}

// The final flush outlasts a hub that is briefly not ready.
func TestFinalReportRetriesUntilTheHubIsReady(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	l.SetApp(appA, DefaultBilling)
	_, url := startHub(t, l)
	m, a, rep := newPod(url, "sfu-0")
	a.AddEgressSFU(999)
	time.AfterFunc(300*time.Millisecond, l.SetReady)
	start := time.Now()
	if err := rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("flush returned after %v, before the hub was ready", time.Since(start))
	}
	sfu, _ := totalOf(m)
	if u, _ := l.Usage(appA); u.Totals.EgressSFUBytes != sfu {
		t.Fatalf("ledger %d, pod %d", u.Totals.EgressSFUBytes, sfu)
	}
}
