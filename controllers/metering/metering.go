package metering

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Options configure the manager's hub.
type Options struct {
	// Addr is the listen address of the hub and the admin API.
	Addr string
	// HubToken is the bearer token pods present (rendered into their
	// config); AdminKey is the X-Admin-API-Key value. Both required.
	HubToken string
	AdminKey string
	// Tick is how often usage is folded into status and pool configs are
	// published (default 1 s). Status writes are still at most one per app
	// per hub.DefaultStatusInterval.
	Tick time.Duration
	// StatusInterval overrides hub.DefaultStatusInterval (tests).
	StatusInterval time.Duration
	Clock          hub.Clock
}

// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=callsapps,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=callsapps/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools,verbs=get;list;watch
// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create

// Metering is the hub runnable. It needs leader election: only the
// leader may own the ledger.
type Metering struct {
	o       Options
	c       client.Client
	cache   interface{ WaitForCacheSync(context.Context) bool }
	log     logr.Logger
	Ledger  *hub.Ledger
	Configs *hub.ConfigStore

	throttle *hub.StatusThrottle
	wake     chan struct{}

	mu    sync.Mutex
	known map[string]types.NamespacedName // app ID → CallsApp
	addr  net.Addr
	up    chan struct{}
}

// ErrOptions is returned for missing options.
var ErrOptions = errors.New("metering options")

// Setup adds the hub to mgr.
func Setup(mgr ctrl.Manager, o Options) (*Metering, error) {
	if o.HubToken == "" || o.AdminKey == "" {
		return nil, fmt.Errorf("%w: hub token and admin key are required", ErrOptions)
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	m := &Metering{
		o: o, c: mgr.GetClient(), cache: mgr.GetCache(), log: mgr.GetLogger().WithName("metering"),
		Configs: hub.NewConfigStore(), throttle: hub.NewStatusThrottle(o.StatusInterval, o.Clock),
		wake: make(chan struct{}, 1), known: map[string]types.NamespacedName{}, up: make(chan struct{}),
	}
	m.Ledger = hub.NewLedger(hub.LedgerOptions{Clock: o.Clock, OnChange: func(string) {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}})
	if err := mgr.Add(m); err != nil {
		return nil, fmt.Errorf("add metering runnable: %w", err)
	}
	return m, nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (m *Metering) NeedLeaderElection() bool { return true }

// Addr is the hub's listen address once it serves (for tests).
func (m *Metering) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-m.up:
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Start restores the ledger from every CallsApp's checkpoint, then serves
// the hub and folds usage into status until ctx ends, writing the latest
// usage once more on the way out.
func (m *Metering) Start(ctx context.Context) error {
	if !m.cache.WaitForCacheSync(ctx) {
		return errors.New("metering: cache did not sync")
	}
	if err := m.syncApps(ctx); err != nil {
		return fmt.Errorf("metering: restore usage: %w", err)
	}
	m.Ledger.SetReady()
	m.publishConfigs(ctx)

	mux := http.NewServeMux()
	mux.Handle("/hub/", (&hub.Server{Ledger: m.Ledger, Configs: m.Configs, Token: m.o.HubToken}).Handler())
	mux.Handle(hub.AdminPathPrefix, (&hub.Admin{Key: m.o.AdminKey, Apps: &specStore{c: m.c}, Ledger: m.Ledger}).Handler())
	ln, err := net.Listen("tcp", m.o.Addr)
	if err != nil {
		return fmt.Errorf("metering: listen %s: %w", m.o.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: hub.DefaultMaxWait + 10*time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	m.mu.Lock()
	m.addr = ln.Addr()
	m.mu.Unlock()
	close(m.up)
	m.log.Info("hub serving", "addr", ln.Addr().String())

	t := time.NewTicker(m.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			// Persist what arrived since the last throttled write.
			m.writeStatuses(sctx, true)
			m.writePoolStatuses(sctx, true)
			return nil
		case err := <-serveErr:
			return fmt.Errorf("metering: serve: %w", err)
		case <-t.C:
			if err := m.syncApps(ctx); err != nil {
				m.log.Error(err, "sync apps")
			}
			m.publishConfigs(ctx)
			m.writeStatuses(ctx, false)
			m.writePoolStatuses(ctx, false)
		case <-m.wake:
			m.writeStatuses(ctx, false)
		}
	}
}

// syncApps declares every CallsApp with an app ID to the ledger: an app
// the ledger does not know yet is restored from its status checkpoint
// (before SetReady that is every app), a known one gets its billing
// updated; deleted apps are forgotten.
func (m *Metering) syncApps(ctx context.Context) error {
	var apps v1alpha1.CallsAppList
	if err := m.c.List(ctx, &apps); err != nil {
		return fmt.Errorf("list callsapps: %w", err)
	}
	seen := map[string]bool{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range apps.Items {
		app := &apps.Items[i]
		id := app.Status.AppID
		if id == "" || !app.DeletionTimestamp.IsZero() {
			continue
		}
		seen[id] = true
		if _, ok := m.known[id]; ok {
			m.Ledger.SetApp(id, billingOf(app))
			continue
		}
		st, err := stateOf(app.Status.Checkpoint)
		if err != nil {
			return fmt.Errorf("callsapp %s/%s: %w", app.Namespace, app.Name, err)
		}
		m.Ledger.Restore(id, st, billingOf(app))
		m.known[id] = types.NamespacedName{Namespace: app.Namespace, Name: app.Name}
	}
	for id, key := range m.known {
		if !seen[id] {
			m.Ledger.RemoveApp(id)
			m.throttle.Forget(key.String())
			delete(m.known, id)
		}
	}
	return nil
}

// writeStatuses folds the ledger into CallsApp status, each app at most
// once per status interval and never when nothing changed. force skips the
// interval (shutdown).
func (m *Metering) writeStatuses(ctx context.Context, force bool) {
	m.mu.Lock()
	known := make(map[string]types.NamespacedName, len(m.known))
	for id, k := range m.known {
		known[id] = k
	}
	m.mu.Unlock()
	for id, key := range known {
		u, ok := m.Ledger.Usage(id)
		if !ok {
			continue
		}
		fp := fingerprint(u)
		if due, after := m.throttle.Due(key.String(), fp); !due && (!force || after == 0) {
			continue // unchanged, or written less than an interval ago
		}
		var app v1alpha1.CallsApp
		if err := m.c.Get(ctx, key, &app); err != nil {
			if !apierrors.IsNotFound(err) {
				m.log.Error(err, "get callsapp", "callsapp", key.String())
			}
			continue
		}
		before := app.DeepCopy()
		if err := applyUsage(&app.Status, u, metav1.NewTime(m.o.Clock())); err != nil {
			m.log.Error(err, "usage status", "callsapp", key.String())
			continue
		}
		if err := m.c.Status().Patch(ctx, &app, client.MergeFrom(before)); err != nil {
			m.log.Error(err, "write usage status", "callsapp", key.String())
			continue
		}
		m.throttle.Written(key.String(), fp)
	}
}

// publishConfigs serves each pool's rendered configuration (its config
// Secret, written by the SFUPool controller) from the hub, with the
// pool's ready SFU replica count.
func (m *Metering) publishConfigs(ctx context.Context) {
	var pools v1alpha1.SFUPoolList
	if err := m.c.List(ctx, &pools); err != nil {
		m.log.Error(err, "list sfupools")
		return
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		var s corev1.Secret
		if err := m.c.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: render.ConfigSecretName(p)}, &s); err != nil {
			continue
		}
		cfg, err := config.Parse(s.Data[config.FileName])
		if err != nil {
			m.log.Error(err, "pool config secret", "sfupool", p.Namespace+"/"+p.Name)
			continue
		}
		if err := m.Configs.Set(p.Namespace+"/"+p.Name, cfg, int(ptr.Deref(p.Status.ReadyReplicas, 0))); err != nil {
			m.log.Error(err, "publish pool config", "sfupool", p.Namespace+"/"+p.Name)
		}
	}
}
