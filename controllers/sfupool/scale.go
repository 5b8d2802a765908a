package sfupool

import (
	"context"
	"strconv"
	"strings"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/autoscale"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// reconcileScale decides the SFU StatefulSet's scale: spec.replicas, the
// HorizontalPodAutoscaler's current count (mode CPU: applying the current
// value keeps the operator a co-owner of the field that never moves it;
// leaving it out would let the API server default it to 1 on the switch
// from fixed replicas), or the autoscale decision on reported load (mode
// Load). The first ordinal is kept as the StatefulSet has it, except that a
// load-driven scale-down may move it. It writes nothing.
func (r *Reconciler) reconcileScale(ctx context.Context, s *scope) error {
	cur := autoscale.Scale{Draining: draining(s)}
	if s.sts != nil {
		cur.Replicas = ptr.Deref(s.sts.Spec.Replicas, 1)
		if o := s.sts.Spec.Ordinals; o != nil {
			cur.Start = o.Start
		}
	}
	s.ordinalStart = cur.Start
	a := s.pool.Spec.Autoscaling
	switch {
	case a == nil:
		s.replicas = ptr.To(ptr.Deref(s.pool.Spec.Replicas, v1alpha1.DefaultSFUReplicas))
	case s.sts == nil:
		s.replicas = ptr.To(max(a.MinReplicas, 1))
	case !a.LoadDriven():
		s.replicas = ptr.To(cur.Replicas)
	default:
		if t := s.pool.Status.LastScaleTime; t != nil {
			cur.LastChange = t.Time
		}
		p := autoscale.PolicyOf(a)
		key := s.pool.Namespace + "/" + s.pool.Name
		samples := r.samples().Add(key, loadSample(s), r.loadInterval()/2, max(p.ScaleDownWindow, p.ScaleUpWindow)+2*r.loadInterval())
		if r.Reports == nil {
			// Without pod reports there is no load: only the bounds apply.
			samples = nil
		}
		d := autoscale.Decide(p, samples, cur, s.now)
		if d.Changed(cur) {
			s.scaled = &d
			log.FromContext(ctx).Info("scaling sfu pods", "sfupool", key, "from", cur.Replicas, "to", d.Replicas,
				"ordinalStart", d.Start, "removed", d.Removed, "reason", d.Reason)
		}
		s.replicas, s.ordinalStart = ptr.To(d.Replicas), d.Start
	}
	return nil
}

// loadSample is the pods' reported load now, by ordinal.
func loadSample(s *scope) autoscale.Sample {
	out := autoscale.Sample{At: s.now}
	prefix := render.SFUName(s.pool) + "-"
	for name, p := range s.reports {
		o, ok := ordinalOf(name, prefix)
		if !ok || p.Stale || p.Stopped {
			continue
		}
		out.Pods = append(out.Pods, autoscale.PodLoad{Ordinal: o, Sessions: p.Sessions, EgressBytesPerSecond: p.EgressBytesPerSecond})
	}
	return out
}

// ordinalOf reads the StatefulSet ordinal from a pod name <prefix><n>.
func ordinalOf(name, prefix string) (int32, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return int32(n), true
}

// draining reports whether any SFU pod of the pool is draining: being
// deleted, or saying so in its latest report.
func draining(s *scope) bool {
	for i := range s.pods {
		if !s.pods[i].DeletionTimestamp.IsZero() {
			return true
		}
	}
	for _, p := range s.reports {
		if p.Draining && !p.Stopped && !p.Stale {
			return true
		}
	}
	return false
}
