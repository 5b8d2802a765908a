package hub

import (
	"testing"
	"time"
)

func TestStatusWritesAreThrottledAndSkippedWhenUnchanged(t *testing.T) {
	clk := newFakeClock(t0)
	th := NewStatusThrottle(0, clk.Now)
	steps := []struct {
		advance     time.Duration
		fingerprint string
		write       bool
		after       time.Duration
	}{
		{0, "a", true, 0},                          // first sight: write
		{time.Second, "a", false, 0},               // unchanged: nothing, no requeue
		{time.Second, "b", false, 8 * time.Second}, // changed 2 s after a write: wait 8 s
		{8 * time.Second, "b", true, 0},            // 10 s after the last write
		{time.Hour, "b", false, 0},                 // an hour with nothing new: nothing
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		write, after := th.Due("ns/app", s.fingerprint)
		if write != s.write || after != s.after {
			t.Fatalf("step %d: Due = %v %v, want %v %v", i, write, after, s.write, s.after)
		}
		if write {
			th.Written("ns/app", s.fingerprint)
		}
	}
	if w, _ := th.Due("ns/other", "a"); !w {
		t.Fatal("another object is throttled by the first one's write")
	}
	th.Forget("ns/app")
	if w, _ := th.Due("ns/app", "b"); !w {
		t.Fatal("a forgotten object is still throttled")
	}
}
