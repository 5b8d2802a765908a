package render

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
)

func TestFleetPeerAddressesFollowTheStatefulSetDNSNames(t *testing.T) {
	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "calls"}}
	if Fleet(pool, "") != nil {
		t.Fatal("no token must render no fleet")
	}
	f := Fleet(pool, "0123456789abcdef0123456789abcdef")
	m := fleet.NewMembers(0, f)
	addr, err := m.Address(2)
	if err != nil || addr != "demo-sfu-2.demo-sfu-internal.calls.svc:8080" {
		t.Fatalf("pod 2 at %q (%v)", addr, err)
	}
	if n, err := fleet.OrdinalFromPodName(SFUName(pool) + "-2"); err != nil || n != 2 {
		t.Fatalf("ordinal of the StatefulSet's pod 2: %d %v", n, err)
	}
}

func TestScalingChangesFleetOrdinalsWithoutRollingPods(t *testing.T) {
	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "calls"}}
	if got := OrdinalRange(2, 3); len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Fatalf("ordinals of 3 pods from 2: %v", got)
	}
	if OrdinalRange(0, 0) != nil {
		t.Fatal("no pods must render no ordinals")
	}
	render := func(start, replicas int32) (version, restart string, ordinals []int) {
		cfg := PodConfig(pool, nil)
		f := Fleet(pool, "0123456789abcdef0123456789abcdef")
		f.Ordinals = OrdinalRange(start, replicas)
		SetFleet(&cfg, f)
		return cfg.Version, SFURestartHash(cfg), cfg.Fleet.Ordinals
	}
	v2, r2, _ := render(0, 2)
	v3, r3, o3 := render(0, 3)
	v3s, r3s, _ := render(1, 3)
	if v2 == v3 || v3 == v3s {
		t.Fatal("a new ordinal range must give a new config version, so pods pick it up")
	}
	if r2 != r3 || r3 != r3s {
		t.Fatal("a new ordinal range changed the restart hash: every scale would roll the pods")
	}
	if len(o3) != 3 || o3[2] != 2 {
		t.Fatalf("rendered ordinals %v", o3)
	}
}
