package sfupool

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// Event reasons the pool controller records besides a Degraded
// condition's own reason, each once per transition.
const (
	EventRecovered     = "Recovered"
	EventReady         = "Ready"
	EventDrainStarted  = "DrainStarted"
	EventDrainFinished = "DrainFinished"
	EventScaledUp      = "ScaledUp"
	EventScaledDown    = "ScaledDown"
)

// recordTransitions records an Event for each condition whose status
// changed between the written status (before) and the new one (after), and
// for each SFU pod whose drain started or finished. Called only once the
// new status is stored, so a failed write, retried, does not record twice,
// and a restarted operator, which reads the stored status, does not record
// again. A nil Recorder records nothing.
func (r *Reconciler) recordTransitions(before, after *v1alpha1.SFUPool, s *scope) {
	if r.Recorder == nil {
		return
	}
	oldD := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.DegradedCondition)
	newD := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.DegradedCondition)
	switch {
	case isTrue(newD) && !isTrue(oldD):
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, newD.Reason, "Reconcile", "%s", newD.Message)
	case isTrue(oldD) && newD != nil && newD.Status == metav1.ConditionFalse:
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventRecovered, "Reconcile", "no longer degraded (was %s): %s", oldD.Reason, newD.Message)
	}
	oldR := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ReadyCondition)
	newR := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.ReadyCondition)
	if isTrue(newR) && !isTrue(oldR) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventReady, "Reconcile", "%s", newR.Message)
	}
	r.recordDrains(before, after, s)
}

// recordDrains records DrainStarted for each pod listed as draining now and
// not before, with the sessions of the report that said it drains, and
// DrainFinished for each pod listed as draining before that is gone or no
// longer draining (a pod of the same name started afresh). The sessions
// left are those of the pod's final report when it sent one for this
// drain (0 when they all ended), else the last it reported. The drain hit
// its timeout when the deadline had passed by the time the end was seen.
func (r *Reconciler) recordDrains(before, after *v1alpha1.SFUPool, s *scope) {
	was := map[string]v1alpha1.PoolPod{}
	for _, p := range before.Status.Pods {
		if p.Draining {
			was[p.Name] = p
		}
	}
	for _, p := range after.Status.Pods {
		if !p.Draining {
			continue
		}
		if _, ok := was[p.Name]; ok {
			delete(was, p.Name)
			continue
		}
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventDrainStarted, "Drain",
			"pod %s started draining with %d sessions; it takes no new ones and stops by %s", p.Name, p.Sessions, deadline(p))
	}
	for _, p := range before.Status.Pods {
		if _, ok := was[p.Name]; !ok {
			continue
		}
		left := p.Sessions
		if f, ok := finalOf(s, p.Name, p.DrainDeadline); ok {
			left = f.Sessions
		}
		timedOut := p.DrainDeadline != nil && !s.now.Before(p.DrainDeadline.Time)
		how := "its sessions ended before the drain timeout"
		eventType := corev1.EventTypeNormal
		if timedOut {
			how = "the drain timeout was reached"
			if left > 0 {
				eventType = corev1.EventTypeWarning
			}
		}
		r.Recorder.Eventf(after, nil, eventType, EventDrainFinished, "Drain",
			"pod %s finished draining with %d sessions left (last reported): %s", p.Name, left, how)
	}
}

func deadline(p v1alpha1.PoolPod) string {
	if p.DrainDeadline == nil {
		return "its drain timeout"
	}
	return p.DrainDeadline.UTC().Format(time.RFC3339)
}

// recordScale records ScaledUp or ScaledDown once a load-driven scale was
// written to the StatefulSet. The next decision reads the StatefulSet past
// the cache, so the same change is not decided (nor recorded) twice.
func (r *Reconciler) recordScale(s *scope) {
	d := s.scaled
	if r.Recorder == nil || d == nil || s.scaledAt == nil {
		return
	}
	from := desiredBefore(s)
	reason, verb := EventScaledUp, "up"
	if d.Replicas < from {
		reason, verb = EventScaledDown, "down"
	}
	removed := ""
	if len(d.Removed) > 0 {
		removed = fmt.Sprintf("; pods leaving: %v", d.Removed)
	}
	r.Recorder.Eventf(s.pool, nil, corev1.EventTypeNormal, reason, "Scale",
		"scaled %s from %d to %d SFU pods (ordinals %d-%d): %s%s", verb, from, d.Replicas, d.Start, d.Start+d.Replicas-1, d.Reason, removed)
}

func desiredBefore(s *scope) int32 {
	if s.sts != nil && s.sts.Spec.Replicas != nil {
		return *s.sts.Spec.Replicas
	}
	return 0
}

func isTrue(c *metav1.Condition) bool { return c != nil && c.Status == metav1.ConditionTrue }
