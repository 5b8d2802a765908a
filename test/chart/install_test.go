package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
)

// syncBuffer collects a child process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAPIServer runs kube-apiserver and etcd (envtest, `make envtest`)
// with no CRDs: the chart installs them.
func startAPIServer(t *testing.T) (client.Client, string) {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(repoRoot(t), "bin", "k8s")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("%s not found in %s: run make envtest", b, assets)
		}
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, kubeconfig
}

// startManager runs `switchboard manager` with exactly the arguments and
// plain environment of the chart's Deployment, plus a kubeconfig and
// loopback listeners on free ports (later flags win).
func startManager(t *testing.T, d *appsv1.Deployment, kubeconfig string) *syncBuffer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build switchboard: %v\n%s", err, out)
	}
	c := d.Spec.Template.Spec.Containers[0]
	args := append(append([]string{}, c.Args...),
		"--kubeconfig="+kubeconfig,
		"--metrics-bind-address=127.0.0.1:0",
		"--health-probe-bind-address=127.0.0.1:0")
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	cmd.Env = append(cmd.Env, "POD_NAMESPACE="+namespace)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	// A manager that rejects the chart's flags exits at once.
	select {
	case <-exited:
		t.Fatalf("manager exited with the chart's arguments %q: %v\n%s", c.Args, waitErr, logs)
	case <-time.After(3 * time.Second):
	}
	return logs
}

// impersonating writes a copy of kubeconfig whose user acts as user.
func impersonating(t *testing.T, kubeconfig, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	out := filepath.Join(t.TempDir(), "kubeconfig-as-sa")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, what string, logs fmt.Stringer, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v\nmanager logs:\n%s", what, timeout, err, logs)
}

var (
	hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// What a user does with docs/install.md: helm install with a pool and an
// app, the operator the chart deployed generates the app's credentials into
// the Secret NOTES names, upgrade keeps the admin key, uninstall leaves the
// CRDs. Runs on a real API server (envtest) with the real manager binary.
func TestHelmInstallUpgradeUninstallOnARealAPIServer(t *testing.T) {
	c, kubeconfig := startAPIServer(t)
	ctx := context.Background()
	kc := "--kubeconfig=" + kubeconfig

	if _, err := helm(t, "install", release, chartDir(t), kc, "--namespace", namespace, "--create-namespace",
		"-f", ciValues(t, "turn-ingress-values.yaml")); err != nil {
		t.Fatalf("helm install: %v", err)
	}

	// Everything the chart rendered exists and the API server accepted it
	// (CRD schema and CEL validation included).
	r := helmTemplate(t, "turn-ingress-values.yaml")
	for _, o := range r.objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, got); err != nil {
			t.Errorf("%s %s/%s not installed: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	var adminBefore corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "sb-switchboard-admin"}, &adminBefore); err != nil {
		t.Fatalf("admin Secret: %v", err)
	}

	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "sb-switchboard"}, &d); err != nil {
		t.Fatal(err)
	}
	// The manager acts as the chart's ServiceAccount, so the chart's RBAC
	// (ClusterRole and leader-election Role) must be enough.
	logs := startManager(t, &d, impersonating(t, kubeconfig, "system:serviceaccount:"+namespace+":"+d.Spec.Template.Spec.ServiceAccountName))

	// The app's credentials, where NOTES.txt says to look.
	var creds corev1.Secret
	eventually(t, 2*time.Minute, "meetings-credentials with appId and appSecret", logs, func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "meetings-credentials"}, &creds); err != nil {
			return err
		}
		if !hex32.Match(creds.Data[v1alpha1.SecretKeyAppID]) || !hex64.Match(creds.Data[v1alpha1.SecretKeyAppSecret]) {
			return fmt.Errorf("secret keys %v", keys(creds.Data))
		}
		return nil
	})
	appID := string(creds.Data[v1alpha1.SecretKeyAppID])
	var app v1alpha1.CallsApp
	eventually(t, time.Minute, "CallsApp status endpoint", logs, func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "meetings"}, &app); err != nil {
			return err
		}
		if want := "https://rtc.example.com/v1/apps/" + appID; app.Status.Endpoint != want {
			return fmt.Errorf("endpoint %q, want %q", app.Status.Endpoint, want)
		}
		return nil
	})
	if app.Status.CredentialsSecretName != "meetings-credentials" {
		t.Errorf("status names Secret %q, NOTES name meetings-credentials", app.Status.CredentialsSecretName)
	}

	// The pool runs the chart's image, and the chart's NetworkPolicy
	// selects the SFU pods the operator really created.
	var sts appsv1.StatefulSet
	eventually(t, time.Minute, "SFU StatefulSet of pool private", logs, func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "private-sfu"}, &sts)
	})
	if img := sts.Spec.Template.Spec.Containers[0].Image; img != "switchboard:dev" {
		t.Errorf("SFU pods run %q, want the chart's image switchboard:dev", img)
	}
	var np networkingv1.NetworkPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "private-sfu"}, &np); err != nil {
		t.Fatal(err)
	}
	if !selects(t, np.Spec.PodSelector, &sts.Spec.Template) {
		t.Errorf("NetworkPolicy private-sfu selector %v misses the SFU pods %v", np.Spec.PodSelector, sts.Spec.Template.Labels)
	}

	// Upgrade: the admin key is kept, the new value lands.
	if _, err := helm(t, "upgrade", release, chartDir(t), kc, "--namespace", namespace,
		"-f", ciValues(t, "turn-ingress-values.yaml"), "--set", "manager.debug=true"); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	var adminAfter corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "sb-switchboard-admin"}, &adminAfter); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(adminBefore.Data["admin-api-key"], adminAfter.Data["admin-api-key"]) || !bytes.Equal(adminBefore.Data["hub-token"], adminAfter.Data["hub-token"]) {
		t.Error("helm upgrade replaced the admin API key or the hub token")
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "sb-switchboard"}, &d); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--debug") {
		t.Errorf("upgraded Deployment args %q lack --debug", args)
	}

	// Uninstall removes the operator and keeps the CRDs (and so the apps).
	if _, err := helm(t, "uninstall", release, kc, "--namespace", namespace); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "sb-switchboard"}, &appsv1.Deployment{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("operator Deployment after uninstall: %v, want not found", err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := c.Get(ctx, client.ObjectKey{Name: "callsapps.calls.switchboard.dev"}, crd); err != nil {
		t.Errorf("CallsApp CRD after uninstall: %v, want kept", err)
	}
	// The pool and app came from values, so they leave with the release.
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "meetings"}, &v1alpha1.CallsApp{}); !apierrors.IsNotFound(err) {
		t.Errorf("CallsApp from values after uninstall: %v, want not found", err)
	}
}
