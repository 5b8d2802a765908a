package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

var valuesFiles = []string{
	"default-values.yaml",
	"turn-ingress-values.yaml",
	"host-network-values.yaml",
	"app-and-pool-values.yaml",
}

func TestChartLintsCleanWithEveryValuesFile(t *testing.T) {
	for _, f := range valuesFiles {
		t.Run(f, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chartDir(t), "--namespace", namespace, "-f", ciValues(t, f))
			if err != nil {
				t.Fatalf("helm lint: %v", err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint did not pass:\n%s", out)
			}
		})
	}
}

func TestEveryValuesFileRendersDecodableObjects(t *testing.T) {
	for _, f := range valuesFiles {
		t.Run(f, func(t *testing.T) {
			r := helmTemplate(t, f, "--api-versions", "monitoring.coreos.com/v1")
			for _, o := range r.objs {
				if o.GetName() == "" {
					t.Errorf("%s without a name", o.GetKind())
				}
				clusterScoped := slices.Contains([]string{"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}, o.GetKind())
				if !clusterScoped && o.GetNamespace() != namespace {
					t.Errorf("%s/%s in namespace %q, want the release namespace %q", o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
				}
			}
			// Typed decoding fails on misspelt or misplaced fields.
			for _, o := range r.find("Deployment") {
				into(t, o, &appsv1.Deployment{})
			}
			for _, o := range r.find("NetworkPolicy") {
				into(t, o, &networkingv1.NetworkPolicy{})
			}
			for _, o := range r.find("Service") {
				into(t, o, &corev1.Service{})
			}
			for _, o := range r.find("SFUPool") {
				into(t, o, &v1alpha1.SFUPool{})
			}
			for _, o := range r.find("CallsApp") {
				into(t, o, &v1alpha1.CallsApp{})
			}
		})
	}
}

// The operator runs as a restricted, non-root pod with leader election and
// the chart's image by default.
func TestDefaultInstallRunsOneRestrictedOperatorWithLeaderElection(t *testing.T) {
	r := helmTemplate(t, "default-values.yaml")
	var d appsv1.Deployment
	into(t, r.get(t, "Deployment", "sb-switchboard"), &d)

	if got := *d.Spec.Replicas; got != 1 {
		t.Errorf("replicas %d, want 1", got)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "switchboard:dev" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q pull %q, want the local build switchboard:dev with IfNotPresent", c.Image, c.ImagePullPolicy)
	}
	if len(c.Args) == 0 || c.Args[0] != "manager" {
		t.Errorf("args %q: want the manager subcommand first", c.Args)
	}
	for _, want := range []string{"--leader-elect=true", "--leader-election-namespace=" + namespace,
		"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	if want := "--hub-url=http://sb-switchboard." + namespace + ".svc:8443"; !slices.Contains(c.Args, want) {
		t.Errorf("args %q lack the hub URL of the Service %q", c.Args, want)
	}
	assertRestricted(t, d.Spec.Template.Spec)
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Error("manager container without readiness and liveness probes")
	}

	// The ServiceAccount the pod runs as exists and is bound to the
	// manager ClusterRole and the leader-election Role.
	sa := d.Spec.Template.Spec.ServiceAccountName
	r.get(t, "ServiceAccount", sa)
	var crb rbacv1.ClusterRoleBinding
	into(t, r.get(t, "ClusterRoleBinding", "sb-switchboard-manager"), &crb)
	var rb rbacv1.RoleBinding
	into(t, r.get(t, "RoleBinding", "sb-switchboard-leader-election"), &rb)
	for _, s := range [][]rbacv1.Subject{crb.Subjects, rb.Subjects} {
		if len(s) != 1 || s[0].Name != sa || s[0].Namespace != namespace {
			t.Errorf("binding subjects %+v, want ServiceAccount %s/%s", s, namespace, sa)
		}
	}
	var role rbacv1.Role
	into(t, r.get(t, "Role", "sb-switchboard-leader-election"), &role)
	if !allows(role.Rules, "coordination.k8s.io", "leases", "update") {
		t.Errorf("leader election role cannot update leases: %+v", role.Rules)
	}

	// The admin key and hub token come from the chart's Secret, which the
	// manager is told to read.
	secretName := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--hub-secret="); ok {
			secretName = v
		}
	}
	var sec corev1.Secret
	into(t, r.get(t, "Secret", secretName), &sec)
	for _, k := range []string{"admin-api-key", "hub-token"} {
		if len(sec.Data[k]) < 32 {
			t.Errorf("%s of %d bytes, want at least 32", k, len(sec.Data[k]))
		}
	}

	// The Service reaches the pod's admin and hub ports.
	var svc corev1.Service
	into(t, r.get(t, "Service", "sb-switchboard"), &svc)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the manager pod %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, p.TargetPort.StrVal)
		}
	}

	for _, kind := range []string{"SFUPool", "CallsApp", "ServiceMonitor", "PodMonitor", "ConfigMap"} {
		if n := len(r.find(kind)); n != 0 {
			t.Errorf("defaults render %d %s, want none", n, kind)
		}
	}
}

func assertRestricted(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != render.RunAsID ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v: want non-root %d with the RuntimeDefault seccomp profile", psc, render.RunAsID)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("operator pod uses host namespaces")
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s security context %+v is not restricted", c.Name, sc)
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// The chart installs the CRDs exactly as config/crd/bases has them.
func TestChartCRDsAreIdenticalToConfig(t *testing.T) {
	root := repoRoot(t)
	src, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(src) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	dst, _ := filepath.Glob(filepath.Join(chartDir(t), "crds", "*.yaml"))
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		sort.Strings(out)
		return out
	}
	if !slices.Equal(names(src), names(dst)) {
		t.Fatalf("chart CRDs %v, config CRDs %v: run hack/helm-sync.sh", names(dst), names(src))
	}
	for _, s := range src {
		a, _ := os.ReadFile(s)
		b, _ := os.ReadFile(filepath.Join(chartDir(t), "crds", filepath.Base(s)))
		if !bytes.Equal(a, b) {
			t.Errorf("charts/switchboard/crds/%s differs from config/crd/bases: run hack/helm-sync.sh", filepath.Base(s))
		}
	}
	// And helm really installs them.
	r := helmTemplate(t, "")
	if n := len(r.find("CustomResourceDefinition")); n != len(src) {
		t.Errorf("helm renders %d CRDs, want %d", n, len(src))
	}
}

// The operator's ClusterRole holds the rules of config/rbac/role.yaml.
func TestManagerClusterRoleMatchesConfigRBAC(t *testing.T) {
	chartRole := readRole(t, filepath.Join(chartDir(t), "files", "manager-role.yaml"))
	r := helmTemplate(t, "")
	var cr rbacv1.ClusterRole
	into(t, r.get(t, "ClusterRole", "sb-switchboard-manager"), &cr)
	if !reflect.DeepEqual(cr.Rules, chartRole.Rules) {
		t.Errorf("rendered ClusterRole rules %+v\nwant files/manager-role.yaml rules %+v", cr.Rules, chartRole.Rules)
	}
	for _, verb := range []string{"watch", "patch"} {
		if !allows(cr.Rules, v1alpha1.GroupVersion.Group, "sfupools/status", verb) && verb == "patch" {
			t.Errorf("manager cannot %s sfupools/status", verb)
		}
		if !allows(cr.Rules, v1alpha1.GroupVersion.Group, "callsapps", verb) && verb == "watch" {
			t.Errorf("manager cannot %s callsapps", verb)
		}
	}
	configRole := filepath.Join(repoRoot(t), "config", "rbac", "role.yaml")
	if _, err := os.Stat(configRole); err != nil {
		t.Skipf("config/rbac/role.yaml is not generated on this branch yet (%v); the chart copy was checked alone", err)
	}
	a, _ := os.ReadFile(configRole)
	b, _ := os.ReadFile(filepath.Join(chartDir(t), "files", "manager-role.yaml"))
	if !bytes.Equal(a, b) {
		t.Error("charts/switchboard/files/manager-role.yaml differs from config/rbac/role.yaml: run hack/helm-sync.sh")
	}
}

func readRole(t *testing.T, path string) rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(role.Rules) == 0 {
		t.Fatalf("%s has no rules", path)
	}
	return role
}

// poolPods renders, with the operator's own code, the pod templates of the
// pool the chart created, so the chart's selectors and ports are checked
// against what the operator will really run.
func poolPods(t *testing.T, r rendered, poolName string) (pool *v1alpha1.SFUPool, sfu, turn *corev1.PodTemplateSpec) {
	t.Helper()
	pool = &v1alpha1.SFUPool{}
	into(t, r.get(t, "SFUPool", poolName), pool)
	sts := render.SFUStatefulSet(pool, "")
	sfu = &sts.Spec.Template
	if pool.Spec.TURNEnabled() {
		turn = &render.TURNDeployment(pool, "").Spec.Template
	}
	return pool, sfu, turn
}

func selects(t *testing.T, sel metav1.LabelSelector, pod *corev1.PodTemplateSpec) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return s.Matches(labels.Set(pod.Labels))
}

func containerPort(pod *corev1.PodTemplateSpec, name string) (corev1.ContainerPort, bool) {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

// ingressFrom returns the peers allowed to reach port/protocol; nil peers
// with ok=true mean anyone.
func ingressFrom(np *networkingv1.NetworkPolicy, port int32, proto corev1.Protocol) (peers []networkingv1.NetworkPolicyPeer, ok bool) {
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			continue
		}
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntVal == port && p.Protocol != nil && *p.Protocol == proto {
				if len(rule.From) == 0 {
					return nil, true
				}
				peers = append(peers, rule.From...)
				ok = true
			}
		}
	}
	return peers, ok
}

// In TURNIngress mode clients reach SFU media only through the pool's TURN
// pods, and the TURN relay may reach only the SFU media port (plus the hub
// and DNS).
func TestTURNIngressPoolLetsOnlyTURNReachSFUMedia(t *testing.T) {
	r := helmTemplate(t, "turn-ingress-values.yaml")
	pool, sfu, turn := poolPods(t, r, "private")
	if pool.Spec.Media.Exposure != v1alpha1.ExposureTURNIngress {
		t.Fatalf("pool exposure %q, want TURNIngress", pool.Spec.Media.Exposure)
	}
	if pool.Spec.Image != "switchboard:dev" || pool.Spec.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pool image %q pull %q, want the chart's image switchboard:dev IfNotPresent", pool.Spec.Image, pool.Spec.ImagePullPolicy)
	}

	var sfuNP, turnNP networkingv1.NetworkPolicy
	into(t, r.get(t, "NetworkPolicy", "private-sfu"), &sfuNP)
	into(t, r.get(t, "NetworkPolicy", "private-turn"), &turnNP)
	if !selects(t, sfuNP.Spec.PodSelector, sfu) || selects(t, sfuNP.Spec.PodSelector, turn) {
		t.Fatalf("private-sfu selector %v must select the SFU pods %v and not the TURN pods", sfuNP.Spec.PodSelector, sfu.Labels)
	}
	if !selects(t, turnNP.Spec.PodSelector, turn) || selects(t, turnNP.Spec.PodSelector, sfu) {
		t.Fatalf("private-turn selector %v must select the TURN pods %v and not the SFU pods", turnNP.Spec.PodSelector, turn.Labels)
	}

	media, ok := containerPort(sfu, render.MediaPortName)
	if !ok {
		t.Fatal("operator's SFU pod has no media port")
	}
	peers, ok := ingressFrom(&sfuNP, media.ContainerPort, corev1.ProtocolUDP)
	if !ok || len(peers) != 1 || peers[0].PodSelector == nil || !selects(t, *peers[0].PodSelector, turn) || selects(t, *peers[0].PodSelector, sfu) ||
		peers[0].NamespaceSelector != nil || peers[0].IPBlock != nil {
		t.Errorf("SFU media UDP %d reachable from %+v, want only the pool's TURN pods", media.ContainerPort, peers)
	}
	if peers, ok := ingressFrom(&sfuNP, render.HTTPPort, corev1.ProtocolTCP); !ok || peers != nil {
		t.Errorf("SFU session API port %d reachable from %+v, want anyone", render.HTTPPort, peers)
	}

	// Every TURN listener port the operator opens is reachable by clients.
	for _, c := range turn.Spec.Containers {
		for _, p := range c.Ports {
			if !strings.HasPrefix(p.Name, "turn-") {
				continue
			}
			if peers, ok := ingressFrom(&turnNP, p.ContainerPort, p.Protocol); !ok || peers != nil {
				t.Errorf("TURN listener %s %d/%s not open to clients (%+v, %v)", p.Name, p.ContainerPort, p.Protocol, peers, ok)
			}
		}
	}
	// TURN egress: SFU media, the hub, DNS; nothing else.
	if !slices.Contains(turnNP.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Fatal("TURN pods' egress is not restricted in TURNIngress mode")
	}
	for _, e := range turnNP.Spec.Egress {
		for _, p := range e.Ports {
			switch {
			case p.Port.IntVal == media.ContainerPort && *p.Protocol == corev1.ProtocolUDP:
				if len(e.To) != 1 || e.To[0].PodSelector == nil || !selects(t, *e.To[0].PodSelector, sfu) {
					t.Errorf("TURN egress to UDP %d goes to %+v, want the pool's SFU pods", media.ContainerPort, e.To)
				}
			case p.Port.IntVal == 53:
			case p.Port.IntVal == 8443 && *p.Protocol == corev1.ProtocolTCP:
				if len(e.To) != 1 || e.To[0].PodSelector == nil || e.To[0].PodSelector.MatchLabels["app.kubernetes.io/component"] != "manager" {
					t.Errorf("TURN egress to the hub goes to %+v, want the manager pods", e.To)
				}
			default:
				t.Errorf("TURN egress allows port %v/%v", p.Port, *p.Protocol)
			}
		}
	}

	// The app from values names the pool.
	var app v1alpha1.CallsApp
	into(t, r.get(t, "CallsApp", "meetings"), &app)
	if app.Spec.PoolRef.Name != "private" {
		t.Errorf("CallsApp poolRef %q, want private", app.Spec.PoolRef.Name)
	}
}

// In the other modes clients reach the media port directly, and the
// manager's hub accepts the pool pods the operator runs.
func TestHostNetworkPoolOpensMediaToClientsAndHubToPods(t *testing.T) {
	r := helmTemplate(t, "host-network-values.yaml")
	pool, sfu, turn := poolPods(t, r, "edge")
	if pool.Spec.Media.Exposure != v1alpha1.ExposureHostNetwork || pool.Spec.Autoscaling == nil || pool.Spec.Autoscaling.MaxReplicas != 10 {
		t.Fatalf("pool spec %+v, want HostNetwork with autoscaling to 10", pool.Spec)
	}
	if turn != nil {
		t.Fatal("operator renders TURN pods for a pool with turn.enabled=false")
	}
	if n := len(r.find("NetworkPolicy")); n != 2 {
		t.Errorf("%d NetworkPolicies, want the manager's and the SFU pods' (no TURN pods)", n)
	}
	var sfuNP networkingv1.NetworkPolicy
	into(t, r.get(t, "NetworkPolicy", "edge-sfu"), &sfuNP)
	if !selects(t, sfuNP.Spec.PodSelector, sfu) {
		t.Fatalf("edge-sfu does not select the SFU pods %v", sfu.Labels)
	}
	if peers, ok := ingressFrom(&sfuNP, 40000, corev1.ProtocolUDP); !ok || peers != nil {
		t.Errorf("media UDP 40000 reachable from %+v (%v), want anyone", peers, ok)
	}

	var mgrNP networkingv1.NetworkPolicy
	into(t, r.get(t, "NetworkPolicy", "sb-switchboard"), &mgrNP)
	peers, ok := ingressFrom(&mgrNP, 8443, corev1.ProtocolTCP)
	if !ok || len(peers) != 2 || peers[0].PodSelector == nil || !selects(t, *peers[0].PodSelector, sfu) ||
		peers[0].NamespaceSelector == nil || len(peers[0].NamespaceSelector.MatchLabels) != 0 {
		t.Errorf("hub port reachable from %+v, want the operator's pool pods in any namespace, then admin callers", peers)
	}
	if len(peers) == 2 && (peers[1].PodSelector == nil || peers[1].NamespaceSelector != nil || len(peers[1].PodSelector.MatchLabels) != 0) {
		t.Errorf("admin callers %+v, want every pod of the release namespace by default", peers[1])
	}

	var d appsv1.Deployment
	into(t, r.get(t, "Deployment", "sb-switchboard"), &d)
	if *d.Spec.Replicas != 2 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
		t.Errorf("manager replicas %d args %q, want 2 with leader election", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
}

// Apps from values carry their specs; monitoring objects appear when the
// Prometheus Operator API exists, and the PodMonitor scrapes the pods the
// operator runs.
func TestAppsPoolAndMonitoringFromValues(t *testing.T) {
	r := helmTemplate(t, "app-and-pool-values.yaml", "--api-versions", "monitoring.coreos.com/v1")
	pool, sfu, turn := poolPods(t, r, "main")
	if pool.Spec.Image != "registry.example.com/switchboard:v0.1.0" || pool.Spec.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("pool image %q %q, want the chart image registry.example.com/switchboard:v0.1.0 Always", pool.Spec.Image, pool.Spec.ImagePullPolicy)
	}
	var webinar v1alpha1.CallsApp
	into(t, r.get(t, "CallsApp", "webinar"), &webinar)
	if webinar.Spec.PoolRef.Name != "main" || *webinar.Spec.RateLimit.AuthenticatedPerSecond != 200 ||
		webinar.Spec.Billing.PricePerGB != "0.04" || *webinar.Spec.Billing.MonthlyEgressCapGB != 5000 || *webinar.Spec.Billing.FreeGB != 0 {
		t.Errorf("webinar spec %+v does not carry the values", webinar.Spec)
	}
	r.get(t, "CallsApp", "demo")

	sm := r.get(t, "ServiceMonitor", "sb-switchboard")
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack release=prometheus", sm.GetLabels())
	}
	pm := r.get(t, "PodMonitor", "sb-switchboard-pools")
	var pmSpec struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port string `json:"port"`
			Path string `json:"path"`
		} `json:"podMetricsEndpoints"`
	}
	b, _ := yaml.Marshal(pm.Object["spec"])
	if err := yaml.Unmarshal(b, &pmSpec); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []*corev1.PodTemplateSpec{sfu, turn} {
		if !selects(t, pmSpec.Selector, pod) {
			t.Errorf("PodMonitor selector %+v misses pod %v", pmSpec.Selector, pod.Labels)
		}
		if len(pmSpec.Endpoints) != 1 || pmSpec.Endpoints[0].Path != "/metrics" {
			t.Fatalf("PodMonitor endpoints %+v", pmSpec.Endpoints)
		}
		if _, ok := containerPort(pod, pmSpec.Endpoints[0].Port); !ok {
			t.Errorf("PodMonitor scrapes port %q, which pod %v does not name", pmSpec.Endpoints[0].Port, pod.Labels)
		}
	}

	var cm corev1.ConfigMap
	into(t, r.get(t, "ConfigMap", "sb-switchboard-dashboard"), &cm)
	want, err := os.ReadFile(filepath.Join(chartDir(t), "files", "grafana", "switchboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["switchboard.json"]) != strings.TrimSpace(string(want)) {
		t.Error("dashboard ConfigMap does not hold files/grafana/switchboard.json")
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v lack the sidecar label", cm.Labels)
	}

	// The admin API is open to the ops namespace only.
	var mgrNP networkingv1.NetworkPolicy
	into(t, r.get(t, "NetworkPolicy", "sb-switchboard"), &mgrNP)
	peers, _ := ingressFrom(&mgrNP, 8443, corev1.ProtocolTCP)
	if len(peers) != 2 || peers[1].NamespaceSelector == nil || peers[1].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "ops" {
		t.Errorf("admin API reachable from %+v, want pool pods and the ops namespace only", peers)
	}
}

func TestMonitoringObjectsNeedThePrometheusOperatorAPI(t *testing.T) {
	r := helmTemplate(t, "app-and-pool-values.yaml")
	for _, kind := range []string{"ServiceMonitor", "PodMonitor"} {
		if n := len(r.find(kind)); n != 0 {
			t.Errorf("%d %s rendered on a cluster without monitoring.coreos.com/v1", n, kind)
		}
	}
	if notes := renderNotes(t, "app-and-pool-values.yaml"); !strings.Contains(notes, "no ServiceMonitor or PodMonitor was created") {
		t.Error("NOTES do not warn that monitoring was asked for but cannot be created")
	}
	if notes := renderNotes(t, "app-and-pool-values.yaml", "--api-versions", "monitoring.coreos.com/v1"); strings.Contains(notes, "WARNING") {
		t.Errorf("NOTES warn although the Prometheus Operator API exists:\n%s", notes)
	}
}

// NOTES tell the user how to get the app's ID, secret and endpoint, with
// the key names the operator writes.
func TestNotesShowHowToGetAppIDSecretAndEndpoint(t *testing.T) {
	notes := renderNotes(t, "turn-ingress-values.yaml")
	for _, want := range []string{
		"secret meetings-credentials -o jsonpath='{.data." + v1alpha1.SecretKeyAppID + "}'",
		"secret meetings-credentials -o jsonpath='{.data." + v1alpha1.SecretKeyAppSecret + "}'",
		"get callsapp meetings -o jsonpath='{.status.endpoint}'",
		"-n " + namespace,
		v1alpha1.SecretKeyTURNKeyID,
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
}

func TestSchemaRejectsMistypedValues(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"managr.replicas=2", "additional properties 'managr' not allowed"},
		{"pool.spec.media.exposure=NodePort", "value must be one of 'HostNetwork', 'TURNIngress', 'Direct'"},
		{"image.pullPolicy=Sometimes", "value must be one of"},
		{"manager.ports.hub=70000", "maximum"},
		{"apps[0].spec.rateLimit.authenticatedPerSecond=5", "missing property 'name'"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			_, err := helm(t, "template", release, chartDir(t), "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("--set %s: error %v, want one containing %q", tc.set, err, tc.want)
			}
		})
	}
}

// Every key in values.yaml is described in values.schema.json.
func TestSchemaCoversEveryValue(t *testing.T) {
	var values map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	b, err = os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	missing := uncovered("", values, schema)
	if len(missing) > 0 {
		t.Errorf("values without a schema entry (or description): %v", missing)
	}
}

// uncovered lists the paths of values that have no schema property with a
// description. Free-form objects (a schema without properties, such as
// resources or pool.spec) cover everything below them.
func uncovered(path string, v any, s map[string]any) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	props, _ := s["properties"].(map[string]any)
	if props == nil {
		return nil
	}
	var out []string
	for k, child := range m {
		p := strings.TrimPrefix(path+"."+k, ".")
		cs, ok := props[k].(map[string]any)
		if !ok {
			out = append(out, p)
			continue
		}
		if d, _ := cs["description"].(string); d == "" {
			out = append(out, p+" (no description)")
		}
		out = append(out, uncovered(p, child, cs)...)
	}
	sort.Strings(out)
	return out
}

// The few SFUPool fields the values schema checks early (for a clear helm
// error) must agree with the CRD, which stays the authority.
func TestValuesSchemaPoolFieldsAgreeWithTheCRD(t *testing.T) {
	read := func(path string, out any) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var values map[string]any
	read(filepath.Join(chartDir(t), "values.schema.json"), &values)
	var crd map[string]any
	read(filepath.Join(repoRoot(t), "config", "crd", "bases", "calls.switchboard.dev_sfupools.yaml"), &crd)

	dig := func(m any, path ...string) any {
		for _, p := range path {
			mm, ok := m.(map[string]any)
			if !ok {
				return nil
			}
			m = mm[p]
		}
		return m
	}
	versions, _ := dig(crd, "spec", "versions").([]any)
	if len(versions) != 1 {
		t.Fatalf("CRD has %d versions, want 1", len(versions))
	}
	crdMedia := dig(versions[0], "schema", "openAPIV3Schema", "properties", "spec", "properties", "media", "properties")
	valMedia := dig(values, "properties", "pool", "properties", "spec", "properties", "media", "properties")
	if dig(crdMedia, "exposure", "enum") == nil || dig(valMedia, "udpPort", "maximum") == nil {
		t.Fatalf("media fields not found: CRD %v, values schema %v", crdMedia, valMedia)
	}
	for _, field := range []string{"enum", "minimum", "maximum"} {
		for _, prop := range []string{"exposure", "udpPort"} {
			c, v := dig(crdMedia, prop, field), dig(valMedia, prop, field)
			if !reflect.DeepEqual(c, v) {
				t.Errorf("pool.spec.media.%s %s: values schema %v, CRD %v", prop, field, v, c)
			}
		}
	}
}
