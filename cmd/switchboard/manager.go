package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/metering"
	"github.com/switchboard-rtc/switchboard/controllers/revocations"
)

func init() {
	register("manager", "run the operator: SFUPool and CallsApp controllers", runManager)
}

// managerFlags are the flags of `switchboard manager` (docs/operator.md).
type managerFlags struct {
	kubeconfig       string
	metricsAddr      string
	probeAddr        string
	leaderElect      bool
	leaderElectionNS string
	namespaces       string
	debug            bool
	gracefulShutdown time.Duration
	leaderElectionID string
	maxConcurrent    int
	hubAddr          string
	hubURL           string
	hubSecret        string
}

func parseManagerFlags(args []string) (*managerFlags, error) {
	f := &managerFlags{}
	fs := flag.NewFlagSet("switchboard manager", flag.ContinueOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster config or $KUBECONFIG")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "elect a leader so only one of several replicas reconciles")
	fs.StringVar(&f.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election Lease; empty means the pod's namespace")
	fs.StringVar(&f.leaderElectionID, "leader-election-id", "switchboard-operator.calls.switchboard.dev", "name of the leader election Lease")
	fs.StringVar(&f.namespaces, "namespaces", "", "comma-separated namespaces to watch; empty means all")
	fs.BoolVar(&f.debug, "debug", false, "log at debug level (each child written)")
	fs.DurationVar(&f.gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "how long running reconciles may take to finish on SIGTERM")
	fs.IntVar(&f.maxConcurrent, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "reconciles run at once per controller")
	fs.StringVar(&f.hubAddr, "hub-bind-address", ":8082", "address of the fleet hub (pod config and usage reports) and the admin API; 0 disables them")
	fs.StringVar(&f.hubURL, "hub-url", "", "the hub's URL as pods reach it (e.g. http://switchboard-hub.switchboard-system.svc:8082), rendered into pod configs")
	fs.StringVar(&f.hubSecret, "hub-secret", "switchboard-hub", "Secret in the manager's namespace ($POD_NAMESPACE) holding the hub token and admin API key; created when missing")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return f, nil
}

func runManager(ctx context.Context, args []string) error {
	f, err := parseManagerFlags(args)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	logger := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctrl.SetLogger(logger)

	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		return err
	}
	var namespaces []string
	for _, ns := range strings.Split(f.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	opts := ctrl.Options{
		Scheme:                        scheme,
		Logger:                        logger,
		Cache:                         controllers.CacheOptions(namespaces...),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              f.leaderElectionID,
		LeaderElectionNamespace:       f.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &f.gracefulShutdown,
	}
	opts.Controller.MaxConcurrentReconciles = f.maxConcurrent
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	// Fleet hub and admin API: controllers/metering.
	var ctrlOpts controllers.Options
	if f.hubAddr != "0" {
		ns := os.Getenv("POD_NAMESPACE")
		if ns == "" {
			ns = "default"
		}
		hubToken, adminKey, err := metering.LoadOrCreateKeys(ctx, mgr.GetAPIReader(), mgr.GetClient(), ns, f.hubSecret)
		if err != nil {
			return fmt.Errorf("hub keys: %w", err)
		}
		m, err := metering.Setup(mgr, metering.Options{Addr: f.hubAddr, HubToken: hubToken, AdminKey: adminKey})
		if err != nil {
			return err
		}
		// TURN revocations the hub takes are kept in each pool's config
		// Secret across manager restarts (docs/turn.md).
		if err := revocations.Setup(mgr, m.Configs.Revocations()); err != nil {
			return err
		}
		// Pod reports feed SFUPool drain status and load-driven autoscaling.
		ctrlOpts.Reports = m.Ledger
		if f.hubURL != "" {
			ctrlOpts.HubURL, ctrlOpts.HubToken = f.hubURL, hubToken
		}
	}
	if err := controllers.SetupWith(ctx, mgr, ctrlOpts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	// Ready once the informers have synced: before that the controllers
	// would act on a partial view.
	cacheSynced := func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("cache not synced")
		}
		return nil
	}
	if err := mgr.AddReadyzCheck("readyz", cacheSynced); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	logger.Info("starting manager", "leaderElection", f.leaderElect, "namespaces", namespaces, "metrics", f.metricsAddr, "probes", f.probeAddr)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("find cluster config: %w", err)
	}
	return cfg, nil
}
