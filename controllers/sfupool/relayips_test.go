package sfupool_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// relayIPs reads turn.relayIPs from the rendered config Secret.
func relayIPs(ctx context.Context, ns string) ([]string, string, error) {
	var cfg corev1.Secret
	if err := get(ctx, ns, "demo-config", &cfg); err != nil {
		return nil, "", err
	}
	parsed, err := config.Parse(cfg.Data[config.FileName])
	if err != nil {
		return nil, "", fmt.Errorf("pods would reject the config: %w", err)
	}
	return parsed.TURN.RelayIPs, cfg.ResourceVersion, nil
}

// The operator renders the IPs of the pool's TURN pods into turn.relayIPs,
// sorted, so SFU pods leave relayed traffic to TURN (counted once); an
// unrelated pod event writes nothing, and a TURN pod that goes away leaves
// the list.
func TestTURNPodIPsAreRenderedAsRelayIPs(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	if err := env.Client.Create(ctx, newPool(ns)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "config rendered without relay IPs", func() error {
		ips, _, err := relayIPs(ctx, ns)
		if err == nil && len(ips) != 0 {
			return fmt.Errorf("relayIPs %v before any TURN pod", ips)
		}
		return err
	})
	for i, ip := range []string{"10.0.1.9", "10.0.1.10"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("demo-turn-%d", i), Namespace: ns,
				Labels: map[string]string{
					v1alpha1.LabelName: "switchboard", v1alpha1.LabelPool: "demo", v1alpha1.LabelComponent: "turn",
					v1alpha1.LabelManagedBy: v1alpha1.ManagedBy,
				},
			},
			Spec: corev1.PodSpec{
				ServiceAccountName: "demo-switchboard", AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "turn", Image: "switchboard"}},
			},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
		if err := env.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10.0.1.10", "10.0.1.9"}
	var rv string
	testenv.Eventually(t, "both TURN pod IPs in relayIPs", func() error {
		ips, v, err := relayIPs(ctx, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(ips, want) {
			return fmt.Errorf("relayIPs %v, want %v", ips, want)
		}
		rv = v
		return nil
	})

	// A pod event that changes no IP enqueues the pool but writes nothing.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-turn-0", Namespace: ns}}
	env.Update(t, p, func() { p.Annotations = map[string]string{"test": "touch"} })
	time.Sleep(2 * time.Second)
	if _, v, err := relayIPs(ctx, ns); err != nil || v != rv {
		t.Fatalf("config Secret rewritten (resourceVersion %s -> %s, err %v) with unchanged TURN pod IPs", rv, v, err)
	}

	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-turn-1", Namespace: ns}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the deleted TURN pod's IP leaves relayIPs", func() error {
		ips, _, err := relayIPs(ctx, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(ips, []string{"10.0.1.9"}) {
			return fmt.Errorf("relayIPs %v", ips)
		}
		return nil
	})
}
