package sfupool_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/sfupool"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

func stsScale(ctx context.Context, ns string) (replicas, start int32, err error) {
	var sts appsv1.StatefulSet
	if err := get(ctx, ns, "demo-sfu", &sts); err != nil {
		return 0, 0, err
	}
	if sts.Spec.Ordinals != nil {
		start = sts.Spec.Ordinals.Start
	}
	return ptr.Deref(sts.Spec.Replicas, -1), start, nil
}

// A load-driven pool follows the load its pods report: more sessions than
// the target scale it up at once; after a quiet stabilization window it
// removes one pod, the emptier end of the ordinal range (here the lowest,
// by moving spec.ordinals.start), and the rendered ordinals follow. No
// HorizontalPodAutoscaler is made, and each change is one Event.
func TestLoadDrivenPoolScalesOnReportedSessions(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	pods := newFakePods(t, ns)
	// Two pods already carry 30 sessions: 3 pods at 10 per pod.
	pods.report("demo-sfu-0", 15)
	pods.report("demo-sfu-1", 15)
	startManager(t, ns, controllers.Options{Reports: pods.ledger, LoadInterval: 300 * time.Millisecond})
	pool := &v1alpha1.SFUPool{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: v1alpha1.SFUPoolSpec{Autoscaling: &v1alpha1.AutoscalingSpec{
			Mode: v1alpha1.AutoscalingLoad, MinReplicas: 2, MaxReplicas: 4,
			TargetSessionsPerPod:   ptr.To(int64(10)),
			ScaleDownStabilization: &metav1.Duration{Duration: 3 * time.Second},
		}},
	}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "scaled up to 3 pods, ordinals 0-2 rendered", func() error {
		n, start, err := stsScale(ctx, ns)
		if err != nil {
			return err
		}
		if n != 3 || start != 0 {
			return fmt.Errorf("statefulset %d pods from %d", n, start)
		}
		cfg, err := renderedConfig(ctx, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(cfg.Fleet.Ordinals, []int{0, 1, 2}) {
			return fmt.Errorf("rendered ordinals %v", cfg.Fleet.Ordinals)
		}
		return nil
	})
	up := waitPoolEvent(t, ns, "demo", "Normal", sfupool.EventScaledUp)
	if !strings.Contains(up.Note, "scaled up from 2 to 3 SFU pods") || !strings.Contains(up.Note, "target 10 sessions per pod") {
		t.Fatalf("ScaledUp note %q", up.Note)
	}
	if err := get(ctx, ns, "demo-sfu", &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a load-driven pool has a HorizontalPodAutoscaler (%v)", err)
	}
	hash, err := restartHash(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}

	// Load falls to 9 sessions, fewest on pod 0: after 3 s of it, one step
	// down, removing ordinal 0 (the emptier end), not 2.
	pods.report("demo-sfu-0", 1)
	pods.report("demo-sfu-1", 5)
	pods.report("demo-sfu-2", 3)
	changed := time.Now()
	testenv.Eventually(t, "scaled down to pods 1-2", func() error {
		n, start, err := stsScale(ctx, ns)
		if err != nil {
			return err
		}
		if n != 2 || start != 1 {
			return fmt.Errorf("statefulset %d pods from %d", n, start)
		}
		cfg, err := renderedConfig(ctx, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(cfg.Fleet.Ordinals, []int{1, 2}) {
			return fmt.Errorf("rendered ordinals %v", cfg.Fleet.Ordinals)
		}
		return nil
	})
	if waited := time.Since(changed); waited < 3*time.Second {
		t.Fatalf("scaled down %s after the load fell, inside the 3 s stabilization window", waited)
	}
	down := waitPoolEvent(t, ns, "demo", "Normal", sfupool.EventScaledDown)
	if !strings.Contains(down.Note, "scaled down from 3 to 2 SFU pods (ordinals 1-2)") || !strings.Contains(down.Note, "removing ordinal 0 (1 sessions)") {
		t.Fatalf("ScaledDown note %q", down.Note)
	}
	var p v1alpha1.SFUPool
	if err := get(ctx, ns, "demo", &p); err != nil {
		t.Fatal(err)
	}
	if h, err := restartHash(ctx, ns); err != nil || h != hash {
		t.Fatalf("restart hash %q -> %q (%v): scaling rolled the pods", hash, h, err)
	}

	// At the minimum nothing more goes, and each change was one Event.
	time.Sleep(4 * time.Second)
	if n, start, err := stsScale(ctx, ns); err != nil || n != 2 || start != 1 {
		t.Fatalf("statefulset %d pods from %d (%v), want to stay at the minimum", n, start, err)
	}
	testenv.Eventually(t, "status shows the ordinal start and the scale time", func() error {
		if err := get(ctx, ns, "demo", &p); err != nil {
			return err
		}
		if p.Status.OrdinalStart != 1 || p.Status.LastScaleTime == nil || ptr.Deref(p.Status.DesiredReplicas, 0) != 2 {
			return fmt.Errorf("status ordinalStart %d lastScaleTime %v desired %v", p.Status.OrdinalStart, p.Status.LastScaleTime, p.Status.DesiredReplicas)
		}
		return nil
	})
	for reason, want := range map[string]int{sfupool.EventScaledUp: 1, sfupool.EventScaledDown: 1} {
		evs, err := poolEvents(ctx, ns, reason)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			n += recorded(e)
		}
		if n != want {
			t.Errorf("%d %s Events, want %d", n, reason, want)
		}
	}
}

// A draining pod holds off the next scale-down.
func TestLoadDrivenPoolDoesNotScaleDownWhileAPodDrains(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	pods := newFakePods(t, ns)
	pods.report("demo-sfu-0", 0)
	pods.report("demo-sfu-1", 0)
	pods.report("demo-sfu-2", 0, func(r *usage.Report) { r.Draining = true })
	startManager(t, ns, controllers.Options{Reports: pods.ledger, LoadInterval: 300 * time.Millisecond})
	pool := &v1alpha1.SFUPool{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: v1alpha1.SFUPoolSpec{Autoscaling: &v1alpha1.AutoscalingSpec{
			Mode: v1alpha1.AutoscalingLoad, MinReplicas: 1, MaxReplicas: 4,
			TargetSessionsPerPod:   ptr.To(int64(10)),
			ScaleDownStabilization: &metav1.Duration{Duration: time.Second},
		}},
	}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "statefulset at the minimum of 1", func() error {
		n, _, err := stsScale(ctx, ns)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	// Raising the minimum to 2 scales up at once, even while pod 2 (left
	// from an earlier scale) still drains; lowering it back to 1 makes a
	// scale-down due, which must wait until that drain has ended.
	env.Update(t, pool, func() { pool.Spec.Autoscaling.MinReplicas = 2 })
	testenv.Eventually(t, "statefulset at the new minimum of 2", func() error {
		n, _, err := stsScale(ctx, ns)
		if err != nil {
			return err
		}
		if n != 2 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	env.Update(t, pool, func() { pool.Spec.Autoscaling.MinReplicas = 1 })
	time.Sleep(3 * time.Second)
	if n, _, err := stsScale(ctx, ns); err != nil || n != 2 {
		t.Fatalf("%d pods (%v): scaled down while pod 2 drains", n, err)
	}
	pods.report("demo-sfu-2", 0, func(r *usage.Report) { r.Final = true })
	testenv.Eventually(t, "scaled down once the drain ended", func() error {
		n, _, err := stsScale(ctx, ns)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}
