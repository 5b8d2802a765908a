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
