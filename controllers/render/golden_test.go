package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenPools are the pools whose full rendering is pinned in testdata/.
func goldenPools(t *testing.T) map[string]*v1alpha1.SFUPool {
	t.Helper()
	sample := readSamplePool(t)
	sample.Namespace = "calls"

	host := sample.DeepCopy()
	host.Name = "edge"
	host.Spec.Replicas = nil
	host.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 3, MaxReplicas: 12}
	host.Spec.Media = v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureHostNetwork, UDPPort: 40000}
	host.Spec.DrainTimeout = &metav1.Duration{Duration: 10 * 60e9}
	host.Spec.API = v1alpha1.APISpec{ServiceType: corev1.ServiceTypeLoadBalancer, URL: "https://rtc.example.com"}
	host.Spec.Scheduling = v1alpha1.SchedulingSpec{
		NodeSelector: map[string]string{"switchboard.dev/media": "true"},
		Tolerations:  []corev1.Toleration{{Key: "media", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
	}
	host.Spec.TURN.Enabled = ptr.To(false)

	ingress := sample.DeepCopy()
	ingress.Name = "private"
	ingress.Spec.Media.Exposure = v1alpha1.ExposureTURNIngress
	ingress.Spec.TURN = v1alpha1.TURNSpec{
		Replicas:     ptr.To(int32(2)),
		ExternalHost: "turn.example.com",
		ServiceType:  corev1.ServiceTypeLoadBalancer,
		Realm:        "example.com",
		TLSSecretRef: &corev1.LocalObjectReference{Name: "turn-tls"},
		Listeners: []v1alpha1.TURNListener{
			{Name: "udp", Protocol: v1alpha1.TURNProtocolUDP, Port: 3478},
			{Name: "tls", Protocol: v1alpha1.TURNProtocolTLS, Port: 5349, ServicePort: 443},
		},
		AllowedPeerCIDRs: []string{"192.0.2.0/24"},
	}
	load := sample.DeepCopy()
	load.Name = "elastic"
	load.Spec.Replicas = nil
	load.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Mode: v1alpha1.AutoscalingLoad, MinReplicas: 2, MaxReplicas: 8,
		TargetSessionsPerPod: ptr.To(int64(200))}
	return map[string]*v1alpha1.SFUPool{"sample": sample, "hostnetwork": host, "turningress": ingress, "elastic": load}
}

// goldenScale is the StatefulSet scale the controller would apply for each
// golden pool: fixed replicas, the HPA's current count, or a load-driven
// pool that removed its lowest ordinals (3 pods from ordinal 2).
var goldenScale = map[string]struct{ replicas, start int32 }{
	"sample": {2, 0}, "hostnetwork": {3, 0}, "turningress": {2, 0}, "elastic": {3, 2},
}

// goldenFleetToken stands for the token the controller generates per pool.
const goldenFleetToken = "f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee"

func readSamplePool(t *testing.T) *v1alpha1.SFUPool {
	t.Helper()
	b, err := os.ReadFile("../../config/samples/calls_v1alpha1_sfupool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.SFUPool
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func sampleApps(t *testing.T, ns string) []PoolApp {
	app := readSampleApp(t)
	app.Namespace = ns
	other := app.DeepCopy()
	other.Name = "quiet-app"
	other.Spec.TURN.Enabled = ptr.To(false)
	other.Spec.RateLimit.AuthenticatedPerSecond = ptr.To(int32(200))
	otherCreds := AppCredentials{AppID: "00000000000000000000000000000001", AppSecret: testCreds.TURNKeyToken}
	pending := app.DeepCopy()
	pending.Name = "pending-app" // credentials not generated yet: left out
	return []PoolApp{{App: app, Credentials: testCreds}, {App: other, Credentials: otherCreds}, {App: pending}}
}

func TestGoldenPoolChildren(t *testing.T) {
	for name, pool := range goldenPools(t) {
		t.Run(name, func(t *testing.T) {
			pod := PodConfig(pool, sampleApps(t, pool.Namespace))
			scale := goldenScale[name]
			f := Fleet(pool, goldenFleetToken)
			f.Ordinals = OrdinalRange(scale.start, scale.replicas)
			SetFleet(&pod, f)
			children, err := Children(pool, pod)
			if err != nil {
				t.Fatal(err)
			}
			replicas := &scale.replicas
			if pool.Spec.Autoscaling == nil {
				replicas = nil // the rendering's own spec.replicas
			}
			SetSFUScale(children, replicas, scale.start)
			var buf bytes.Buffer
			for _, c := range children {
				if c.Object == nil {
					continue
				}
				u, err := ApplyForm(c.Object)
				if err != nil {
					t.Fatal(err)
				}
				b, err := yaml.Marshal(u.Object)
				if err != nil {
					t.Fatal(err)
				}
				buf.WriteString("---\n")
				buf.Write(b)
			}
			golden(t, filepath.Join("testdata", name+".children.yaml"), buf.Bytes())
			cfg, err := PodConfigJSON(pod)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, cfg, "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", name+".config.json"), pretty.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controllers/render -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the rendering (run go test ./controllers/render -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines, enough to see what moved.
func lineDiff(want, got string) string {
	w, g := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			return "line " + strconv.Itoa(i+1) + ":\n- " + string(wl) + "\n+ " + string(gl)
		}
	}
	return ""
}
