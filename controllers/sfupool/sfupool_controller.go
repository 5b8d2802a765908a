package sfupool

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/apply"
	"github.com/switchboard-rtc/switchboard/controllers/autoscale"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// conflictRequeue is how soon a reconcile whose status write met a newer
// object runs again.
const conflictRequeue = 200 * time.Millisecond

// Reconciler reconciles SFUPool objects.
type Reconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads past the cache, for objects the cache does not hold
	// (the user's TURN TLS Secret).
	APIReader client.Reader
	// HubURL and HubToken, when set, are rendered into the pod config so
	// pods follow the manager's hub and report usage to it.
	HubURL, HubToken string
	// Recorder records Events on transitions (Degraded set or cleared,
	// Ready reached, a pod's drain started or finished, a load-driven
	// scale). SetupWithManager fills it from the manager when nil; left
	// nil, nothing is recorded.
	Recorder events.EventRecorder
	// Reports is the hub's view of the pods (their usage reports: load,
	// draining, drain deadline), usually the metering ledger. Nil: pod load
	// and drain come only from the pod objects, and load-driven pools keep
	// their size.
	Reports PodReports
	// Clock is the time source (time.Now when nil).
	Clock func() time.Time
	// LoadInterval is how often a load-driven pool is sampled and
	// reconsidered (default DefaultLoadInterval).
	LoadInterval time.Duration

	historyOnce sync.Once
	history     *autoscale.History
}

// PodReports gives the pods of a pool ("namespace/name") as their latest
// usage reports show them, and a pod's latest final report with the
// sessions it still had when it stopped; *hub.Ledger implements it.
type PodReports interface {
	Pods(pool string) []hub.PodStatus
	LastFinal(pool, pod string) (hub.PodStatus, bool)
}

// DefaultLoadInterval is how often a load-driven pool is sampled.
const DefaultLoadInterval = 10 * time.Second

// drainPoll is how often the status of a pool with draining pods is
// refreshed (remaining sessions; the end of the drain).
const drainPoll = 5 * time.Second

func (r *Reconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

func (r *Reconciler) loadInterval() time.Duration {
	if r.LoadInterval > 0 {
		return r.LoadInterval
	}
	return DefaultLoadInterval
}

func (r *Reconciler) samples() *autoscale.History {
	r.historyOnce.Do(func() { r.history = autoscale.NewHistory() })
	return r.history
}

// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools,verbs=get;list;watch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=callsapps,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=statefulsets;deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts;secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch

// scope is what the phases of one reconcile share.
type scope struct {
	// pool is the object being reconciled; its status is written once, in
	// Reconcile's defer. Set by Reconcile.
	pool *v1alpha1.SFUPool
	// apps are the pool's CallsApps with their credentials. Set by reconcileConfig.
	apps []render.PoolApp
	// podConfig is the rendered pod configuration. Set by reconcileConfig.
	podConfig config.Pod
	// applyErr is the first child write that failed. Set by reconcileChildren.
	applyErr error
	// tlsSecretMissing names a missing TURN TLS Secret. Set by reconcileTLSSecret.
	tlsSecretMissing string
	// sts is the SFU StatefulSet before this reconcile's write (nil before
	// it exists). Set by reconcileWorkload.
	sts *appsv1.StatefulSet
	// pods are the pool's SFU pods. Set by reconcileWorkload.
	pods []corev1.Pod
	// reports are the SFU pods' latest usage reports by pod name. Set by
	// reconcileWorkload.
	reports map[string]hub.PodStatus
	// finals are the latest final reports of the SFU pods listed in the
	// stored status or found now, by pod name. Set by reconcileWorkload.
	finals map[string]hub.PodStatus
	// replicas and ordinalStart are the SFU StatefulSet's scale to apply
	// (replicas nil: keep what the rendering has). Set by reconcileScale.
	replicas     *int32
	ordinalStart int32
	// scaled is a load-driven change of scale, applied once reconcileChildren
	// has written the StatefulSet. Set by reconcileScale.
	scaled *autoscale.Decision
	// scaledAt is when scaled was applied. Set by reconcileChildren.
	scaledAt *metav1.Time
	// now is the reconcile's time. Set by Reconcile.
	now time.Time
}

// Reconcile brings one pool's children and status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, reterr error) {
	logger := log.FromContext(ctx)
	pool := &v1alpha1.SFUPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.samples().Forget(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !pool.DeletionTimestamp.IsZero() {
		r.samples().Forget(req.String())
		// Children go with the pool through their owner references; pods
		// drain within their grace period. Nothing outside the cluster to
		// clean up, so no finalizer.
		return ctrl.Result{}, nil
	}
	before := pool.DeepCopy()
	s := &scope{pool: pool, now: r.now()}

	defer func() {
		setStatus(s, reterr == nil)
		if equality.Semantic.DeepEqual(before.Status, pool.Status) {
			return
		}
		if conflict, err := apply.Status(ctx, r.Client, pool, before); err != nil {
			if conflict && reterr == nil {
				logger.V(1).Info("status changed meanwhile; reconciling again", "sfupool", req.NamespacedName)
				res = ctrl.Result{RequeueAfter: conflictRequeue}
				return
			}
			logger.Error(err, "patch status", "sfupool", req.NamespacedName)
			if reterr == nil {
				reterr = fmt.Errorf("patch status of sfupool %s: %w", req.NamespacedName, err)
			}
			return
		}
		r.recordTransitions(before, pool, s)
	}()

	for _, phase := range []func(context.Context, *scope) error{
		r.reconcileWorkload,
		r.reconcileScale,
		r.reconcileConfig,
		r.reconcileTLSSecret,
		r.reconcileChildren,
	} {
		if err := phase(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.recordScale(s)
	var after time.Duration
	if s.tlsSecretMissing != "" {
		// The TLS Secret is not in the cache (user Secrets are not watched):
		// look again later.
		after = 30 * time.Second
	}
	if s.pool.Spec.Autoscaling.LoadDriven() {
		after = minPositive(after, r.loadInterval())
	} else {
		r.samples().Forget(req.String())
	}
	if draining(s) {
		after = minPositive(after, drainPoll)
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || b < a {
		return b
	}
	return a
}

// SetupWithManager registers the controller and its watches. index.Setup
// must have run on the manager.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("switchboard")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("sfupool").
		For(&v1alpha1.SFUPool{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.StatefulSet{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&corev1.Secret{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Watches(&v1alpha1.CallsApp{}, appHandler{}, builder.WithPredicates(appRenderChanged())).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.poolOfCredentials)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(poolOfPod)).
		Complete(r)
}

// appRenderChanged passes app events that can change the pool's rendering:
// creation, deletion, a spec change, the start of deletion or a flip of
// QuotaExceeded. Usage and live-load updates of status do not pass.
func appRenderChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.CallsApp)
			n, ok2 := e.ObjectNew.(*v1alpha1.CallsApp)
			if !ok1 || !ok2 {
				return false
			}
			return o.Generation != n.Generation ||
				o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() ||
				meta.IsStatusConditionTrue(o.Status.Conditions, v1alpha1.QuotaExceededCondition) !=
					meta.IsStatusConditionTrue(n.Status.Conditions, v1alpha1.QuotaExceededCondition)
		},
	}
}

// appHandler enqueues the pool an app names, and on an update also the pool
// it named before, so a moved app leaves its old pool's configuration.
type appHandler struct{}

func (appHandler) Create(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePoolOf(e.Object, q)
}

func (appHandler) Update(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePoolOf(e.ObjectOld, q)
	enqueuePoolOf(e.ObjectNew, q)
}

func (appHandler) Delete(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePoolOf(e.Object, q)
}

func (appHandler) Generic(_ context.Context, e event.TypedGenericEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePoolOf(e.Object, q)
}

func enqueuePoolOf(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if app, ok := o.(*v1alpha1.CallsApp); ok && app.Spec.PoolRef.Name != "" {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: app.Namespace, Name: app.Spec.PoolRef.Name}})
	}
}

// poolOfCredentials maps an app's credentials Secret to the app's pool.
func (r *Reconciler) poolOfCredentials(ctx context.Context, o client.Object) []reconcile.Request {
	name, ok := o.GetLabels()[v1alpha1.LabelApp]
	if !ok {
		return nil
	}
	app := &v1alpha1.CallsApp{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: name}, app); err != nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: app.Namespace, Name: app.Spec.PoolRef.Name}}}
}

func poolOfPod(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[v1alpha1.LabelManagedBy] != v1alpha1.ManagedBy || l[v1alpha1.LabelPool] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[v1alpha1.LabelPool]}}}
}
