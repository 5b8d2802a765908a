package callsapp

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// ErrSecretNotOwned is reported when a Secret with the credentials name
// exists and another object controls it; the operator will not touch it.
var ErrSecretNotOwned = errors.New("credentials secret is controlled by another object")

// reconcileCredentials makes sure the app's credentials Secret exists and
// holds every credential, generating only what is missing. A new Secret is
// written with Create, which fails if one already exists: unlike an apply,
// it can never replace credentials that a stale cache did not show.
func (r *Reconciler) reconcileCredentials(ctx context.Context, s *scope) error {
	app := s.app
	key := types.NamespacedName{Namespace: app.Namespace, Name: render.CredentialsSecretName(app)}
	withTURN := app.Spec.TURNEnabled()

	var secret corev1.Secret
	err := r.Client.Get(ctx, key, &secret)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		err = r.APIReader.Get(ctx, key, &secret)
	}
	switch {
	case apierrors.IsNotFound(err):
		return r.createCredentials(ctx, s, key, withTURN)
	case err != nil:
		s.credsErr = err
		return fmt.Errorf("get credentials of callsapp %s/%s: %w", app.Namespace, app.Name, err)
	}

	if ctl := metav1.GetControllerOf(&secret); ctl != nil && ctl.UID != app.UID {
		s.credsErr = fmt.Errorf("%w: secret %s is controlled by %s %s", ErrSecretNotOwned, key.Name, ctl.Kind, ctl.Name)
		return nil
	}
	current := render.CredentialsFromSecretData(secret.Data)
	rotate := rotationRequested(app)
	if rotate != "" && secret.Annotations[v1alpha1.AnnotationRotatedFor] == rotate {
		// Rotated already; only the status write was lost.
		s.rotation = rotate
		rotate = ""
	}
	base := current
	if rotate != "" {
		base.AppSecret = "" // FillCredentials makes a new one; the app ID stays
	}
	filled, changed, err := render.FillCredentials(base, r.rand(), withTURN)
	if err != nil {
		s.credsErr = err
		return err
	}
	if !changed && metav1.IsControlledBy(&secret, app) {
		s.creds = current
		return nil
	}
	// Add what is missing (TURN turned on, a key removed by hand) and adopt
	// an orphan; the optimistic lock fails the patch if the Secret changed
	// since it was read, so nothing written meanwhile is overwritten.
	patch := client.MergeFromWithOptions(secret.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	for k, v := range filled.SecretData() {
		secret.Data[k] = v
	}
	if rotate != "" {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[v1alpha1.AnnotationRotatedFor] = rotate
	}
	if err := controllerutil.SetControllerReference(app, &secret, r.Client.Scheme()); err != nil {
		s.credsErr = err
		return err
	}
	if err := r.Client.Patch(ctx, &secret, patch); err != nil {
		s.credsErr = err
		return fmt.Errorf("update credentials of callsapp %s/%s: %w", app.Namespace, app.Name, err)
	}
	s.creds = filled
	if rotate != "" {
		// The event names the app ID and the Secret, never the secret.
		log.FromContext(ctx).Info("app secret rotated", "callsapp", client.ObjectKeyFromObject(app), "secret", key.Name, "appID", filled.AppID, "rotation", rotate)
		r.event(app, corev1.EventTypeNormal, EventSecretRotated, "RotateSecret",
			"generated a new secret for app ID %s in Secret %s (rotation %q); the old secret stops working once the pods load the new configuration", filled.AppID, key.Name, rotate)
		s.rotation, s.rotatedNow = rotate, true
		return nil
	}
	log.FromContext(ctx).Info("credentials completed", "callsapp", client.ObjectKeyFromObject(app), "secret", key.Name)
	return nil
}

// rotationRequested is the rotate-secret annotation's value when it asks
// for a rotation not yet recorded in status, else "".
func rotationRequested(app *v1alpha1.CallsApp) string {
	v := app.Annotations[v1alpha1.AnnotationRotateSecret]
	if v == "" || v == app.Status.SecretRotation {
		return ""
	}
	return v
}

func (r *Reconciler) createCredentials(ctx context.Context, s *scope, key types.NamespacedName, withTURN bool) error {
	app := s.app
	creds, _, err := render.FillCredentials(render.AppCredentials{}, r.rand(), withTURN)
	if err != nil {
		s.credsErr = err
		return err
	}
	rotate := rotationRequested(app)
	var annotations map[string]string
	if rotate != "" {
		// A new app's secret is fresh anyway: the request counts as done.
		annotations = map[string]string{v1alpha1.AnnotationRotatedFor: rotate}
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Annotations: annotations,
			Name:        key.Name,
			Namespace:   key.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelName:      "switchboard",
				v1alpha1.LabelManagedBy: v1alpha1.ManagedBy,
				v1alpha1.LabelApp:       app.Name,
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: creds.SecretData(),
	}
	if err := controllerutil.SetControllerReference(app, secret, r.Client.Scheme()); err != nil {
		s.credsErr = err
		return err
	}
	if err := r.Client.Create(ctx, secret); err != nil {
		// AlreadyExists: someone made it since we looked; read it next time.
		s.credsErr = err
		return fmt.Errorf("create credentials of callsapp %s/%s: %w", app.Namespace, app.Name, err)
	}
	log.FromContext(ctx).Info("credentials generated", "callsapp", client.ObjectKeyFromObject(app), "secret", key.Name, "appID", creds.AppID)
	r.event(app, corev1.EventTypeNormal, EventCredentialsCreated, "CreateCredentials",
		"generated app ID %s and its credentials in Secret %s", creds.AppID, key.Name)
	s.creds = creds
	s.rotation = rotate
	return nil
}

// reconcilePool finds the app's pool and whether the pool's rendered
// configuration holds the app. It writes nothing.
func (r *Reconciler) reconcilePool(ctx context.Context, s *scope) error {
	app := s.app
	pool := &v1alpha1.SFUPool{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: app.Namespace, Name: app.Spec.PoolRef.Name}, pool)
	switch {
	case apierrors.IsNotFound(err):
		s.pool = nil
		return nil
	case err != nil:
		return fmt.Errorf("get sfupool of callsapp %s/%s: %w", app.Namespace, app.Name, err)
	}
	s.pool = pool
	s.rendered = false
	if s.creds.AppID == "" {
		return nil
	}
	var cfg corev1.Secret
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: render.ConfigSecretName(pool)}, &cfg)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get config of sfupool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	apps, err := r.rendered.apps(&cfg)
	if err != nil {
		return fmt.Errorf("read config of sfupool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	s.rendered = apps[s.creds.AppID] == render.SHA256Hex(s.creds.AppSecret)
	return nil
}
