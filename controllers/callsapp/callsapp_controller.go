package callsapp

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/apply"
	"github.com/switchboard-rtc/switchboard/controllers/index"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// conflictRequeue is how soon a reconcile whose status write met a newer
// object runs again.
const conflictRequeue = 200 * time.Millisecond

// Reconciler reconciles CallsApp objects.
type Reconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads past the cache. A credentials Secret missing from the
	// cache is looked up here before anything is generated, so a stale
	// cache can never cause new credentials.
	APIReader client.Reader
	// Rand is the source of credentials; crypto/rand when nil.
	Rand io.Reader
	// Recorder records Events on transitions (credentials created, quota
	// exceeded or restored, pool not found). SetupWithManager fills it
	// from the manager when nil; left nil, nothing is recorded.
	Recorder events.EventRecorder

	// rendered remembers, per pool config Secret, the apps it renders, so
	// that a thousand apps checking one configuration parse it once per
	// version rather than once each.
	rendered renderedCache
}

// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=callsapps,verbs=get;list;watch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=callsapps/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch

// scope is what the phases of one reconcile share.
type scope struct {
	// app is the object being reconciled; its status is written once, in
	// Reconcile's defer. Set by Reconcile.
	app *v1alpha1.CallsApp
	// creds are the app's credentials. Set by reconcileCredentials.
	creds render.AppCredentials
	// credsErr is why the credentials could not be read or written. Set by
	// reconcileCredentials.
	credsErr error
	// pool is the app's SFUPool, nil when it does not exist. Set by reconcilePool.
	pool *v1alpha1.SFUPool
	// rendered tells whether the pool's configuration holds the app. Set by reconcilePool.
	rendered bool
	// rotation is the rotate-secret value handled by this reconcile (to
	// record in status); rotatedNow says the secret was replaced now. Set
	// by reconcileCredentials.
	rotation   string
	rotatedNow bool
	// now is the reconcile's time. Set by Reconcile.
	now metav1.Time
}

// Reconcile brings one app's credentials and status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (res reconcile.Result, reterr error) {
	logger := log.FromContext(ctx)
	app := &v1alpha1.CallsApp{}
	if err := r.Client.Get(ctx, req.NamespacedName, app); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !app.DeletionTimestamp.IsZero() {
		// The credentials Secret goes with the app (owner reference).
		return reconcile.Result{}, nil
	}
	before := app.DeepCopy()
	s := &scope{app: app, now: metav1.Now()}

	defer func() {
		setStatus(s, reterr == nil)
		if equality.Semantic.DeepEqual(before.Status, app.Status) {
			return
		}
		if conflict, err := apply.Status(ctx, r.Client, app, before); err != nil {
			if conflict && reterr == nil {
				logger.V(1).Info("status changed meanwhile; reconciling again", "callsapp", req.NamespacedName)
				res = reconcile.Result{RequeueAfter: conflictRequeue}
				return
			}
			logger.Error(err, "patch status", "callsapp", req.NamespacedName)
			if reterr == nil {
				reterr = fmt.Errorf("patch status of callsapp %s: %w", req.NamespacedName, err)
			}
			return
		}
		r.recordTransitions(before, app)
	}()

	for _, phase := range []func(context.Context, *scope) error{
		r.reconcileCredentials,
		r.reconcilePool,
	} {
		if err := phase(ctx, s); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

func (r *Reconciler) rand() io.Reader {
	if r.Rand != nil {
		return r.Rand
	}
	return rand.Reader
}

// SetupWithManager registers the controller and its watches. index.Setup
// must have run on the manager.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("switchboard")
	}
	return builder.ControllerManagedBy(mgr).
		Named("callsapp").
		For(&v1alpha1.CallsApp{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, usageChanged(), rotateSecretChanged()))).
		Owns(&corev1.Secret{}).
		Watches(&v1alpha1.SFUPool{}, handler.EnqueueRequestsFromMapFunc(r.appsOfPool)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.appsOfConfigSecret)).
		Complete(r)
}

// usageChanged passes status updates that can flip QuotaExceeded.
func usageChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.CallsApp)
			n, ok2 := e.ObjectNew.(*v1alpha1.CallsApp)
			return ok1 && ok2 && !equality.Semantic.DeepEqual(o.Status.Usage, n.Status.Usage)
		},
	}
}

// rotateSecretChanged passes updates that change the rotate-secret
// annotation (annotations do not bump the generation).
func rotateSecretChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetAnnotations()[v1alpha1.AnnotationRotateSecret] != e.ObjectNew.GetAnnotations()[v1alpha1.AnnotationRotateSecret]
		},
	}
}

// appsOfPool maps a pool to the apps that name it.
func (r *Reconciler) appsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	return r.appsNaming(ctx, o.GetNamespace(), o.GetName())
}

// appsOfConfigSecret maps a pool's config Secret to the pool's apps that
// wait for it (Ready not yet past ConfigPending): a new rendering may be
// what makes them Ready. Apps already rendered are left alone, so a pool of
// a thousand apps does not re-check all of them on each rendering; an app
// leaves a rendering only through its own events (deletion, new poolRef),
// which reconcile it anyway.
func (r *Reconciler) appsOfConfigSecret(ctx context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	pool := l[v1alpha1.LabelPool]
	if pool == "" || l[v1alpha1.LabelComponent] != "" || o.GetName() != pool+"-config" {
		return nil
	}
	return r.appsNaming(ctx, o.GetNamespace(), pool, func(a *v1alpha1.CallsApp) bool {
		c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ReadyCondition)
		return c == nil || c.Reason == v1alpha1.ReasonConfigPending || c.Reason == v1alpha1.ReasonReconciling ||
			c.Reason == v1alpha1.ReasonPoolNotFound
	})
}

func (r *Reconciler) appsNaming(ctx context.Context, ns, pool string, keep ...func(*v1alpha1.CallsApp) bool) []reconcile.Request {
	var apps v1alpha1.CallsAppList
	if err := r.Client.List(ctx, &apps, client.InNamespace(ns), client.MatchingFields{index.PoolRef: pool}); err != nil {
		log.FromContext(ctx).Error(err, "list callsapps of pool", "namespace", ns, "sfupool", pool)
		return nil
	}
	out := make([]reconcile.Request, 0, len(apps.Items))
	for i := range apps.Items {
		a := &apps.Items[i]
		if len(keep) > 0 && !keep[0](a) {
			continue
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Name}})
	}
	return out
}
