package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/index"
)

// Env is one running API server with the CRDs installed.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Scheme holds the built-in and Switchboard types.
	Scheme *runtime.Scheme
	// Client talks to the API server directly (no cache).
	Client client.Client

	env *envtest.Environment
}

// ErrNoAssets is returned when kube-apiserver and etcd are not built.
var ErrNoAssets = errors.New("envtest binaries not found: run `make envtest` or set KUBEBUILDER_ASSETS")

// RepoRoot is the directory holding go.mod, found from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Main is a test package's TestMain body: it starts the package's one API
// server into *env, runs the tests, stops the server and exits with the
// tests' code. pkg names the package in a start-up error.
func Main(m *testing.M, pkg string, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, pkg+" tests:", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}

// Start starts kube-apiserver and etcd and installs the CRDs from
// config/crd/bases. Call it once per test package, from TestMain (Main).
func Start() (*Env, error) {
	// Errors only: shown when a test package fails, quiet otherwise.
	log.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%w (looked in %s)", ErrNoAssets, assets)
		}
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
		// A loaded 2-core machine starts the API server slowly.
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Env{Config: cfg, Scheme: scheme, Client: c, env: env}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// Namespace creates a fresh namespace for one test.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t-" + hex.EncodeToString(b)}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// StartManager runs the operator's controllers (controllers.Setup) in a
// manager whose cache covers only namespace ns, until the test ends. It
// returns the manager's (cached) client.
func (e *Env) StartManager(t testing.TB, ns string) client.Client {
	t.Helper()
	c, _ := e.start(t, ns, true, controllers.Options{})
	return c
}

// StartManagerWith is StartManager with controller options (a fake pod
// report source, a clock).
func (e *Env) StartManagerWith(t testing.TB, ns string, o controllers.Options) client.Client {
	t.Helper()
	c, _ := e.start(t, ns, true, o)
	return c
}

// StartCache runs a manager for namespace ns with the field indexes but no
// controllers, for tests that call Reconcile themselves. It returns the
// cached client and the API reader.
func (e *Env) StartCache(t testing.TB, ns string) (client.Client, client.Reader) {
	t.Helper()
	return e.start(t, ns, false, controllers.Options{})
}

func (e *Env) start(t testing.TB, ns string, withControllers bool, o controllers.Options) (client.Client, client.Reader) {
	t.Helper()
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:  e.Scheme,
		Cache:   controllers.CacheOptions(ns),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Logger:  log.Log.WithName(t.Name()),
		// Several managers share one process: allow repeated controller names.
		Controller: controllerConfig(),
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if withControllers {
		err = controllers.SetupWith(ctx, mgr, o)
	} else {
		err = index.Setup(ctx, mgr.GetFieldIndexer())
	}
	if err != nil {
		cancel()
		t.Fatalf("setup: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager stopped: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return mgr.GetClient(), mgr.GetAPIReader()
}

// Update reads obj afresh, applies mutate and updates it, retrying when a
// controller changed the object in between (a status write bumps the
// resource version).
func (e *Env) Update(t testing.TB, obj client.Object, mutate func()) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return e.Client.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
	}
}
