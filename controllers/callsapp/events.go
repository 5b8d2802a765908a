package callsapp

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// Event reasons the app controller records, each once per transition.
const (
	EventCredentialsCreated = "CredentialsCreated"
	EventSecretRotated      = "SecretRotated"
	EventQuotaExceeded      = "QuotaExceeded"
	EventQuotaRestored      = "QuotaRestored"
	EventPoolNotFound       = v1alpha1.ReasonPoolNotFound
)

// event records one Event about the app; a nil Recorder records nothing.
func (r *Reconciler) event(app *v1alpha1.CallsApp, eventType, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(app, nil, eventType, reason, action, note, args...)
}

// recordTransitions records an Event for each condition whose status
// changed between the written status (before) and the new one (after).
// Called only once the new status is stored, so a failed write, retried,
// does not record twice.
func (r *Reconciler) recordTransitions(before, after *v1alpha1.CallsApp) {
	oldQ := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.QuotaExceededCondition)
	newQ := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.QuotaExceededCondition)
	switch {
	case isTrue(newQ) && !isTrue(oldQ):
		var used int64
		month := ""
		if u := after.Status.Usage; u != nil {
			used, month = u.EgressBytes, u.Month
		}
		var capGB int64
		if c := after.Spec.Billing.MonthlyEgressCapGB; c != nil {
			capGB = *c
		}
		r.event(after, corev1.EventTypeWarning, EventQuotaExceeded, "CheckQuota",
			"egress in %s is %s, at or over the monthly cap of %d GB; new sessions are refused", month, gigabytes(used), capGB)
	case isTrue(oldQ) && newQ != nil && newQ.Status == metav1.ConditionFalse:
		r.event(after, corev1.EventTypeNormal, EventQuotaRestored, "CheckQuota", "%s", newQ.Message)
	}

	oldR := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ReadyCondition)
	newR := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.ReadyCondition)
	if newR != nil && newR.Reason == v1alpha1.ReasonPoolNotFound && (oldR == nil || oldR.Reason != v1alpha1.ReasonPoolNotFound) {
		r.event(after, corev1.EventTypeWarning, EventPoolNotFound, "FindPool", "%s", newR.Message)
	}
}

func isTrue(c *metav1.Condition) bool { return c != nil && c.Status == metav1.ConditionTrue }

// gigabytes shows a byte count in GB with two decimals.
func gigabytes(b int64) string { return fmt.Sprintf("%.2f GB", float64(b)/1e9) }
