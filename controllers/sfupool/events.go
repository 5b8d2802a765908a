package sfupool

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// Event reasons the pool controller records besides a Degraded
// condition's own reason, each once per transition.
const (
	EventRecovered = "Recovered"
	EventReady     = "Ready"
)

// recordTransitions records an Event for each condition whose status
// changed between the written status (before) and the new one (after).
// Called only once the new status is stored, so a failed write, retried,
// does not record twice. A nil Recorder records nothing.
func (r *Reconciler) recordTransitions(before, after *v1alpha1.SFUPool) {
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
}

func isTrue(c *metav1.Condition) bool { return c != nil && c.Status == metav1.ConditionTrue }
