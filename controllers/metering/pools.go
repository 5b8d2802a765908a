package metering

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/apply"
	"github.com/switchboard-rtc/switchboard/hub"
)

// applyPods writes the pods' reported load into a pool's status: the
// pool's live sessions, and per listed pod its sessions, tracks, egress
// rate and config version. The pod list and the drain state are the SFUPool
// controller's; a draining pod that stopped reporting keeps the load it
// last reported, which its DrainFinished Event tells.
func applyPods(st *v1alpha1.SFUPoolStatus, pods []hub.PodStatus) {
	by := make(map[string]hub.PodStatus, len(pods))
	var sessions int64
	for _, p := range pods {
		by[p.Pod] = p
		sessions += p.Sessions
	}
	st.Sessions = ptr.To(sessions)
	for i := range st.Pods {
		if p, ok := by[st.Pods[i].Name]; ok {
			pp := &st.Pods[i]
			if pp.Draining && (p.Stopped || p.Stale) {
				continue
			}
			pp.Sessions, pp.Tracks, pp.EgressBytesPerSecond = p.Sessions, p.Tracks, p.EgressBytesPerSecond
			if p.ConfigVersion != "" {
				pp.ConfigVersion = p.ConfigVersion
			}
		}
	}
}

// writePoolStatuses folds pod reports into SFUPool status, throttled like
// app status.
func (m *Metering) writePoolStatuses(ctx context.Context, force bool) {
	var pools v1alpha1.SFUPoolList
	if err := m.c.List(ctx, &pools); err != nil {
		m.log.Error(err, "list sfupools")
		return
	}
	for i := range pools.Items {
		pool := &pools.Items[i]
		key := "sfupool:" + pool.Namespace + "/" + pool.Name
		pods := m.Ledger.Pods(pool.Namespace + "/" + pool.Name)
		before := pool.DeepCopy()
		applyPods(&pool.Status, pods)
		if equality.Semantic.DeepEqual(before.Status, pool.Status) {
			continue // already as reported
		}
		fp := fmt.Sprintf("%d/%s", ptr.Deref(pool.Status.Sessions, 0), mustJSON(pool.Status.Pods))
		if due, _ := m.throttle.Due(key, fp); !due && !force {
			continue
		}
		// The optimistic lock keeps a stale cached pod list (the SFUPool
		// controller's) from being written back over a newer one; a
		// conflict is retried on the next tick.
		if conflict, err := apply.Status(ctx, m.c, pool, before); err != nil {
			if !conflict {
				m.log.Error(err, "write pool load", "sfupool", pool.Namespace+"/"+pool.Name)
			}
			continue
		}
		m.throttle.Written(key, fp)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
