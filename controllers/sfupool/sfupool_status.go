package sfupool

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
)

// setStatus fills the status the pool controller owns from the scope.
// Sessions and the per-pod load come from pod reports (the fleet hub) and
// are kept as they are. ok says whether every phase succeeded.
func setStatus(s *scope, ok bool) {
	p := s.pool
	st := &p.Status
	st.Endpoint = render.Endpoint(p)
	st.TURNURLs = render.TURNURLs(p)
	if s.podConfig.Version != "" {
		st.ConfigVersion = s.podConfig.Version
		st.Apps = int32(len(s.podConfig.Apps))
	}
	desired := desiredReplicas(s)
	ready, draining, pods := podStatus(s, st.Pods)
	st.DesiredReplicas, st.ReadyReplicas, st.DrainingReplicas, st.Pods = &desired, &ready, draining, pods
	st.OrdinalStart = s.ordinalStart
	if s.scaledAt != nil {
		st.LastScaleTime = s.scaledAt
	}
	if st.Sessions == nil {
		// Pod reports (the fleet hub) fill it; show 0 until then.
		st.Sessions = ptr.To(int64(0))
	}

	setReadyCondition(s)
	setProgressingCondition(s)
	setDegradedCondition(s)
	if ok {
		st.ObservedGeneration = p.Generation
	}
}

func desiredReplicas(s *scope) int32 {
	if s.replicas != nil {
		return *s.replicas
	}
	if s.sts != nil && s.sts.Spec.Replicas != nil {
		return *s.sts.Spec.Replicas
	}
	if a := s.pool.Spec.Autoscaling; a != nil {
		return a.MinReplicas
	}
	return ptr.Deref(s.pool.Spec.Replicas, v1alpha1.DefaultSFUReplicas)
}

// podStatus lists the SFU pods with their load and drain state. A pod
// that reports drains from the report that says so (sent at once on
// SIGTERM), so the status, and the DrainStarted Event, show the sessions
// that report counted rather than those of an earlier one; a pod without a
// live report (none yet, stale, or stopped) drains from its deletion. A
// draining pod's load comes from its latest report, or once it stopped
// from its final report (0 sessions when they all ended); other pods keep
// the load in status. Its deadline is the one it reported, else the end
// of its grace period less the margin the operator adds to the drain
// timeout.
func podStatus(s *scope, old []v1alpha1.PoolPod) (ready, draining int32, pods []v1alpha1.PoolPod) {
	prev := make(map[string]v1alpha1.PoolPod, len(old))
	for _, p := range old {
		prev[p.Name] = p
	}
	hostNet := s.pool.Spec.Media.Exposure == v1alpha1.ExposureHostNetwork
	for i := range s.pods {
		pod := &s.pods[i]
		rep, hasRep := s.reports[pod.Name]
		live := hasRep && !rep.Stale && !rep.Stopped
		deleting := !pod.DeletionTimestamp.IsZero()
		pp := v1alpha1.PoolPod{
			Name:     pod.Name,
			PodIP:    pod.Status.PodIP,
			Draining: (live && rep.Draining) || (deleting && !live),
		}
		pp.Ready = !deleting && !pp.Draining && podReady(pod)
		pp.MediaAddress = pod.Status.PodIP
		if hostNet {
			pp.MediaAddress = pod.Status.HostIP
		}
		o, hadPrev := prev[pod.Name]
		var oldDeadline *metav1.Time
		if hadPrev && o.Draining {
			oldDeadline = o.DrainDeadline
		}
		final, hasFinal := finalOf(s, pod.Name, oldDeadline)
		// The load of a draining pod (its remaining sessions) comes
		// straight from its reports; other pods' load is written by the
		// hub's throttled status writer (controllers/metering), so periodic
		// reconciles of load-driven pools do not rewrite status each time.
		switch {
		case live && pp.Draining:
			pp.Sessions, pp.Tracks, pp.EgressBytesPerSecond = rep.Sessions, rep.Tracks, rep.EgressBytesPerSecond
			pp.ConfigVersion = rep.ConfigVersion
		case pp.Draining && hasRep && rep.Stopped && hasFinal:
			pp.Sessions, pp.Tracks, pp.EgressBytesPerSecond = final.Sessions, 0, 0
			pp.ConfigVersion = final.ConfigVersion
		case hadPrev:
			pp.Sessions, pp.Tracks, pp.EgressBytesPerSecond = o.Sessions, o.Tracks, o.EgressBytesPerSecond
		}
		if pp.ConfigVersion == "" && hadPrev {
			pp.ConfigVersion = o.ConfigVersion
		}
		if pp.Draining {
			switch {
			case hasRep && rep.DrainDeadline != nil:
				pp.DrainDeadline = &metav1.Time{Time: rep.DrainDeadline.UTC().Truncate(time.Second)}
			case hadPrev && o.DrainDeadline != nil:
				pp.DrainDeadline = o.DrainDeadline
			case pod.DeletionTimestamp != nil:
				pp.DrainDeadline = &metav1.Time{Time: pod.DeletionTimestamp.Add(-render.DrainMargin)}
			}
		}
		if pp.Ready {
			ready++
		}
		if pp.Draining {
			draining++
		}
		pods = append(pods, pp)
	}
	return ready, draining, pods
}

// finalOf returns the final report of pod that ended the drain with
// deadline (nil: not known): one that said draining, and, when both
// deadlines are known, with the same deadline, so the final report of an
// earlier boot's drain is not taken for this one's.
func finalOf(s *scope, pod string, deadline *metav1.Time) (hub.PodStatus, bool) {
	f, ok := s.finals[pod]
	if !ok || !f.Draining {
		return hub.PodStatus{}, false
	}
	if deadline != nil && f.DrainDeadline != nil && !f.DrainDeadline.UTC().Truncate(time.Second).Equal(deadline.Time) {
		return hub.PodStatus{}, false
	}
	return f, true
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func setReadyCondition(s *scope) {
	desired, ready := ptr.Deref(s.pool.Status.DesiredReplicas, 0), ptr.Deref(s.pool.Status.ReadyReplicas, 0)
	c := metav1.Condition{Type: v1alpha1.ReadyCondition, ObservedGeneration: s.pool.Generation}
	switch {
	case desired == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonScaledToZero, "the pool has no SFU pods by request"
	case ready >= desired:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonPodsReady
		c.Message = fmt.Sprintf("%d of %d SFU pods ready", ready, desired)
	default:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonPodsNotReady
		c.Message = fmt.Sprintf("%d of %d SFU pods ready", ready, desired)
	}
	meta.SetStatusCondition(&s.pool.Status.Conditions, c)
}

func setProgressingCondition(s *scope) {
	desired, ready := ptr.Deref(s.pool.Status.DesiredReplicas, 0), ptr.Deref(s.pool.Status.ReadyReplicas, 0)
	c := metav1.Condition{Type: v1alpha1.ProgressingCondition, ObservedGeneration: s.pool.Generation}
	sts := s.sts
	switch {
	case sts == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonRollingOut, "the SFU StatefulSet is being created"
	case sts.Status.ObservedGeneration < sts.Generation,
		sts.Status.UpdateRevision != sts.Status.CurrentRevision,
		sts.Status.UpdatedReplicas < desired,
		ready < desired:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonRollingOut
		c.Message = fmt.Sprintf("%d of %d SFU pods updated, %d ready", sts.Status.UpdatedReplicas, desired, ready)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonRolledOut, "every SFU pod runs the current template"
	}
	meta.SetStatusCondition(&s.pool.Status.Conditions, c)
}

func setDegradedCondition(s *scope) {
	c := metav1.Condition{Type: v1alpha1.DegradedCondition, ObservedGeneration: s.pool.Generation}
	switch {
	case s.applyErr != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonApplyFailed, s.applyErr.Error()
	case s.tlsSecretMissing != "":
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonTLSSecretNotFound
		c.Message = fmt.Sprintf("spec.turn.tlsSecretRef names Secret %q, which does not exist", s.tlsSecretMissing)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "all children are up to date"
	}
	meta.SetStatusCondition(&s.pool.Status.Conditions, c)
}
