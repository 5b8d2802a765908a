package render

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

func podTemplates(t *testing.T, pool *v1alpha1.SFUPool) map[string]corev1.PodSpec {
	t.Helper()
	pod := PodConfig(pool, nil)
	out := map[string]corev1.PodSpec{"sfu": SFUStatefulSet(pool, SFURestartHash(pod)).Spec.Template.Spec}
	if d := TURNDeployment(pool, TURNRestartHash(pod)); d != nil {
		out["turn"] = d.Spec.Template.Spec
	}
	return out
}

func TestPodsRunRestrictedExceptHostNetworkSFU(t *testing.T) {
	for name, pool := range goldenPools(t) {
		for component, spec := range podTemplates(t, pool) {
			wantHost := pool.Spec.Media.Exposure == v1alpha1.ExposureHostNetwork && component == "sfu"
			if spec.HostNetwork != wantHost {
				t.Errorf("%s/%s: hostNetwork=%v", name, component, spec.HostNetwork)
			}
			ps := spec.SecurityContext
			if !ptr.Deref(ps.RunAsNonRoot, false) || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s/%s: pod security context %+v", name, component, ps)
			}
			if ptr.Deref(spec.AutomountServiceAccountToken, true) {
				t.Errorf("%s/%s: service account token mounted", name, component)
			}
			for _, c := range spec.Containers {
				sc := c.SecurityContext
				if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
					!ptr.Deref(sc.RunAsNonRoot, false) || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
					len(sc.Capabilities.Add) != 0 || sc.Privileged != nil {
					t.Errorf("%s/%s: container security context is not restricted: %+v", name, component, sc)
				}
				if c.LivenessProbe.HTTPGet.Path != "/health" || c.ReadinessProbe.HTTPGet.Path != "/ready" ||
					c.LivenessProbe.HTTPGet.Port.StrVal != HTTPPortName {
					t.Errorf("%s/%s: probes %+v %+v", name, component, c.LivenessProbe, c.ReadinessProbe)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s/%s: no default resources: %+v", name, component, c.Resources)
				}
			}
		}
	}
}

func TestHostNetworkKeepsOneSFUPodPerNodeOnTheNodePort(t *testing.T) {
	pool := goldenPools(t)["hostnetwork"]
	sts := SFUStatefulSet(pool, "h")
	spec := sts.Spec.Template.Spec
	terms := spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(terms) != 1 || terms[0].TopologyKey != corev1.LabelHostname {
		t.Fatalf("anti-affinity %+v", terms)
	}
	var media corev1.ContainerPort
	for _, p := range spec.Containers[0].Ports {
		if p.Name == MediaPortName {
			media = p
		}
	}
	if media.ContainerPort != 40000 || media.HostPort != 40000 || media.Protocol != corev1.ProtocolUDP {
		t.Fatalf("media port %+v", media)
	}
	if !slices.Contains(spec.Containers[0].Args, "--advertise-ip=$(NODE_IP)") {
		t.Fatalf("args %v do not advertise the node IP", spec.Containers[0].Args)
	}
	if sts.Spec.Replicas != nil {
		t.Fatalf("replicas %d set while an autoscaler owns them", *sts.Spec.Replicas)
	}
	if h := SFUAutoscaler(pool); h == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 12 {
		t.Fatalf("autoscaler %+v", h)
	}
	if MediaService(pool) != nil {
		t.Fatal("a media Service rendered in HostNetwork mode")
	}
}

func TestGracePeriodIsDrainTimeoutPlusMargin(t *testing.T) {
	pool := readSamplePool(t)
	for _, d := range []time.Duration{0, 90 * time.Second, 2 * time.Hour} {
		pool.Spec.DrainTimeout = &metav1.Duration{Duration: d}
		got := *SFUStatefulSet(pool, "").Spec.Template.Spec.TerminationGracePeriodSeconds
		if want := int64((d + DrainMargin) / time.Second); got != want {
			t.Errorf("drain %v: grace %d, want %d", d, got, want)
		}
	}
	pool.Spec.DrainTimeout = nil // default 5m
	if got := *SFUStatefulSet(pool, "").Spec.Template.Spec.TerminationGracePeriodSeconds; got != 315 {
		t.Errorf("default drain: grace %d, want 315", got)
	}
}

func TestRestartHashFollowsStartOnlySettingsNotApps(t *testing.T) {
	pool := readSamplePool(t)
	base := PodConfig(pool, nil)
	withApps := PodConfig(pool, sampleApps(t, ""))
	if base.Version == withApps.Version {
		t.Fatal("adding apps did not change the config version")
	}
	if SFURestartHash(base) != SFURestartHash(withApps) || TURNRestartHash(base) != TURNRestartHash(withApps) {
		t.Fatal("adding apps changed a restart hash: pods would roll for a live change")
	}
	moved := pool.DeepCopy()
	moved.Spec.Media.UDPPort = 50000
	if SFURestartHash(PodConfig(moved, nil)) == SFURestartHash(base) {
		t.Fatal("changing the UDP port did not change the SFU restart hash")
	}
	realm := pool.DeepCopy()
	realm.Spec.TURN.Realm = "other"
	if TURNRestartHash(PodConfig(realm, nil)) == TURNRestartHash(base) {
		t.Fatal("changing the realm did not change the TURN restart hash")
	}
}

func TestTURNOffRendersNoTURNObjectsAndListsThemAbsent(t *testing.T) {
	pool := readSamplePool(t)
	pool.Spec.TURN.Enabled = ptr.To(false)
	pod := PodConfig(pool, nil)
	if pod.TURN.Enabled || len(pod.TURN.URLs) != 0 {
		t.Fatalf("pod config TURN %+v", pod.TURN)
	}
	children, err := Children(pool, pod)
	if err != nil {
		t.Fatal(err)
	}
	var absent []string
	for _, c := range children {
		if c.Object != nil {
			if _, ok := c.Object.(*appsv1.Deployment); ok {
				t.Fatalf("TURN Deployment rendered with TURN off")
			}
			continue
		}
		absent = append(absent, c.Absent.GetName())
	}
	slices.Sort(absent)
	if want := []string{"demo-sfu", "demo-turn", "demo-turn"}; !slices.Equal(absent, want) {
		t.Fatalf("absent children %v, want %v", absent, want)
	}
}

func TestPodConfigIsDeterministicAndValid(t *testing.T) {
	pool := goldenPools(t)["turningress"]
	apps := sampleApps(t, pool.Namespace)
	a := PodConfig(pool, apps)
	slices.Reverse(apps)
	b := PodConfig(pool, apps)
	ja, _ := PodConfigJSON(a)
	jb, _ := PodConfigJSON(b)
	if string(ja) != string(jb) {
		t.Fatal("app order changed the rendered config")
	}
	parsed, err := config.Parse(ja)
	if err != nil {
		t.Fatalf("pods reject the rendering: %v", err)
	}
	if len(parsed.Apps) != 2 {
		t.Fatalf("%d apps rendered, want 2 (the app without credentials is left out)", len(parsed.Apps))
	}
	want := []string{"turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443?transport=tcp"}
	if !slices.Equal(parsed.TURN.URLs, want) {
		t.Fatalf("TURN URLs %v, want %v", parsed.TURN.URLs, want)
	}
	if parsed.Media.Exposure != config.ExposureTURNIngress || parsed.Media.DrainTimeoutSeconds != 300 {
		t.Fatalf("media %+v", parsed.Media)
	}
}

func TestPodConfigKeepsOneAppPerID(t *testing.T) {
	pool := readSamplePool(t)
	apps := sampleApps(t, "")
	copied := apps[0]
	copied.App = copied.App.DeepCopy()
	copied.App.Name = "a-copy" // sorts first: it keeps the ID
	apps = append(apps, copied)
	p := PodConfig(pool, apps)
	b, _ := PodConfigJSON(p)
	parsed, err := config.Parse(b)
	if err != nil {
		t.Fatalf("pods reject the rendering: %v", err)
	}
	if len(parsed.Apps) != 2 {
		t.Fatalf("%d apps, want 2", len(parsed.Apps))
	}
	for _, a := range parsed.Apps {
		if a.ID == testCreds.AppID && a.Name != "default/a-copy" {
			t.Fatalf("duplicate ID kept by %s, want default/a-copy", a.Name)
		}
	}
}
