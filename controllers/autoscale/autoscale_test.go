package autoscale

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// series builds one sample every step from start to end with the per-pod
// sessions load(at) gives (ordinal → sessions).
func series(start, end, step time.Duration, load func(at time.Duration) map[int32]int64) []Sample {
	var out []Sample
	for at := start; at <= end; at += step {
		s := Sample{At: t0.Add(at)}
		for o, n := range load(at) {
			s.Pods = append(s.Pods, PodLoad{Ordinal: o, Sessions: n})
		}
		out = append(out, s)
	}
	return out
}

func sessionsPolicy() Policy {
	return Policy{Min: 2, Max: 6, TargetSessions: 100, ScaleUpWindow: 30 * time.Second, ScaleDownWindow: 5 * time.Minute}
}

func TestLoadOverTargetScalesUpAtOnce(t *testing.T) {
	p := sessionsPolicy()
	// Two pods carry 150 each for the last 30 s: 300 sessions need 3 pods.
	samples := series(0, 60*time.Second, 5*time.Second, func(at time.Duration) map[int32]int64 {
		if at < 30*time.Second {
			return map[int32]int64{0: 50, 1: 50}
		}
		return map[int32]int64{0: 150, 1: 150}
	})
	// At 60 s the 30 s window holds only the high samples.
	d := Decide(p, samples, Scale{Replicas: 2}, t0.Add(60*time.Second))
	if d.Replicas != 3 || d.Start != 0 || len(d.Removed) != 0 {
		t.Fatalf("decision %+v, want 3 pods from ordinal 0, none removed", d)
	}
	// A burst to 1000 sessions goes straight to the maximum, not step by step.
	samples = series(0, 30*time.Second, 5*time.Second, func(time.Duration) map[int32]int64 {
		return map[int32]int64{0: 500, 1: 500}
	})
	if d := Decide(p, samples, Scale{Replicas: 2}, t0.Add(30*time.Second)); d.Replicas != 6 {
		t.Fatalf("burst of 1000 sessions: %d pods, want the maximum 6", d.Replicas)
	}
}

func TestShortSpikeIsAveragedOverThirtySeconds(t *testing.T) {
	p := sessionsPolicy()
	// One sample at 400 among five at 100 over 30 s: average 150 sessions,
	// which 2 pods at 100 each carry.
	samples := series(0, 30*time.Second, 5*time.Second, func(at time.Duration) map[int32]int64 {
		if at == 30*time.Second {
			return map[int32]int64{0: 200, 1: 200}
		}
		return map[int32]int64{0: 50, 1: 50}
	})
	if d := Decide(p, samples, Scale{Replicas: 2}, t0.Add(30*time.Second)); d.Replicas != 2 {
		t.Fatalf("a 5 s spike scaled to %d pods (%s)", d.Replicas, d.Reason)
	}
}

func TestNoScaleDownInsideTheStabilizationWindow(t *testing.T) {
	p := sessionsPolicy()
	// Four pods, load for 1 pod, but a brief return to 350 sessions at
	// 3 min resets the window: nothing may go until that sample is more
	// than 5 min old.
	load := func(at time.Duration) map[int32]int64 {
		if at == 3*time.Minute {
			return map[int32]int64{0: 90, 1: 90, 2: 90, 3: 80}
		}
		return map[int32]int64{0: 10, 1: 10, 2: 10, 3: 10}
	}
	cur := Scale{Replicas: 4}
	for now := 5 * time.Minute; now <= 8*time.Minute; now += 10 * time.Second {
		samples := series(0, now, 10*time.Second, load)
		d := Decide(p, samples, cur, t0.Add(now))
		if d.Changed(cur) {
			t.Fatalf("at %s scaled to %d pods from %d inside the window (%s)", now, d.Replicas, d.Start, d.Reason)
		}
	}
	samples := series(0, 8*time.Minute+10*time.Second, 10*time.Second, load)
	d := Decide(p, samples, cur, t0.Add(8*time.Minute+10*time.Second))
	if d.Replicas != 3 {
		t.Fatalf("after a whole quiet window: %d pods, want one step down to 3", d.Replicas)
	}
}

func TestScaleDownWaitsForAFullHistoryAndForDrainingPods(t *testing.T) {
	p := sessionsPolicy()
	quiet := func(time.Duration) map[int32]int64 { return map[int32]int64{0: 1, 1: 1, 2: 1} }
	// History of 2 min only (operator restarted): too short to judge.
	short := series(3*time.Minute, 5*time.Minute, 10*time.Second, quiet)
	if d := Decide(p, short, Scale{Replicas: 3}, t0.Add(5*time.Minute)); d.Replicas != 3 {
		t.Fatalf("scaled down to %d with 2 min of history", d.Replicas)
	}
	full := series(0, 6*time.Minute, 10*time.Second, quiet)
	if d := Decide(p, full, Scale{Replicas: 3, Draining: true}, t0.Add(6*time.Minute)); d.Replicas != 3 {
		t.Fatalf("scaled down to %d while a pod drains", d.Replicas)
	}
	if d := Decide(p, full, Scale{Replicas: 3, LastChange: t0.Add(2 * time.Minute)}, t0.Add(6*time.Minute)); d.Replicas != 3 {
		t.Fatalf("scaled down to %d 4 min after the last change", d.Replicas)
	}
	if d := Decide(p, full, Scale{Replicas: 2}, t0.Add(6*time.Minute)); d.Replicas != 2 {
		t.Fatalf("went below the minimum: %d", d.Replicas)
	}
	if d := Decide(p, full, Scale{Replicas: 3}, t0.Add(6*time.Minute)); d.Replicas != 2 {
		t.Fatalf("quiet for the whole window with nothing draining: %d pods, want 2", d.Replicas)
	}
}

func TestScaleDownRemovesTheEmptierEnd(t *testing.T) {
	p := sessionsPolicy()
	cases := []struct {
		name      string
		cur       Scale
		load      map[int32]int64
		wantStart int32
		removed   int32
	}{
		{"lowest ordinal emptier: start moves up", Scale{Replicas: 3, Start: 0}, map[int32]int64{0: 2, 1: 40, 2: 30}, 1, 0},
		{"highest ordinal emptier", Scale{Replicas: 3, Start: 0}, map[int32]int64{0: 20, 1: 40, 2: 3}, 0, 2},
		{"tie keeps the StatefulSet's own order", Scale{Replicas: 3, Start: 0}, map[int32]int64{0: 5, 1: 40, 2: 5}, 0, 2},
		{"shifted range, silent low pod", Scale{Replicas: 3, Start: 4}, map[int32]int64{5: 40, 6: 30}, 5, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			samples := series(0, 6*time.Minute, 15*time.Second, func(time.Duration) map[int32]int64 { return c.load })
			d := Decide(p, samples, c.cur, t0.Add(6*time.Minute))
			if d.Replicas != c.cur.Replicas-1 || d.Start != c.wantStart || !reflect.DeepEqual(d.Removed, []int32{c.removed}) {
				t.Fatalf("decision %+v, want %d pods from %d removing %d", d, c.cur.Replicas-1, c.wantStart, c.removed)
			}
		})
	}
}

func TestEgressTargetAndBounds(t *testing.T) {
	p := Policy{Min: 1, Max: 4, TargetSessions: 1000, TargetEgress: 1_000_000, ScaleUpWindow: 30 * time.Second, ScaleDownWindow: time.Minute}
	// Few sessions but 2.5 MB/s of egress: the egress target asks for 3 pods.
	s := []Sample{{At: t0, Pods: []PodLoad{{Ordinal: 0, Sessions: 10, EgressBytesPerSecond: 2_500_000}}}}
	if d := Decide(p, s, Scale{Replicas: 1}, t0); d.Replicas != 3 {
		t.Fatalf("egress 2.5 MB/s at 1 MB/s per pod: %d pods, want 3", d.Replicas)
	}
	// The user lowered max to 4 while 6 run: back to 4 at once, from the top.
	d := Decide(p, s, Scale{Replicas: 6, Start: 2}, t0)
	if d.Replicas != 4 || d.Start != 2 || !reflect.DeepEqual(d.Removed, []int32{6, 7}) {
		t.Fatalf("above max: %+v", d)
	}
	if d := Decide(p, nil, Scale{Replicas: 0}, t0); d.Replicas != 1 {
		t.Fatalf("below min with no samples: %d", d.Replicas)
	}
}

func TestFakeLoadSeriesScalesUpHoldsAndScalesDownWithoutFlapping(t *testing.T) {
	// A day in 10 s steps replayed through Decide as the controller would:
	// 0-10 min 150 sessions, 10-20 min 450, 20-21 min 80, 21-22 min 450
	// (a dip and rebound), then 60 until the end at 60 min.
	p := sessionsPolicy()
	total := func(at time.Duration) int64 {
		switch {
		case at < 10*time.Minute:
			return 150
		case at < 20*time.Minute:
			return 450
		case at < 21*time.Minute:
			return 80
		case at < 22*time.Minute:
			return 450
		}
		return 60
	}
	cur := Scale{Replicas: 2}
	var samples []Sample
	var changes []string
	for at := time.Duration(0); at <= 60*time.Minute; at += 10 * time.Second {
		// Load spreads evenly, except that the lowest ordinal holds half a
		// share and the highest one and a half.
		s := Sample{At: t0.Add(at)}
		n := total(at)
		for o := cur.Start; o < cur.Start+cur.Replicas; o++ {
			share := n / int64(cur.Replicas)
			switch o {
			case cur.Start:
				share /= 2
			case cur.Start + cur.Replicas - 1:
				share += n - share*int64(cur.Replicas) + share/2
			}
			s.Pods = append(s.Pods, PodLoad{Ordinal: o, Sessions: share})
		}
		samples = append(samples, s)
		d := Decide(p, samples, cur, t0.Add(at))
		if d.Changed(cur) {
			changes = append(changes, fmt.Sprintf("%s:%d@%d", at, d.Replicas, d.Start))
			cur = Scale{Replicas: d.Replicas, Start: d.Start, LastChange: t0.Add(at)}
		}
	}
	// Up to 5 within the 30 s averaging window once 450 arrives (3, 4, 5 as
	// the average climbs); no scale-down during the 1-minute dip; then down
	// one pod per 5-minute window from 22 min, the lowest (emptier) ordinal
	// first, to 2 pods (min) for 60 sessions.
	want := []string{"10m0s:3@0", "10m20s:4@0", "10m30s:5@0", "27m0s:4@1", "32m0s:3@2", "37m0s:2@3"}
	if !reflect.DeepEqual(changes, want) {
		t.Fatalf("scale changes %v, want %v", changes, want)
	}
}
