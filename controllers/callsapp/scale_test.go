package callsapp_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// BenchmarkThousandAppsReady measures the control-plane target of DESIGN 4:
// the time from creating 1,000 CallsApps on one pool (with one ready SFU
// pod) until every one is Ready=True, on envtest. Run with
// go test ./controllers/callsapp -run '^$' -bench ThousandApps -benchtime 1x.
func BenchmarkThousandAppsReady(b *testing.B) {
	const apps = 1000
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		ns := env.Namespace(b)
		env.StartManager(b, ns)
		if err := env.Client.Create(ctx, newPool(ns)); err != nil {
			b.Fatal(err)
		}
		readyPod(b, ns)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range apps {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := env.Client.Create(ctx, newApp(ns, fmt.Sprintf("app-%04d", i), "demo")); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		created := time.Since(start)
		for {
			var list v1alpha1.CallsAppList
			if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
				b.Fatal(err)
			}
			ready := 0
			for i := range list.Items {
				if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, v1alpha1.ReadyCondition) {
					ready++
				}
			}
			if ready == apps {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("%d of %d apps Ready after 10 minutes", ready, apps)
			}
			time.Sleep(250 * time.Millisecond)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-all-ready")
		b.ReportMetric(created.Seconds(), "s-to-create")
	}
}

// readyPod creates an SFU pod of pool "demo" and marks it Ready, as a
// kubelet would.
func readyPod(tb testing.TB, ns string) {
	tb.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-0", Namespace: ns, Labels: render.Labels(newPool(ns), "sfu")},
		Spec: corev1.PodSpec{
			ServiceAccountName:           "demo-switchboard",
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "sfu", Image: "switchboard"}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		tb.Fatal(err)
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.0.0.7", HostIP: "192.0.2.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		tb.Fatal(err)
	}
}
