package render

import (
	"slices"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// The TURN pods' IPs land in turn.relayIPs sorted and once each, so the
// same pods in any order render byte-identical config; a changed IP
// changes the version; pods reject nothing rendered.
func TestTURNRelayIPsRenderSortedDeduplicatedAndStable(t *testing.T) {
	pool := goldenPools(t)["turningress"]
	apps := sampleApps(t, pool.Namespace)
	a := PodConfig(pool, apps)
	SetTURNRelayIPs(&a, []string{"10.0.0.12", "10.0.0.3", "", "not-an-ip", "10.0.0.12"})
	b := PodConfig(pool, apps)
	SetTURNRelayIPs(&b, []string{"10.0.0.3", "10.0.0.12"})
	ja, _ := PodConfigJSON(a)
	jb, _ := PodConfigJSON(b)
	if string(ja) != string(jb) {
		t.Fatalf("pod order changed the rendered config:\n%s\n%s", ja, jb)
	}
	parsed, err := config.Parse(ja)
	if err != nil {
		t.Fatalf("pods reject the rendering: %v", err)
	}
	if want := []string{"10.0.0.12", "10.0.0.3"}; !slices.Equal(parsed.TURN.RelayIPs, want) {
		t.Fatalf("relayIPs %v, want %v", parsed.TURN.RelayIPs, want)
	}
	plain := PodConfig(pool, apps)
	if a.Version == plain.Version {
		t.Fatal("relay IPs did not change the config version")
	}
	c := PodConfig(pool, apps)
	SetTURNRelayIPs(&c, []string{"10.0.0.3", "10.0.0.13"})
	if c.Version == a.Version {
		t.Fatal("a changed TURN pod IP did not change the config version")
	}
	if SFURestartHash(a) != SFURestartHash(plain) || TURNRestartHash(a) != TURNRestartHash(plain) {
		t.Fatal("relay IPs restart pods; they are applied live")
	}

	pool.Spec.TURN.Enabled = ptr.To(false)
	off := PodConfig(pool, apps)
	SetTURNRelayIPs(&off, []string{"10.0.0.3"})
	if len(off.TURN.RelayIPs) != 0 {
		t.Fatalf("relayIPs %v rendered with TURN off", off.TURN.RelayIPs)
	}
}
