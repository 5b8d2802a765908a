package sfupool_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/sfupool"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

// renderedConfig reads the pool's config Secret as the pods parse it.
func renderedConfig(ctx context.Context, ns string) (*config.Pod, error) {
	var cfg corev1.Secret
	if err := get(ctx, ns, "demo-config", &cfg); err != nil {
		return nil, err
	}
	return config.Parse(cfg.Data[config.FileName])
}

func restartHash(ctx context.Context, ns string) (string, error) {
	var sts appsv1.StatefulSet
	if err := get(ctx, ns, "demo-sfu", &sts); err != nil {
		return "", err
	}
	return sts.Spec.Template.Annotations[v1alpha1.AnnotationRestartHash], nil
}

// The operator generates one fleet token per pool, keeps it in the
// pool's <pool>-fleet Secret across reconciles and manager restarts, and
// renders it with the peer template and the StatefulSet's ordinals; a
// scale changes the ordinals the pods read live and does not roll them.
func TestFleetTokenIsGeneratedOnceAndOrdinalsFollowTheScale(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	stop := startManager(t, ns, controllers.Options{})
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var token string
	testenv.Eventually(t, "fleet rendered with the token of the fleet Secret", func() error {
		var sec corev1.Secret
		if err := get(ctx, ns, "demo-fleet", &sec); err != nil {
			return err
		}
		token = string(sec.Data["token"])
		cfg, err := renderedConfig(ctx, ns)
		if err != nil {
			return err
		}
		if cfg.Fleet == nil || cfg.Fleet.Token != token {
			return fmt.Errorf("fleet section %+v does not carry the Secret's token", cfg.Fleet)
		}
		if !slices.Equal(cfg.Fleet.Ordinals, []int{0, 1}) {
			return fmt.Errorf("ordinals %v, want [0 1]", cfg.Fleet.Ordinals)
		}
		if cfg.Fleet.PeerTemplate != "demo-sfu-{ordinal}.demo-sfu-internal."+ns+".svc:8080" {
			return fmt.Errorf("peer template %q", cfg.Fleet.PeerTemplate)
		}
		return nil
	})
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(token) {
		t.Fatalf("fleet token is not 32 random bytes in hex (%d characters)", len(token))
	}
	var sec corev1.Secret
	if err := get(ctx, ns, "demo-fleet", &sec); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(&sec); ref == nil || ref.UID != pool.UID {
		t.Fatalf("fleet Secret owner %+v, want the pool", ref)
	}
	var hash string
	testenv.Eventually(t, "statefulset written", func() error {
		var err error
		hash, err = restartHash(ctx, ns)
		return err
	})

	// A new manager (operator restart) keeps the token.
	stop()
	startManager(t, ns, controllers.Options{})
	env.Update(t, pool, func() { pool.Spec.Replicas = ptr.To(int32(3)) })
	testenv.Eventually(t, "ordinals follow the new scale", func() error {
		cfg, err := renderedConfig(ctx, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(cfg.Fleet.Ordinals, []int{0, 1, 2}) {
			return fmt.Errorf("ordinals %v, want [0 1 2]", cfg.Fleet.Ordinals)
		}
		if cfg.Fleet.Token != token {
			return fmt.Errorf("the token changed across a manager restart")
		}
		return nil
	})
	if h, err := restartHash(ctx, ns); err != nil || h != hash {
		t.Fatalf("restart hash %q -> %q (%v): a scale would roll every pod", hash, h, err)
	}
}

// startManager runs the controllers with options until the test ends or
// the returned stop is called.
func startManager(t *testing.T, ns string, o controllers.Options) (stop func()) {
	t.Helper()
	var stopped bool
	var cleanup []func()
	sub := &stopper{TB: t, add: func(f func()) { cleanup = append(cleanup, f) }}
	env.StartManagerWith(sub, ns, o)
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	t.Cleanup(stop)
	return stop
}

// stopper lets a test stop a manager before the test ends by catching
// the manager's Cleanup.
type stopper struct {
	testing.TB
	add func(func())
}

func (s *stopper) Cleanup(f func()) { s.add(f) }

// fakePods stands for the pods' usage reports through a real ledger.
type fakePods struct {
	t      *testing.T
	ledger *hub.Ledger
	pool   string
	seq    map[string]uint64
}

const testAppID = "0123456789abcdef0123456789abcdef"

func newFakePods(t *testing.T, ns string) *fakePods {
	l := hub.NewLedger(hub.LedgerOptions{StaleAfter: time.Hour})
	l.SetApp(testAppID, hub.DefaultBilling)
	l.SetReady()
	return &fakePods{t: t, ledger: l, pool: ns + "/demo", seq: map[string]uint64{}}
}

// report sends one usage report of pod with sessions live sessions.
func (f *fakePods) report(pod string, sessions int64, mutate ...func(*usage.Report)) {
	f.t.Helper()
	f.seq[pod]++
	r := usage.Report{Pod: pod, Pool: f.pool, Kind: usage.KindSFU, BootID: "boot-" + pod, BootTime: time.Now(),
		Seq: f.seq[pod], SentAt: time.Now(), Apps: []usage.AppReport{{App: testAppID, Sessions: sessions, Tracks: 2 * sessions}}}
	for _, m := range mutate {
		m(&r)
	}
	if _, err := f.ledger.Apply(r); err != nil {
		f.t.Fatalf("report of %s: %v", pod, err)
	}
}

// createSFUPod makes a running, ready SFU pod of pool demo. It is bound to
// a node, so its deletion is graceful (the API server keeps it, with a
// deletionTimestamp, until the kubelet or a forced delete removes it).
func createSFUPod(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			v1alpha1.LabelName: "switchboard", v1alpha1.LabelInstance: "demo", v1alpha1.LabelPool: "demo",
			v1alpha1.LabelComponent: "sfu", v1alpha1.LabelManagedBy: v1alpha1.ManagedBy,
		}},
		Spec: corev1.PodSpec{
			NodeName: "node-a", TerminationGracePeriodSeconds: ptr.To(int64(315)), AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "sfu", Image: "switchboard"}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

func poolPod(ctx context.Context, ns, name string) (v1alpha1.PoolPod, *v1alpha1.SFUPool, error) {
	var p v1alpha1.SFUPool
	if err := get(ctx, ns, "demo", &p); err != nil {
		return v1alpha1.PoolPod{}, nil, err
	}
	for _, pp := range p.Status.Pods {
		if pp.Name == name {
			return pp, &p, nil
		}
	}
	return v1alpha1.PoolPod{}, &p, fmt.Errorf("pod %s not in status (%d pods)", name, len(p.Status.Pods))
}

// poolEvents lists the Events about pool demo with reason.
func poolEvents(ctx context.Context, ns, reason string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == "demo" && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out, nil
}

// eventsAbout counts the Events naming pod, repeats included (a repeated
// Event is one object whose series counts the repeats).
func eventsAbout(evs []eventsv1.Event, pod string) (n int, notes []string) {
	for _, e := range evs {
		if strings.Contains(e.Note, "pod "+pod+" ") {
			n += recorded(e)
			notes = append(notes, e.Type+": "+e.Note)
		}
	}
	return n, notes
}

// recorded is how many times an Event was recorded.
func recorded(e eventsv1.Event) int {
	if e.Series != nil {
		return int(e.Series.Count)
	}
	return 1
}

// A pod that drains shows in status with its remaining sessions and
// deadline from its reports; DrainStarted and DrainFinished are recorded
// once each, across an operator restart too, with the sessions of the
// report that said the pod drains and of its final report (not an older
// count in status), and a drain that runs into its deadline says so.
func TestDrainingPodsShowInStatusWithEventsOnceEach(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	pods := newFakePods(t, ns)
	stop := startManager(t, ns, controllers.Options{Reports: pods.ledger})
	pods.report("demo-sfu-0", 3)
	pods.report("demo-sfu-1", 4)
	if err := env.Client.Create(ctx, newPool(ns)); err != nil {
		t.Fatal(err)
	}
	createSFUPod(t, ns, "demo-sfu-0")
	createSFUPod(t, ns, "demo-sfu-1")
	testenv.Eventually(t, "pods ready, not draining", func() error {
		pp, _, err := poolPod(ctx, ns, "demo-sfu-0")
		if err != nil {
			return err
		}
		if !pp.Ready || pp.Draining || pp.DrainDeadline != nil {
			return fmt.Errorf("pod 0 %+v", pp)
		}
		return nil
	})

	// Pod 0 gets SIGTERM (its deletion): it reports draining, 2 sessions
	// left, deadline in 5 minutes.
	deadline := time.Now().Add(5 * time.Minute).UTC().Truncate(time.Second)
	pods.report("demo-sfu-0", 2, func(r *usage.Report) { r.Draining, r.DrainDeadline = true, &deadline })
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-0", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "pod 0 draining in status", func() error {
		pp, p, err := poolPod(ctx, ns, "demo-sfu-0")
		if err != nil {
			return err
		}
		if !pp.Draining || pp.Ready || pp.Sessions != 2 || pp.Tracks != 4 || pp.DrainDeadline == nil || !pp.DrainDeadline.Time.Equal(deadline) {
			return fmt.Errorf("pod 0 %+v", pp)
		}
		if p.Status.DrainingReplicas != 1 || ptr.Deref(p.Status.ReadyReplicas, 0) != 1 {
			return fmt.Errorf("draining %d ready %v", p.Status.DrainingReplicas, p.Status.ReadyReplicas)
		}
		return nil
	})
	testenv.Eventually(t, "DrainStarted for pod 0 with the sessions of its draining report", func() error {
		return eventNote(ctx, ns, sfupool.EventDrainStarted, "demo-sfu-0",
			"Normal: pod demo-sfu-0 started draining with 2 sessions; it takes no new ones and stops by "+deadline.Format(time.RFC3339))
	})
	// The operator restarts mid-drain: the stored status says the drain
	// started already, so the new manager does not record it again.
	stop()
	startManager(t, ns, controllers.Options{Reports: pods.ledger})

	// One session ends; the status follows (the pool is polled while a pod
	// drains). Then the last one ends and the pod stops at once: its final
	// report, with 0 sessions, comes before any status shows 0.
	pods.report("demo-sfu-0", 1, func(r *usage.Report) { r.Draining, r.DrainDeadline = true, &deadline })
	testenv.Eventually(t, "pod 0's sessions reach 1 in status", func() error {
		pp, _, err := poolPod(ctx, ns, "demo-sfu-0")
		if err != nil {
			return err
		}
		if pp.Sessions != 1 {
			return fmt.Errorf("pod 0 sessions %d", pp.Sessions)
		}
		return nil
	})
	pods.report("demo-sfu-0", 0, func(r *usage.Report) { r.Final, r.Draining, r.DrainDeadline = true, true, &deadline })
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-0", Namespace: ns}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "DrainFinished for pod 0 with the sessions of its final report", func() error {
		return eventNote(ctx, ns, sfupool.EventDrainFinished, "demo-sfu-0",
			"Normal: pod demo-sfu-0 finished draining with 0 sessions left (last reported): its sessions ended before the drain timeout")
	})

	// Pod 1 is deleted while its last report (before its session came)
	// says 0 sessions; it reports draining, 1 session left and a deadline
	// 2 s away, only after the operator has seen the deletion.
	pods.report("demo-sfu-1", 0)
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-1", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "pod 1 not ready once deleted", func() error {
		pp, _, err := poolPod(ctx, ns, "demo-sfu-1")
		if err != nil {
			return err
		}
		if pp.Ready {
			return fmt.Errorf("pod 1 %+v", pp)
		}
		return nil
	})
	short := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	pods.report("demo-sfu-1", 1, func(r *usage.Report) { r.Draining, r.DrainDeadline = true, &short })
	testenv.Eventually(t, "DrainStarted for pod 1 with the sessions and deadline of its draining report", func() error {
		return eventNote(ctx, ns, sfupool.EventDrainStarted, "demo-sfu-1",
			"Normal: pod demo-sfu-1 started draining with 1 sessions; it takes no new ones and stops by "+short.Format(time.RFC3339))
	})
	// The deadline cuts its session off: its final report says 1 left.
	time.Sleep(time.Until(short) + 100*time.Millisecond)
	pods.report("demo-sfu-1", 1, func(r *usage.Report) { r.Final, r.Draining, r.DrainDeadline = true, true, &short })
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-sfu-1", Namespace: ns}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "DrainFinished for pod 1 at its timeout", func() error {
		return eventNote(ctx, ns, sfupool.EventDrainFinished, "demo-sfu-1",
			"Warning: pod demo-sfu-1 finished draining with 1 sessions left (last reported): the drain timeout was reached")
	})

	// Exactly once each, even after more reconciles (drain polling, pod
	// events, a touched pool).
	p := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns}}
	env.Update(t, p, func() { p.Spec.TrustedProxies = []string{"10.0.0.0/8"} })
	time.Sleep(3 * time.Second)
	for _, reason := range []string{sfupool.EventDrainStarted, sfupool.EventDrainFinished} {
		evs, err := poolEvents(ctx, ns, reason)
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range []string{"demo-sfu-0", "demo-sfu-1"} {
			if n, notes := eventsAbout(evs, pod); n != 1 {
				t.Errorf("%d %s Events for %s, want 1: %q", n, reason, pod, notes)
			}
		}
	}
}

// eventNote checks that the pool's first Event of reason about pod says
// exactly want.
func eventNote(ctx context.Context, ns, reason, pod, want string) error {
	evs, err := poolEvents(ctx, ns, reason)
	if err != nil {
		return err
	}
	n, notes := eventsAbout(evs, pod)
	if n == 0 {
		return fmt.Errorf("no %s Event for %s yet", reason, pod)
	}
	if notes[0] != want {
		return fmt.Errorf("%s note %q, want %q", reason, notes[0], want)
	}
	return nil
}
