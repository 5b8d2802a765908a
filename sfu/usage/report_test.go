package usage

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// hubStub records reports and answers with the next queued status (200
// when the queue is empty).
type hubStub struct {
	mu      sync.Mutex
	reports []Report
	auth    []string
	codes   []int
}

func (h *hubStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != ReportPath {
		http.Error(w, "wrong endpoint", http.StatusNotFound)
		return
	}
	var rep Report
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reports = append(h.reports, rep)
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	code := http.StatusOK
	if len(h.codes) > 0 {
		code, h.codes = h.codes[0], h.codes[1:]
	}
	w.WriteHeader(code)
}

func (h *hubStub) snapshot() []Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Report(nil), h.reports...)
}

func TestReporterSendsCumulativeSnapshotsThenAFinalOneOnShutdown(t *testing.T) {
	stub := &hubStub{}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	a := m.App(appA)
	r := NewReporter(ReporterOptions{Meter: m, HubURL: srv.URL + "/", Token: "tok", Pod: "sfu-0", Pool: "ns/pool",
		Interval: 10 * time.Millisecond, ConfigVersion: func() string { return "v9" }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(stub.snapshot()) < 3 {
		a.AddEgressSFU(100)
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 periodic reports in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.AddEgressSFU(1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	reps := stub.snapshot()
	last := reps[len(reps)-1]
	var prev uint64
	for i, rep := range reps {
		if rep.Seq != uint64(i+1) || rep.BootID != m.BootID() || rep.Pod != "sfu-0" || rep.Pool != "ns/pool" ||
			rep.Kind != KindSFU || rep.ConfigVersion != "v9" || stub.auth[i] != "Bearer tok" {
			t.Fatalf("report %d: %+v auth %q", i, rep, stub.auth[i])
		}
		if got := rep.Apps[0].Counters.EgressSFUBytes; got < prev {
			t.Fatalf("report %d egress %d went below %d: counters must be cumulative", i, got, prev)
		} else {
			prev = got
		}
		if rep.Final != (i == len(reps)-1) {
			t.Fatalf("report %d final=%v", i, rep.Final)
		}
	}
	if got := last.Apps[0].Counters.EgressSFUBytes; got != a.egressSFU.Load() {
		t.Fatalf("final report has %d bytes, meter %d", got, a.egressSFU.Load())
	}
}

func TestFinalReportRetriesTransientFailuresButNotRejections(t *testing.T) {
	stub := &hubStub{codes: []int{http.StatusServiceUnavailable, http.StatusBadGateway}}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	m := NewMeter(nil)
	r := NewReporter(ReporterOptions{Meter: m, HubURL: srv.URL, Token: "tok", Pod: "p"})
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("flush through two transient failures: %v", err)
	}
	reps := stub.snapshot()
	if len(reps) != 3 || reps[0].Seq != reps[2].Seq || !reps[2].Final {
		t.Fatalf("got %d attempts %+v, want the same final report three times", len(reps), reps)
	}
	stub.codes = []int{http.StatusUnauthorized}
	err := NewReporter(ReporterOptions{Meter: m, HubURL: srv.URL, Token: "bad", Pod: "p"}).Flush(context.Background())
	if !errors.Is(err, ErrRejected) || len(stub.snapshot()) != 4 {
		t.Fatalf("401: err %v after %d attempts, want ErrRejected after one", err, len(stub.snapshot())-3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = NewReporter(ReporterOptions{Meter: m, HubURL: "http://127.0.0.1:1", Pod: "p"}).Flush(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unreachable hub: %v, want the flush to give up at its deadline", err)
	}
}

func TestReporterWithoutAHubReturnsAtOnceOnShutdown(t *testing.T) {
	r := NewReporter(ReporterOptions{Meter: NewMeter(nil), Pod: "p"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := r.Run(ctx); err != nil || time.Since(start) > time.Second {
		t.Fatalf("Run without a hub: %v after %v", err, time.Since(start))
	}
}

func TestDrainSendsADrainingReportAtOnceAndMarksTheFinalOne(t *testing.T) {
	stub := &hubStub{}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	m := NewMeter(nil)
	// A long interval: only the drain can make a report arrive soon.
	r := NewReporter(ReporterOptions{Meter: m, HubURL: srv.URL, Token: "tok", Pod: "sfu-1", Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if n := len(stub.snapshot()); n != 0 {
		t.Fatalf("%d reports before the drain with a 1 h interval", n)
	}
	deadline := time.Date(2026, 11, 23, 23, 30, 0, 0, time.FixedZone("x", 3600))
	r.Drain(deadline)
	waitUntil := time.Now().Add(5 * time.Second)
	for len(stub.snapshot()) == 0 {
		if time.Now().After(waitUntil) {
			t.Fatal("no report within 5 s of the drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	reps := stub.snapshot()
	if len(reps) != 2 || reps[0].Final || !reps[1].Final {
		t.Fatalf("reports %+v, want one at the drain and the final one", reps)
	}
	for _, rep := range reps {
		if !rep.Draining || rep.DrainDeadline == nil || !rep.DrainDeadline.Equal(deadline) || rep.DrainDeadline.Location() != time.UTC {
			t.Fatalf("report seq %d: draining %v deadline %v, want true and %v in UTC", rep.Seq, rep.Draining, rep.DrainDeadline, deadline.UTC())
		}
	}
}
