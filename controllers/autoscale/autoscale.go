package autoscale

import (
	"fmt"
	"sort"
	"time"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// Defaults of the windows (docs/operator.md, "Autoscaling").
const (
	// DefaultScaleUpWindow is how far back load is averaged for a scale-up.
	DefaultScaleUpWindow = 30 * time.Second
	// DefaultScaleDownWindow is how long load must ask for fewer pods before
	// one is removed (spec.autoscaling.scaleDownStabilization).
	DefaultScaleDownWindow = v1alpha1.DefaultScaleDownStabilization
)

// Policy is what the user asked for.
type Policy struct {
	// Min and Max bound the pod count.
	Min, Max int32
	// TargetSessions is the average live sessions per pod aimed for; 0: not used.
	TargetSessions int64
	// TargetEgress is the average egress per pod in bytes per second; 0: not used.
	TargetEgress int64
	// ScaleUpWindow is how far back load is averaged to scale up.
	ScaleUpWindow time.Duration
	// ScaleDownWindow is how long every recommendation must have been lower
	// than the current count before a pod is removed.
	ScaleDownWindow time.Duration
}

// PolicyOf reads the policy of a load-driven pool's spec.autoscaling,
// filling the documented defaults.
func PolicyOf(a *v1alpha1.AutoscalingSpec) Policy {
	p := Policy{Min: a.MinReplicas, Max: a.MaxReplicas, ScaleUpWindow: DefaultScaleUpWindow, ScaleDownWindow: DefaultScaleDownWindow}
	if p.Min < 1 {
		p.Min = v1alpha1.DefaultAutoscaleMin
	}
	if a.TargetSessionsPerPod != nil {
		p.TargetSessions = *a.TargetSessionsPerPod
	}
	if a.TargetEgressBytesPerSecondPerPod != nil {
		p.TargetEgress = *a.TargetEgressBytesPerSecondPerPod
	}
	if a.ScaleDownStabilization != nil {
		p.ScaleDownWindow = a.ScaleDownStabilization.Duration
	}
	return p
}

// PodLoad is one pod's load in one sample.
type PodLoad struct {
	// Ordinal is the pod's StatefulSet ordinal.
	Ordinal int32
	// Sessions is its live sessions.
	Sessions int64
	// EgressBytesPerSecond is its egress rate.
	EgressBytesPerSecond int64
}

// Sample is the load of the pool's pods at one time. Pods that did not
// report are absent and count as empty.
type Sample struct {
	At   time.Time
	Pods []PodLoad
}

func (s Sample) totals() (sessions, egress int64) {
	for _, p := range s.Pods {
		sessions += p.Sessions
		egress += p.EgressBytesPerSecond
	}
	return sessions, egress
}

func (s Sample) pod(ordinal int32) PodLoad {
	for _, p := range s.Pods {
		if p.Ordinal == ordinal {
			return p
		}
	}
	return PodLoad{Ordinal: ordinal}
}

// Scale is the pool's current StatefulSet scale and what constrains a change.
type Scale struct {
	// Replicas is the StatefulSet's pod count; Start its first ordinal
	// (spec.ordinals.start). The pods are Start .. Start+Replicas-1.
	Replicas, Start int32
	// Draining is set while any SFU pod of the pool is still draining.
	Draining bool
	// LastChange is when the pod count last changed (zero: unknown, long ago).
	LastChange time.Time
}

// Decision is what Decide wants.
type Decision struct {
	// Replicas and Start are the new scale (equal to the current one when
	// nothing changes).
	Replicas, Start int32
	// Removed are the ordinals that leave the range, lowest first.
	Removed []int32
	// Recommended is the pod count the latest load asks for, within Min and
	// Max (for status and events).
	Recommended int32
	// Reason says why, for the ScaledUp/ScaledDown Event.
	Reason string
}

// Changed reports whether the decision moves the scale.
func (d Decision) Changed(s Scale) bool { return d.Replicas != s.Replicas || d.Start != s.Start }

// recommend is the pod count that carries the given total load at the
// targets, within Min and Max. With both targets the larger count wins.
func (p Policy) recommend(sessions, egress float64) int32 {
	n := int32(0)
	if p.TargetSessions > 0 {
		n = max(n, ceilDiv(sessions, float64(p.TargetSessions)))
	}
	if p.TargetEgress > 0 {
		n = max(n, ceilDiv(egress, float64(p.TargetEgress)))
	}
	return p.clamp(n)
}

func (p Policy) clamp(n int32) int32 {
	return min(max(n, p.Min), max(p.Max, p.Min))
}

func ceilDiv(total, per float64) int32 {
	if total <= 0 {
		return 0
	}
	n := total / per
	c := int32(n)
	if float64(c) < n {
		c++
	}
	return c
}

// Decide is the scale a load-driven pool should have at now.
//
//   - Up at once: when the load averaged over the samples of the last
//     ScaleUpWindow asks for more pods than run, the count goes straight
//     there (at most Max). New pods take the next ordinals.
//   - Down slowly: one pod at a time, only when every sample of the last
//     ScaleDownWindow asked for fewer pods than run, the samples cover that
//     whole window, the count has not changed within it, and no pod is
//     draining. The emptier end of the ordinal range goes (the lowest
//     ordinal by moving Start, or the highest); on a tie the highest, as a
//     StatefulSet does by itself.
//   - Never below Min or above Max: a count outside them is brought back at
//     once (from the highest ordinals when above Max).
func Decide(p Policy, samples []Sample, cur Scale, now time.Time) Decision {
	samples = sorted(samples)
	d := Decision{Replicas: cur.Replicas, Start: cur.Start, Recommended: cur.Replicas}
	if len(samples) > 0 {
		s, e := samples[len(samples)-1].totals()
		d.Recommended = p.recommend(float64(s), float64(e))
	}

	switch {
	case cur.Replicas < p.Min:
		d.Replicas = p.Min
		d.Reason = fmt.Sprintf("below the minimum of %d pods", p.Min)
		return d
	case cur.Replicas > max(p.Max, p.Min):
		d.Replicas = max(p.Max, p.Min)
		for o := cur.Start + d.Replicas; o < cur.Start+cur.Replicas; o++ {
			d.Removed = append(d.Removed, o)
		}
		d.Reason = fmt.Sprintf("above the maximum of %d pods", d.Replicas)
		return d
	}

	// Scale up on the average over the short window.
	var n int
	var sumS, sumE float64
	for _, s := range samples {
		if s.At.After(now) || now.Sub(s.At) > p.ScaleUpWindow {
			continue
		}
		ts, te := s.totals()
		sumS, sumE, n = sumS+float64(ts), sumE+float64(te), n+1
	}
	if n > 0 {
		avgS, avgE := sumS/float64(n), sumE/float64(n)
		if want := p.recommend(avgS, avgE); want > cur.Replicas {
			d.Replicas = want
			d.Reason = fmt.Sprintf("average load over the last %s is %.0f sessions and %.0f B/s egress, %s",
				p.ScaleUpWindow, avgS, avgE, p.targets())
			return d
		}
	}

	// Scale down by one after a whole window of lower recommendations.
	if cur.Draining || cur.Replicas <= p.Min || len(samples) == 0 {
		return d
	}
	from := now.Add(-p.ScaleDownWindow)
	if !cur.LastChange.IsZero() && cur.LastChange.After(from) {
		return d
	}
	if samples[0].At.After(from) {
		return d // history does not cover the window yet (operator restart)
	}
	highest := int32(0)
	for i, s := range samples {
		if s.At.After(now) {
			continue
		}
		// The sample in force at the window's start counts too.
		if s.At.Before(from) && i+1 < len(samples) && !samples[i+1].At.After(from) {
			continue
		}
		ts, te := s.totals()
		highest = max(highest, p.recommend(float64(ts), float64(te)))
	}
	if highest >= cur.Replicas {
		return d
	}
	last := samples[len(samples)-1]
	low, high := last.pod(cur.Start), last.pod(cur.Start+cur.Replicas-1)
	d.Replicas = cur.Replicas - 1
	gone := high
	if emptier(low, high) {
		d.Start = cur.Start + 1
		gone = low
	}
	d.Removed = []int32{gone.Ordinal}
	d.Reason = fmt.Sprintf("load asked for at most %d pods for %s (%s); removing ordinal %d (%d sessions), the emptier end",
		highest, p.ScaleDownWindow, p.targets(), gone.Ordinal, gone.Sessions)
	return d
}

// emptier reports whether a has strictly less load than b: fewer sessions,
// or as many and less egress.
func emptier(a, b PodLoad) bool {
	if a.Sessions != b.Sessions {
		return a.Sessions < b.Sessions
	}
	return a.EgressBytesPerSecond < b.EgressBytesPerSecond
}

func (p Policy) targets() string {
	switch {
	case p.TargetSessions > 0 && p.TargetEgress > 0:
		return fmt.Sprintf("target %d sessions and %d B/s per pod", p.TargetSessions, p.TargetEgress)
	case p.TargetEgress > 0:
		return fmt.Sprintf("target %d B/s per pod", p.TargetEgress)
	default:
		return fmt.Sprintf("target %d sessions per pod", p.TargetSessions)
	}
}

func sorted(samples []Sample) []Sample {
	if sort.SliceIsSorted(samples, func(i, j int) bool { return samples[i].At.Before(samples[j].At) }) {
		return samples
	}
	out := append([]Sample(nil), samples...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
