package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestManagerCommandReconcilesWithLeaderElectionAndServesProbes runs
// `switchboard manager` as a user would (flags, kubeconfig) against a real
// API server: it takes the lease, turns a pool into its children, serves
// /readyz and /metrics, and stops cleanly on cancellation.
func TestManagerCommandReconcilesWithLeaderElectionAndServesProbes(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "bin", "k8s")
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 3 * time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest (run make envtest): %v", err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	metrics, probes := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runManager(ctx, []string{
			"--kubeconfig=" + kubeconfig,
			"--metrics-bind-address=" + metrics,
			"--health-probe-bind-address=" + probes,
			"--hub-bind-address=" + freeAddr(t),
			"--leader-elect", "--leader-election-namespace=default",
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("manager did not stop within 60s of cancellation")
		}
	}()

	waitFor(t, "readyz", func() error {
		code, body, err := httpGet("http://" + probes + "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	waitFor(t, "leader lease", func() error {
		var lease coordinationv1.Lease
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "switchboard-operator.calls.switchboard.dev"}, &lease); err != nil {
			return err
		}
		if ptr.Deref(lease.Spec.HolderIdentity, "") == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	})

	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pool config rendered", func() error {
		return c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "demo-config"}, &corev1.Secret{})
	})
	code, body, err := httpGet("http://" + metrics + "/metrics")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `controller_runtime_reconcile_total{controller="sfupool"`) {
		t.Fatalf("metrics: %d %v, sfupool reconcile counter missing", code, err)
	}
}

func TestManagerRejectsStrayArguments(t *testing.T) {
	if _, err := parseManagerFlags([]string{"--leader-elect", "extra"}); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("err = %v", err)
	}
	f, err := parseManagerFlags([]string{"--namespaces=a,b", "--max-concurrent-reconciles=2"})
	if err != nil || f.namespaces != "a,b" || f.maxConcurrent != 2 || f.leaderElect {
		t.Fatalf("flags %+v err %v", f, err)
	}
}
