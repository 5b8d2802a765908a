package sfupool_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/sfupool"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

func newPool(ns string) *v1alpha1.SFUPool {
	return &v1alpha1.SFUPool{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec:       v1alpha1.SFUPoolSpec{Replicas: ptr.To(int32(2))},
	}
}

// child is one expected child of pool "demo".
type child struct {
	obj  client.Object
	name string
}

func expectedChildren() []child {
	return []child{
		{&corev1.ServiceAccount{}, "demo-switchboard"},
		{&corev1.Secret{}, "demo-config"},
		{&corev1.Service{}, "demo-sfu-internal"},
		{&corev1.Service{}, "demo-api"},
		{&corev1.Service{}, "demo-media"},
		{&corev1.Service{}, "demo-turn"},
		{&policyv1.PodDisruptionBudget{}, "demo-sfu"},
		{&appsv1.StatefulSet{}, "demo-sfu"},
		{&appsv1.Deployment{}, "demo-turn"},
	}
}

func get(ctx context.Context, ns, name string, obj client.Object) error {
	return env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)
}

func waitChildren(t *testing.T, ns string, pool *v1alpha1.SFUPool) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, "every child exists", func() error {
		for _, c := range expectedChildren() {
			if err := get(ctx, ns, c.name, c.obj); err != nil {
				return fmt.Errorf("%T %s: %w", c.obj, c.name, err)
			}
		}
		return nil
	})
}

func TestPoolCreatesEveryChildWithOwnerReferencesPortsProbesAndSecurity(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, pool)

	for _, c := range expectedChildren() {
		if err := get(ctx, ns, c.name, c.obj); err != nil {
			t.Fatal(err)
		}
		ref := metav1.GetControllerOf(c.obj)
		if ref == nil || ref.UID != pool.UID || ref.Kind != "SFUPool" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("%T %s: controller reference %+v, want the pool %s", c.obj, c.name, ref, pool.UID)
		}
		if c.obj.GetLabels()[v1alpha1.LabelPool] != "demo" {
			t.Errorf("%T %s: labels %v", c.obj, c.name, c.obj.GetLabels())
		}
		mf := c.obj.GetManagedFields()
		if !slices.ContainsFunc(mf, func(e metav1.ManagedFieldsEntry) bool {
			return e.Manager == "switchboard-operator" && e.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("%T %s: not written by Server-Side Apply as switchboard-operator: %+v", c.obj, c.name, mf)
		}
	}

	// Services and their ports.
	wantPorts := map[string][]string{
		"demo-api":          {"http/TCP/80->http"},
		"demo-sfu-internal": {"http/TCP/8080->http"},
		"demo-media":        {"media/UDP/3478->media"},
		"demo-turn":         {"udp/UDP/3478->turn-udp", "tcp/TCP/3478->turn-tcp"},
	}
	for name, want := range wantPorts {
		var svc corev1.Service
		if err := get(ctx, ns, name, &svc); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range svc.Spec.Ports {
			got = append(got, fmt.Sprintf("%s/%s/%d->%s", p.Name, p.Protocol, p.Port, p.TargetPort.String()))
		}
		if !slices.Equal(got, want) {
			t.Errorf("service %s ports %v, want %v", name, got, want)
		}
	}
	var internal corev1.Service
	_ = get(ctx, ns, "demo-sfu-internal", &internal)
	if internal.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("internal service is not headless: %q", internal.Spec.ClusterIP)
	}

	// The SFU pods: ports, probes, security, grace period, config mount.
	var sts appsv1.StatefulSet
	if err := get(ctx, ns, "demo-sfu", &sts); err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(sts.Spec.Replicas, 0) != 2 || sts.Spec.ServiceName != "demo-sfu-internal" {
		t.Errorf("statefulset replicas %v service %q", sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	var ports []string
	for _, p := range c.Ports {
		ports = append(ports, fmt.Sprintf("%s/%s/%d", p.Name, p.Protocol, p.ContainerPort))
	}
	if want := []string{"http/TCP/8080", "media/UDP/3478"}; !slices.Equal(ports, want) {
		t.Errorf("sfu container ports %v, want %v", ports, want)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/health" || c.LivenessProbe.HTTPGet.Port.String() != "http" {
		t.Errorf("liveness probe %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Errorf("readiness probe %+v", c.ReadinessProbe)
	}
	sc := c.SecurityContext
	if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		ptr.Deref(sc.AllowPrivilegeEscalation, true) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("sfu container security context is not restricted: %+v", sc)
	}
	if pod.HostNetwork {
		t.Error("Direct exposure runs on the host network")
	}
	if got := ptr.Deref(pod.TerminationGracePeriodSeconds, 0); got != 315 {
		t.Errorf("terminationGracePeriodSeconds %d, want 315 (5m drain + 15s)", got)
	}
	if sts.Spec.Template.Annotations[v1alpha1.AnnotationRestartHash] == "" {
		t.Error("no restart hash on the pod template")
	}
	if !slices.Equal(c.Command, []string{"/switchboard"}) || c.Args[0] != "sfu" || !slices.Contains(c.Args, "--config=/etc/switchboard/switchboard.json") {
		t.Errorf("sfu command %v args %v", c.Command, c.Args)
	}

	// The rendered config, as pods will parse it.
	var cfg corev1.Secret
	if err := get(ctx, ns, "demo-config", &cfg); err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(cfg.Data[config.FileName])
	if err != nil {
		t.Fatalf("pods would reject the config: %v", err)
	}
	if parsed.Pool != ns+"/demo" || parsed.Media.UDPPort != 3478 || !parsed.TURN.Enabled || len(parsed.TURN.URLs) != 2 {
		t.Errorf("config %+v", parsed)
	}

	// Status: endpoint, replicas and the three conditions, stamped.
	testenv.Eventually(t, "pool status", func() error {
		if err := get(ctx, ns, "demo", pool); err != nil {
			return err
		}
		st := pool.Status
		if st.ObservedGeneration != pool.Generation || ptr.Deref(st.DesiredReplicas, 0) != 2 || st.Endpoint != "http://demo-api."+ns+".svc" ||
			st.ConfigVersion != parsed.Version {
			return fmt.Errorf("status %+v", st)
		}
		for typ, want := range map[string]metav1.ConditionStatus{
			v1alpha1.ReadyCondition:       metav1.ConditionFalse, // no kubelet in envtest: no pod is ready
			v1alpha1.ProgressingCondition: metav1.ConditionTrue,
			v1alpha1.DegradedCondition:    metav1.ConditionFalse,
		} {
			c := meta.FindStatusCondition(st.Conditions, typ)
			if c == nil || c.Status != want || c.Reason == "" || c.ObservedGeneration != pool.Generation {
				return fmt.Errorf("condition %s = %+v, want %s", typ, c, want)
			}
		}
		return nil
	})
	if c := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.ReadyCondition); c.Reason != v1alpha1.ReasonPodsNotReady {
		t.Errorf("Ready reason %q", c.Reason)
	}
}

func TestChangingThePoolSpecUpdatesTheChildren(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, pool)
	var before appsv1.StatefulSet
	if err := get(ctx, ns, "demo-sfu", &before); err != nil {
		t.Fatal(err)
	}
	oldHash := before.Spec.Template.Annotations[v1alpha1.AnnotationRestartHash]

	env.Update(t, pool, func() {
		pool.Spec.Replicas = ptr.To(int32(3))
		pool.Spec.Media = v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureHostNetwork, UDPPort: 40000}
		pool.Spec.DrainTimeout = &metav1.Duration{Duration: time.Minute}
		pool.Spec.TURN.Enabled = ptr.To(false)
		pool.Spec.Image = "example.com/switchboard:v2"
	})

	testenv.Eventually(t, "statefulset follows the spec", func() error {
		var sts appsv1.StatefulSet
		if err := get(ctx, ns, "demo-sfu", &sts); err != nil {
			return err
		}
		pod := sts.Spec.Template.Spec
		c := pod.Containers[0]
		switch {
		case ptr.Deref(sts.Spec.Replicas, 0) != 3:
			return fmt.Errorf("replicas %v", sts.Spec.Replicas)
		case !pod.HostNetwork:
			return errors.New("not on the host network")
		case c.Ports[1].ContainerPort != 40000 || c.Ports[1].HostPort != 40000:
			return fmt.Errorf("media port %+v", c.Ports[1])
		case ptr.Deref(pod.TerminationGracePeriodSeconds, 0) != 75:
			return fmt.Errorf("grace %v", pod.TerminationGracePeriodSeconds)
		case c.Image != "example.com/switchboard:v2":
			return fmt.Errorf("image %s", c.Image)
		case sts.Spec.Template.Annotations[v1alpha1.AnnotationRestartHash] == oldHash:
			return errors.New("restart hash unchanged after a UDP port change")
		case pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil:
			return errors.New("no one-pod-per-node anti-affinity in HostNetwork mode")
		}
		return nil
	})
	testenv.Eventually(t, "children the spec turned off are gone", func() error {
		for _, c := range []child{{&appsv1.Deployment{}, "demo-turn"}, {&corev1.Service{}, "demo-turn"}, {&corev1.Service{}, "demo-media"}} {
			err := get(ctx, ns, c.name, c.obj)
			if err == nil {
				return fmt.Errorf("%T %s still exists", c.obj, c.name)
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
	testenv.Eventually(t, "config follows the spec", func() error {
		var cfg corev1.Secret
		if err := get(ctx, ns, "demo-config", &cfg); err != nil {
			return err
		}
		p, err := config.Parse(cfg.Data[config.FileName])
		if err != nil {
			return err
		}
		if p.Media.UDPPort != 40000 || p.Media.Exposure != config.ExposureHostNetwork || p.TURN.Enabled || p.Media.DrainTimeoutSeconds != 60 {
			return fmt.Errorf("config %+v", p)
		}
		return nil
	})

	// Switching to autoscaling hands replicas to an autoscaler.
	env.Update(t, pool, func() {
		pool.Spec.Replicas = nil
		pool.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 2, MaxReplicas: 6}
	})
	testenv.Eventually(t, "autoscaler created", func() error {
		var hpa autoscalingv2.HorizontalPodAutoscaler
		if err := get(ctx, ns, "demo-sfu", &hpa); err != nil {
			return err
		}
		if hpa.Spec.MaxReplicas != 6 || hpa.Spec.ScaleTargetRef.Name != "demo-sfu" {
			return fmt.Errorf("hpa %+v", hpa.Spec)
		}
		return nil
	})
	// Handing replicas to the autoscaler must not reset them: dropping the
	// field from the apply would let the API server default it to 1 and
	// delete running pods.
	time.Sleep(time.Second)
	var sts appsv1.StatefulSet
	if err := get(ctx, ns, "demo-sfu", &sts); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(sts.Spec.Replicas, 0); got != 3 {
		t.Fatalf("replicas %d after switching to autoscaling, want the 3 running", got)
	}
}

// TestDeletingThePoolRemovesItsChildren deletes a pool and checks that its
// children go. envtest runs no kube-controller-manager, so no garbage
// collector: the test proves the two halves separately. (1) Every child
// carries a controller owner reference to the pool with blockOwnerDeletion,
// which is all the garbage collector acts on; the pool has no finalizer, so
// its deletion completes. (2) sweepOrphans applies the collector's rule
// (delete an object whose owners are all gone) and the children disappear,
// while an object the operator does not own survives and nothing is
// recreated by the still-running operator.
func TestDeletingThePoolRemovesItsChildren(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	cached := env.StartManager(t, ns)
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, pool)
	bystander := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: ns, Labels: map[string]string{v1alpha1.LabelPool: "demo"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "x", Port: 1}}},
	}
	if err := env.Client.Create(ctx, bystander); err != nil {
		t.Fatal(err)
	}

	if err := env.Client.Delete(ctx, pool); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "pool gone (no finalizer holds it)", func() error {
		err := get(ctx, ns, "demo", &v1alpha1.SFUPool{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("pool still there: %v", err)
	})
	// Sweep once the operator has seen the deletion: a reconcile that read
	// the pool before it went may still be applying children, as it may in a
	// cluster, where the garbage collector removes such late orphans too.
	testenv.Eventually(t, "the operator's cache sees the pool gone", func() error {
		if err := cached.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo"}, &v1alpha1.SFUPool{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("cached pool: %v", err)
		}
		return nil
	})
	time.Sleep(time.Second) // let a reconcile already in flight finish
	deleted := sweepOrphans(t, ns)
	// The applied children and the fleet token Secret (created once).
	owned := append(expectedChildren(), child{&corev1.Secret{}, "demo-fleet"})
	if len(deleted) != len(owned) {
		t.Errorf("garbage collection removed %d objects %v, want the %d children", len(deleted), deleted, len(owned))
	}
	// The operator keeps running and must not bring any child back.
	time.Sleep(2 * time.Second)
	for _, c := range owned {
		if err := get(ctx, ns, c.name, c.obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after deletion: %v", c.obj, c.name, err)
		}
	}
	if err := get(ctx, ns, "bystander", &corev1.Service{}); err != nil {
		t.Errorf("a Service the pool does not own was removed: %v", err)
	}
}

// sweepOrphans deletes every object in ns (of the kinds a pool owns) whose
// owner references all point at objects that no longer exist, the garbage
// collector's rule for background deletion. It returns what it deleted.
func sweepOrphans(t *testing.T, ns string) []string {
	t.Helper()
	ctx := context.Background()
	pools := map[types.UID]bool{}
	var pl v1alpha1.SFUPoolList
	if err := env.Client.List(ctx, &pl, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pl.Items {
		pools[p.UID] = true
	}
	lists := []client.ObjectList{
		&corev1.ServiceAccountList{}, &corev1.SecretList{}, &corev1.ServiceList{},
		&policyv1.PodDisruptionBudgetList{}, &appsv1.StatefulSetList{}, &appsv1.DeploymentList{},
		&autoscalingv2.HorizontalPodAutoscalerList{},
	}
	var deleted []string
	for _, l := range lists {
		if err := env.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if err := meta.EachListItem(l, func(o runtime.Object) error {
			obj := o.(client.Object)
			refs := obj.GetOwnerReferences()
			if len(refs) == 0 {
				return nil
			}
			for _, r := range refs {
				if r.Kind != "SFUPool" || pools[r.UID] {
					return nil // an owner is alive (or not one this sweep knows)
				}
			}
			if err := env.Client.Delete(ctx, obj); err != nil {
				return err
			}
			deleted = append(deleted, fmt.Sprintf("%T/%s", obj, obj.GetName()))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return deleted
}

func TestMissingTURNTLSSecretDegradesThePool(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	pool.Spec.TURN.TLSSecretRef = &corev1.LocalObjectReference{Name: "turn-cert"}
	pool.Spec.TURN.Listeners = []v1alpha1.TURNListener{{Name: "tls", Protocol: v1alpha1.TURNProtocolTLS, Port: 5349, ServicePort: 443}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "Degraded=True TLSSecretNotFound", func() error {
		if err := get(ctx, ns, "demo", pool); err != nil {
			return err
		}
		c := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.DegradedCondition)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonTLSSecretNotFound || !strings.Contains(c.Message, "turn-cert") {
			return fmt.Errorf("Degraded %+v", c)
		}
		return nil
	})
	// The rest of the pool is still built: TURN waits for its volume.
	var d appsv1.Deployment
	if err := get(ctx, ns, "demo-turn", &d); err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--tls=5349") || !slices.Contains(args, "--tls-cert=/etc/switchboard/tls/tls.crt") {
		t.Errorf("turn args %v", args)
	}
	var svc corev1.Service
	if err := get(ctx, ns, "demo-turn", &svc); err != nil {
		t.Fatal(err)
	}
	if p := svc.Spec.Ports; len(p) != 1 || p[0].Port != 443 || p[0].TargetPort.String() != "turn-tls" || p[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("turn service ports %+v", p)
	}

	// kubectl describe shows the degradation, and its end once the Secret
	// exists (user Secrets are not watched: a spec change looks again).
	if e := waitPoolEvent(t, ns, "demo", corev1.EventTypeWarning, v1alpha1.ReasonTLSSecretNotFound); !strings.Contains(e.Note, "turn-cert") {
		t.Errorf("TLSSecretNotFound note %q does not name the Secret", e.Note)
	}
	cert := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "turn-cert", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}}
	if err := env.Client.Create(ctx, cert); err != nil {
		t.Fatal(err)
	}
	env.Update(t, pool, func() { pool.Spec.Replicas = ptr.To(int32(2)) })
	waitPoolEvent(t, ns, "demo", corev1.EventTypeNormal, sfupool.EventRecovered)
}

// waitPoolEvent fails unless an Event of eventType with reason about the
// object name shows up; it returns it.
func waitPoolEvent(t *testing.T, ns, name, eventType, reason string) eventsv1.Event {
	t.Helper()
	var got eventsv1.Event
	testenv.Eventually(t, fmt.Sprintf("%s Event %s on %s", eventType, reason, name), func() error {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason && e.Type == eventType {
				got = e
				return nil
			}
		}
		return fmt.Errorf("%d events, none matches", len(list.Items))
	})
	return got
}

func TestAChildEditedByHandIsPutBack(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, pool)
	// kubectl scale statefulset demo-sfu --replicas=7, and a changed probe.
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu", Namespace: ns}}
	env.Update(t, sts, func() {
		sts.Spec.Replicas = ptr.To(int32(7))
		sts.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/"
	})
	testenv.Eventually(t, "StatefulSet put back", func() error {
		if err := get(ctx, ns, "demo-sfu", sts); err != nil {
			return err
		}
		if r, p := ptr.Deref(sts.Spec.Replicas, 0), sts.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path; r != 2 || p != "/ready" {
			return fmt.Errorf("replicas %d, readiness path %q", r, p)
		}
		return nil
	})
}

func TestPoolStatusListsPodsWithAddressesAndDraining(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	pool.Spec.Media.Exposure = v1alpha1.ExposureHostNetwork
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "StatefulSet exists", func() error {
		return get(ctx, ns, "demo-sfu", &appsv1.StatefulSet{})
	})
	for i, ip := range []string{"10.0.0.10", "10.0.0.11"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("demo-sfu-%d", i), Namespace: ns,
				Labels: map[string]string{
					v1alpha1.LabelName: "switchboard", v1alpha1.LabelPool: "demo", v1alpha1.LabelComponent: "sfu",
					v1alpha1.LabelManagedBy: v1alpha1.ManagedBy,
				},
				// Keeps the pod terminating after deletion, as a draining pod is.
				Finalizers: []string{"test.switchboard.dev/hold"},
			},
			Spec: corev1.PodSpec{
				ServiceAccountName: "demo-switchboard", AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "sfu", Image: "switchboard"}},
			},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, HostIP: fmt.Sprintf("192.0.2.%d", i+1),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if err := env.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns}}
			env.Update(t, p, func() { p.Finalizers = nil })
		})
	}
	testenv.Eventually(t, "Ready with two pods", func() error {
		if err := get(ctx, ns, "demo", pool); err != nil {
			return err
		}
		st := pool.Status
		if ptr.Deref(st.ReadyReplicas, 0) != 2 || len(st.Pods) != 2 || !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ReadyCondition) {
			return fmt.Errorf("status %+v", st)
		}
		// HostNetwork: pods advertise their node's address.
		if st.Pods[1].MediaAddress != "192.0.2.2" || st.Pods[1].PodIP != "10.0.0.11" {
			return fmt.Errorf("pod %+v", st.Pods[1])
		}
		return nil
	})
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-1", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "one pod draining", func() error {
		if err := get(ctx, ns, "demo", pool); err != nil {
			return err
		}
		st := pool.Status
		if st.DrainingReplicas != 1 || ptr.Deref(st.ReadyReplicas, 0) != 1 || !st.Pods[1].Draining || st.Pods[1].Ready {
			return fmt.Errorf("status %+v", st)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ReadyCondition); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonPodsNotReady {
			return fmt.Errorf("Ready %+v", c)
		}
		return nil
	})
}
