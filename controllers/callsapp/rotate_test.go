package callsapp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/callsapp"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// Setting calls.switchboard.dev/rotate-secret to a new value replaces the
// app secret (same app ID, same TURN key), the pool renders the new hash,
// status records the handled value, and one SecretRotated Event without
// the secret tells about it. The same value again does nothing.
func TestRotateSecretAnnotationReplacesTheSecretOncePerValue(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	create(t, newPool(ns), newApp(ns, "demo-app", "demo"))
	app, secret := waitCredentials(t, ns, "demo-app")
	old := secret.DeepCopy()
	appID := app.Status.AppID
	oldSecret := string(old.Data[v1alpha1.SecretKeyAppSecret])

	rotate := func(value string) {
		t.Helper()
		a := &v1alpha1.CallsApp{}
		a.Name, a.Namespace = "demo-app", ns
		env.Update(t, a, func() {
			if a.Annotations == nil {
				a.Annotations = map[string]string{}
			}
			a.Annotations[v1alpha1.AnnotationRotateSecret] = value
		})
	}
	rotate("2026-11-24")
	var newSecret string
	testenv.Eventually(t, "new secret generated, rendered and recorded", func() error {
		var s corev1.Secret
		if err := get(ctx, ns, "demo-app-credentials", &s); err != nil {
			return err
		}
		newSecret = string(s.Data[v1alpha1.SecretKeyAppSecret])
		if newSecret == oldSecret {
			return fmt.Errorf("secret not rotated yet")
		}
		if !hex64.MatchString(newSecret) {
			return fmt.Errorf("new secret is not 32 random bytes as hex")
		}
		for _, k := range []string{v1alpha1.SecretKeyAppID, v1alpha1.SecretKeyTURNKeyID, v1alpha1.SecretKeyTURNKeyToken, v1alpha1.SecretKeyTURNKeySecret} {
			if string(s.Data[k]) != string(old.Data[k]) {
				return fmt.Errorf("%s changed with the rotation", k)
			}
		}
		ra, err := renderedApp(ctx, ns, "demo", appID)
		if err != nil || ra == nil {
			return fmt.Errorf("rendered app %v (%v)", ra, err)
		}
		if ra.SecretSHA256 != render.SHA256Hex(newSecret) {
			return fmt.Errorf("pool still renders the old secret's hash")
		}
		if err := get(ctx, ns, "demo-app", app); err != nil {
			return err
		}
		if app.Status.SecretRotation != "2026-11-24" || app.Status.SecretRotatedAt == nil || app.Status.AppID != appID {
			return fmt.Errorf("status rotation %q at %v, app ID %s", app.Status.SecretRotation, app.Status.SecretRotatedAt, app.Status.AppID)
		}
		return nil
	})
	ev := waitEvent(t, ns, "demo-app", corev1.EventTypeNormal, callsapp.EventSecretRotated)
	if !strings.Contains(ev.Note, appID) || strings.Contains(ev.Note, newSecret) || strings.Contains(ev.Note, oldSecret) {
		t.Fatalf("SecretRotated note %q: must name the app ID and hold no secret", ev.Note)
	}
	st, _ := json.Marshal(app.Status)
	if strings.Contains(string(st), newSecret) {
		t.Fatal("status holds the new secret")
	}

	// Another edit of the app with the same value rotates nothing.
	a := &v1alpha1.CallsApp{}
	a.Name, a.Namespace = "demo-app", ns
	env.Update(t, a, func() { a.Annotations["touched"] = "yes" })
	rotate("2026-11-24")
	waitEvents := func(want int32) {
		t.Helper()
		testenv.Eventually(t, fmt.Sprintf("%d SecretRotated Events", want), func() error {
			_, n, err := recordedEvents(ctx, ns, "demo-app", callsapp.EventSecretRotated)
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%d SecretRotated Events", n)
			}
			return nil
		})
	}
	waitEvents(1)
	var s corev1.Secret
	if err := get(ctx, ns, "demo-app-credentials", &s); err != nil || string(s.Data[v1alpha1.SecretKeyAppSecret]) != newSecret {
		t.Fatalf("secret changed without a new rotate-secret value (%v)", err)
	}

	// A new value rotates again.
	rotate("second")
	testenv.Eventually(t, "second rotation", func() error {
		if err := get(ctx, ns, "demo-app-credentials", &s); err != nil {
			return err
		}
		if string(s.Data[v1alpha1.SecretKeyAppSecret]) == newSecret {
			return fmt.Errorf("not rotated yet")
		}
		if err := get(ctx, ns, "demo-app", app); err != nil {
			return err
		}
		if app.Status.SecretRotation != "second" {
			return fmt.Errorf("status rotation %q", app.Status.SecretRotation)
		}
		return nil
	})
	waitEvents(2)
}

// An app created with the annotation gets a fresh secret anyway: the
// value is recorded as handled and nothing is rotated.
func TestNewAppWithRotateSecretRecordsTheValueWithoutRotating(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	app := newApp(ns, "fresh", "demo")
	app.Annotations = map[string]string{v1alpha1.AnnotationRotateSecret: "v1"}
	create(t, newPool(ns), app)
	_, secret := waitCredentials(t, ns, "fresh")
	first := string(secret.Data[v1alpha1.SecretKeyAppSecret])
	testenv.Eventually(t, "rotation recorded", func() error {
		if err := get(ctx, ns, "fresh", app); err != nil {
			return err
		}
		if app.Status.SecretRotation != "v1" {
			return fmt.Errorf("status rotation %q", app.Status.SecretRotation)
		}
		return nil
	})
	if err := get(ctx, ns, "fresh-credentials", secret); err != nil || string(secret.Data[v1alpha1.SecretKeyAppSecret]) != first {
		t.Fatalf("a new app's secret was rotated (%v)", err)
	}
	if _, n, err := recordedEvents(ctx, ns, "fresh", callsapp.EventSecretRotated); err != nil || n != 0 {
		t.Fatalf("%d SecretRotated Events for a new app (%v)", n, err)
	}
}

// A rotation whose status write was lost (the Secret already says it was
// rotated for this value) is recorded, not repeated.
func TestRotationWithLostStatusWriteIsNotRepeated(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	create(t, newPool(ns), newApp(ns, "demo-app", "demo"))
	_, secret := waitCredentials(t, ns, "demo-app")
	current := string(secret.Data[v1alpha1.SecretKeyAppSecret])
	env.Update(t, secret, func() {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[v1alpha1.AnnotationRotatedFor] = "r1"
	})
	app := &v1alpha1.CallsApp{}
	app.Name, app.Namespace = "demo-app", ns
	env.Update(t, app, func() {
		app.Annotations = map[string]string{v1alpha1.AnnotationRotateSecret: "r1"}
	})
	testenv.Eventually(t, "rotation recorded", func() error {
		if err := get(ctx, ns, "demo-app", app); err != nil {
			return err
		}
		if app.Status.SecretRotation != "r1" {
			return fmt.Errorf("status rotation %q", app.Status.SecretRotation)
		}
		return nil
	})
	if err := get(ctx, ns, "demo-app-credentials", secret); err != nil || string(secret.Data[v1alpha1.SecretKeyAppSecret]) != current {
		t.Fatalf("the secret was rotated a second time for the same value (%v)", err)
	}
	if _, n, err := recordedEvents(ctx, ns, "demo-app", callsapp.EventSecretRotated); err != nil || n != 0 {
		t.Fatalf("%d SecretRotated Events (%v), want none", n, err)
	}
}
