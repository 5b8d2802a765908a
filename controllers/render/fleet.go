package render

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Fleet renders the fleet section of a pool's pod configuration
// (docs/fleet.md): every SFU pod reaches pod n of the StatefulSet at
// <pool>-sfu-<n>.<pool>-sfu-internal.<namespace>.svc on the API port, and
// pods trust each other by token. The token is generated once per pool and
// kept by the caller (the pool's config Secret); an empty token renders no
// fleet, so pods run standalone.
func Fleet(p *v1alpha1.SFUPool, token string) *config.Fleet {
	if token == "" {
		return nil
	}
	return &config.Fleet{
		Token: token,
		PeerTemplate: SFUName(p) + "-{ordinal}." + InternalServiceName(p) + "." + namespace(p) + ".svc:" +
			strconv.Itoa(HTTPPort),
	}
}

// OrdinalRange is the ordinals of a StatefulSet with replicas pods from
// start: start, start+1, ..., start+replicas-1 (nil for no pods).
func OrdinalRange(start, replicas int32) []int {
	if replicas <= 0 {
		return nil
	}
	out := make([]int, 0, replicas)
	for o := start; o < start+replicas; o++ {
		out = append(out, int(o))
	}
	return out
}

// SetFleet puts the fleet section into a rendered configuration and
// recomputes Version. The section is applied live by the pods (it is not
// part of SFURestartHash): the ordinals change on every scale, and a scale
// must not roll the pods.
func SetFleet(p *config.Pod, f *config.Fleet) {
	p.Fleet = f
	p.Version = configVersion(*p)
}

// FleetTokenKey is the key of the token in the pool's fleet Secret.
const FleetTokenKey = "token"

// FleetSecret is the pool's fleet token Secret as the controller creates
// it, without data (the controller generates the token) and without the
// owner reference (set by the caller).
func FleetSecret(pool *v1alpha1.SFUPool) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(pool, FleetSecretName(pool), ""),
		Type:       corev1.SecretTypeOpaque,
	}
}
