package sfupool

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/apply"
	"github.com/switchboard-rtc/switchboard/controllers/index"
	"github.com/switchboard-rtc/switchboard/controllers/keys"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
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
	token, err := r.fleetToken(ctx, s.pool)
	if err != nil {
		return err
	}
	fleet := render.Fleet(s.pool, token)
	fleet.Ordinals = render.OrdinalRange(s.ordinalStart, ptr.Deref(s.replicas, 0))
	render.SetFleet(&s.podConfig, fleet)
	if r.HubURL != "" {
		s.podConfig.Hub, s.podConfig.HubToken = r.HubURL, r.HubToken
	}
	return nil
}

// fleetToken returns the pool's fleet token, generating it into the
// <pool>-fleet Secret (owned by the pool) the first time. The cache is
// read first; only a miss reads past it, so a token is never generated
// twice because the cache lagged.
func (r *Reconciler) fleetToken(ctx context.Context, pool *v1alpha1.SFUPool) (string, error) {
	tmpl := render.FleetSecret(pool)
	var have corev1.Secret
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(tmpl), &have)
	if err == nil {
		if t := string(have.Data[render.FleetTokenKey]); t != "" {
			return t, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("get fleet secret of sfupool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	if err := controllerutil.SetControllerReference(pool, tmpl, r.Client.Scheme()); err != nil {
		return "", fmt.Errorf("fleet secret of sfupool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	var reader client.Reader = r.Client
	if r.APIReader != nil {
		reader = r.APIReader
	}
	v, err := keys.LoadOrCreate(ctx, reader, r.Client, tmpl, render.FleetTokenKey)
	if err != nil {
		return "", fmt.Errorf("fleet token of sfupool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	return v[render.FleetTokenKey], nil
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
	render.SetSFUScale(children, s.replicas, s.ordinalStart)
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
		if _, ok := obj.(*appsv1.StatefulSet); ok && s.scaled != nil {
			at := metav1.NewTime(s.now)
			s.scaledAt = &at
		}
	}
	return nil
}

// reconcileWorkload reads the SFU StatefulSet, the pods and their reports.
// It writes nothing. A load-driven pool reads the StatefulSet past the
// cache: its last scale must be seen before the next one is decided.
func (r *Reconciler) reconcileWorkload(ctx context.Context, s *scope) error {
	var sts appsv1.StatefulSet
	var reader client.Reader = r.Client
	if s.pool.Spec.Autoscaling.LoadDriven() && r.APIReader != nil {
		reader = r.APIReader
	}
	err := reader.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: render.SFUName(s.pool)}, &sts)
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
	s.reports = map[string]hub.PodStatus{}
	if r.Reports != nil {
		// SFU pods by name: <pool>-sfu-<ordinal>; TURN pods report too.
		prefix := render.SFUName(s.pool) + "-"
		for _, p := range r.Reports.Pods(s.pool.Namespace + "/" + s.pool.Name) {
			if _, ok := ordinalOf(p.Pod, prefix); ok {
				s.reports[p.Pod] = p
			}
		}
		s.finals = finalReports(r.Reports, s)
	}
	return nil
}

// finalReports looks up the final reports of the pods in the stored status
// (those whose drain may have ended since) and of the pods found now.
func finalReports(reports PodReports, s *scope) map[string]hub.PodStatus {
	pool := s.pool.Namespace + "/" + s.pool.Name
	out := map[string]hub.PodStatus{}
	look := func(name string) {
		if _, done := out[name]; done {
			return
		}
		if f, ok := reports.LastFinal(pool, name); ok {
			out[name] = f
		}
	}
	for _, p := range s.pool.Status.Pods {
		look(p.Name)
	}
	for i := range s.pods {
		look(s.pods[i].Name)
	}
	return out
}
