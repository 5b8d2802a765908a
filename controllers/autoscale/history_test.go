package autoscale

import (
	"testing"
	"time"
)

func TestHistoryKeepsOneSampleBeforeTheWindowAndSkipsBursts(t *testing.T) {
	h := NewHistory()
	var got []Sample
	for at := time.Duration(0); at <= 10*time.Minute; at += 10 * time.Second {
		h.Add("ns/demo", Sample{At: t0.Add(at)}, 10*time.Second, 5*time.Minute)
		// A reconcile triggered by an event 1 s later adds nothing.
		got = h.Add("ns/demo", Sample{At: t0.Add(at + time.Second)}, 10*time.Second, 5*time.Minute)
		if last := got[len(got)-1].At; !last.Equal(t0.Add(at)) {
			t.Fatalf("a sample 1 s after the last one was kept (latest at %s)", last.Sub(t0))
		}
	}
	first, last := got[0].At.Sub(t0), got[len(got)-1].At.Sub(t0)
	if first > 5*time.Minute || first < 5*time.Minute-10*time.Second || last != 10*time.Minute {
		t.Fatalf("history spans %s..%s, want from just before 5m to 10m", first, last)
	}
	if len(got) != 31 {
		t.Fatalf("%d samples, want 31 (one per 10 s over 5 min, plus the one at the window's start)", len(got))
	}
	h.Forget("ns/demo")
	if got := h.Add("ns/demo", Sample{At: t0}, time.Second, time.Minute); len(got) != 1 {
		t.Fatalf("forgotten pool still has %d samples", len(got))
	}
}
