package sfupool

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/apply"
	"github.com/switchboard-rtc/switchboard/controllers/index"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// reconcileConfig collects the pool's apps and their credentials and renders
// the pod configuration. It writes nothing.
func (r *Reconciler) reconcileConfig(ctx context.Context, s *scope) error {
	var apps v1alpha1.CallsAppList
	if err := r.Client.List(ctx, &apps, client.InNamespace(s.pool.Namespace), client.MatchingFields{index.PoolRef: s.pool.Name}); err != nil {
		return fmt.Errorf("list callsapps of sfupool %s/%s: %w", s.pool.Namespace, s.pool.Name, err)
	}
	sort.Slice(apps.Items, func(i, j int) bool { return apps.Items[i].Name < apps.Items[j].Name })
	s.apps = s.apps[:0]
	for i := range apps.Items {
		app := &apps.Items[i]
		if !app.DeletionTimestamp.IsZero() {
			continue
		}
		var secret corev1.Secret
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: app.Namespace, Name: render.CredentialsSecretName(app)}, &secret)
		if apierrors.IsNotFound(err) {
			// The CallsApp controller has not written it yet; its creation
			// enqueues this pool again.
			continue
		}
		if err != nil {
			return fmt.Errorf("get credentials of callsapp %s/%s: %w", app.Namespace, app.Name, err)
		}
		s.apps = append(s.apps, render.PoolApp{App: app, Credentials: render.CredentialsFromSecretData(secret.Data)})
	}
	s.podConfig = render.PodConfig(s.pool, s.apps)
	if s.podConfig.TURN.Enabled {
		ips, err := r.turnPodIPs(ctx, s)
		if err != nil {
			return err
		}
		render.SetTURNRelayIPs(&s.podConfig, ips)
	}
	if r.HubURL != "" {
		s.podConfig.Hub, s.podConfig.HubToken = r.HubURL, r.HubToken
	}
	return nil
}

// turnPodIPs lists the IPs of the pool's TURN pods (draining ones too: they
// still relay their allocations), for turn.relayIPs. Pods that have ended
// or have no IP yet are left out; a new IP enqueues the pool through the
// pod watch.
func (r *Reconciler) turnPodIPs(ctx context.Context, s *scope) ([]string, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(s.pool.Namespace), client.MatchingLabels(render.SelectorLabels(s.pool, "turn"))); err != nil {
		return nil, fmt.Errorf("list turn pods of sfupool %s/%s: %w", s.pool.Namespace, s.pool.Name, err)
	}
	var ips []string
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ips = append(ips, p.Status.PodIP)
	}
	return ips, nil
}

// reconcileTLSSecret checks that the TURN TLS Secret exists. A missing one
// degrades the pool but does not stop it: the TURN pods wait for the volume.
func (r *Reconciler) reconcileTLSSecret(ctx context.Context, s *scope) error {
	s.tlsSecretMissing = ""
	ref := s.pool.Spec.TURN.TLSSecretRef
	if !s.pool.Spec.TURNEnabled() || ref == nil || r.APIReader == nil {
		return nil
	}
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: ref.Name}, &secret)
	if apierrors.IsNotFound(err) {
		s.tlsSecretMissing = ref.Name
		return nil
	}
	if err != nil {
		return fmt.Errorf("get turn tls secret %s/%s: %w", s.pool.Namespace, ref.Name, err)
	}
	return nil
}

// reconcileChildren applies every rendered child and deletes the ones the
// spec turned off. Each child is written only when it differs.
func (r *Reconciler) reconcileChildren(ctx context.Context, s *scope) error {
	logger := log.FromContext(ctx)
	children, err := render.Children(s.pool, s.podConfig)
	if err != nil {
		return err
	}
	s.applyErr = nil
	if err := r.keepAutoscaledReplicas(ctx, s, children); err != nil {
		return err
	}
	for _, c := range children {
		var res apply.Result
		var err error
		obj := c.Object
		if obj != nil {
			res, err = apply.Object(ctx, r.Client, s.pool, obj)
		} else {
			obj = c.Absent
			res, err = apply.Absent(ctx, r.Client, s.pool, obj)
		}
		if err != nil {
			s.applyErr = err
			return err
		}
		if res != apply.Unchanged {
			logger.V(1).Info("child written", "kind", fmt.Sprintf("%T", obj), "name", obj.GetName(), "result", string(res))
		}
	}
	return nil
}

// reconcileWorkload reads the SFU StatefulSet and pods for the status. It
// writes nothing.
func (r *Reconciler) reconcileWorkload(ctx context.Context, s *scope) error {
	var sts appsv1.StatefulSet
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: render.SFUName(s.pool)}, &sts)
	switch {
	case apierrors.IsNotFound(err):
		s.sts = nil
	case err != nil:
		return fmt.Errorf("get statefulset of sfupool %s/%s: %w", s.pool.Namespace, s.pool.Name, err)
	default:
		s.sts = &sts
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(s.pool.Namespace), client.MatchingLabels(render.SelectorLabels(s.pool, "sfu"))); err != nil {
		return fmt.Errorf("list pods of sfupool %s/%s: %w", s.pool.Namespace, s.pool.Name, err)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	s.pods = pods.Items
	return nil
}

// keepAutoscaledReplicas sets the replicas of the rendered StatefulSet to
// what the StatefulSet has now when an autoscaler owns them (minReplicas
// before it exists). Leaving the field out of the apply instead would, on
// the switch from fixed replicas, drop the operator's ownership and let the
// API server default replicas to 1, deleting running pods. Applying the
// current value keeps the operator a co-owner that never moves it.
func (r *Reconciler) keepAutoscaledReplicas(ctx context.Context, s *scope, children []render.Child) error {
	a := s.pool.Spec.Autoscaling
	if a == nil {
		return nil
	}
	for _, c := range children {
		want, ok := c.Object.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		replicas := a.MinReplicas
		var have appsv1.StatefulSet
		err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), &have)
		switch {
		case err == nil && have.Spec.Replicas != nil:
			replicas = *have.Spec.Replicas
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get statefulset %s: %w", want.Name, err)
		}
		want.Spec.Replicas = &replicas
	}
	return nil
}
