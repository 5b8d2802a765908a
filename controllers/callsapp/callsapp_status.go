package callsapp

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// setStatus fills the status the app controller owns. Live load, usage and
// rate counters come from pod reports and are kept as they are. ok says
// whether every phase succeeded.
func setStatus(s *scope, ok bool) {
	app := s.app
	st := &app.Status
	if s.creds.AppID != "" {
		st.AppID = s.creds.AppID
		st.CredentialsSecretName = render.CredentialsSecretName(app)
	}
	if s.rotation != "" {
		st.SecretRotation = s.rotation
		if s.rotatedNow || st.SecretRotatedAt == nil {
			st.SecretRotatedAt = &s.now
		}
	}
	st.TURNKeyID = ""
	if app.Spec.TURNEnabled() && s.creds.HasTURNKey() {
		st.TURNKeyID = s.creds.TURNKeyID
	}
	st.Endpoint = ""
	if s.pool != nil && st.AppID != "" {
		st.Endpoint = render.AppEndpoint(s.pool, st.AppID)
	}
	if st.Live == nil {
		// Pod reports fill it; show 0 until then.
		st.Live = &v1alpha1.LiveStatus{}
	}
	if st.Rate == nil {
		st.Rate = &v1alpha1.RateStatus{}
	}
	st.Rate.LimitPerSecond = ptr.Deref(app.Spec.RateLimit.AuthenticatedPerSecond, config.DefaultAuthenticatedPerSecond)

	setReadyCondition(s)
	setQuotaExceededCondition(s)
	if ok {
		st.ObservedGeneration = app.Generation
	}
}

// setReadyCondition is the chain of reasons an app is not served, first
// match wins.
func setReadyCondition(s *scope) {
	app := s.app
	c := metav1.Condition{Type: v1alpha1.ReadyCondition, ObservedGeneration: app.Generation, Status: metav1.ConditionFalse}
	switch {
	case s.credsErr != nil:
		c.Reason, c.Message = v1alpha1.ReasonCredentialsFailed, s.credsErr.Error()
	case s.creds.AppID == "":
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, v1alpha1.ReasonReconciling, "credentials are being generated"
	case s.pool == nil:
		c.Reason = v1alpha1.ReasonPoolNotFound
		c.Message = fmt.Sprintf("spec.poolRef names SFUPool %q, which does not exist in namespace %s", app.Spec.PoolRef.Name, app.Namespace)
	case !s.rendered:
		c.Reason = v1alpha1.ReasonConfigPending
		c.Message = fmt.Sprintf("SFUPool %q has not rendered the app into its configuration yet", s.pool.Name)
	case ptr.Deref(s.pool.Status.ReadyReplicas, 0) == 0:
		c.Reason = v1alpha1.ReasonPoolNotReady
		c.Message = fmt.Sprintf("SFUPool %q has no ready SFU pod", s.pool.Name)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonServing
		c.Message = fmt.Sprintf("served by SFUPool %q (%d SFU pods ready)", s.pool.Name, ptr.Deref(s.pool.Status.ReadyReplicas, 0))
	}
	meta.SetStatusCondition(&app.Status.Conditions, c)
}

func setQuotaExceededCondition(s *scope) {
	app := s.app
	c := metav1.Condition{Type: v1alpha1.QuotaExceededCondition, ObservedGeneration: app.Generation,
		Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected}
	limit := app.Spec.Billing.MonthlyEgressCapGB
	u := app.Status.Usage
	switch {
	case limit == nil:
		c.Message = "no monthly egress cap"
	case u != nil && u.EgressBytes >= *limit*1_000_000_000:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonEgressCapReached
		c.Message = fmt.Sprintf("egress in %s reached the cap of %d GB; new sessions are refused", u.Month, *limit)
	default:
		c.Message = fmt.Sprintf("egress below the cap of %d GB", *limit)
	}
	meta.SetStatusCondition(&app.Status.Conditions, c)
}
