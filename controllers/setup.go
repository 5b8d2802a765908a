package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/callsapp"
	"github.com/switchboard-rtc/switchboard/controllers/index"
	"github.com/switchboard-rtc/switchboard/controllers/sfupool"
)

// DefaultMaxConcurrentReconciles is how many reconciles each controller
// runs at once unless told otherwise (`switchboard manager
// --max-concurrent-reconciles`); the envtest suites use it too.
const DefaultMaxConcurrentReconciles = 4

// NewScheme holds the Kubernetes built-in types and the Switchboard types.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("add client-go types to scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("add switchboard types to scheme: %w", err)
	}
	return s, nil
}

// CacheOptions restricts the cache to what the operator needs: Secrets and
// Pods only when they carry the operator's managed-by label, so the manager
// does not hold every Secret and Pod of the cluster in memory. Objects
// outside the cache (a user's TLS Secret) are read through the API reader.
// namespaces limits the cache (and so the controllers) to those namespaces;
// empty means all.
func CacheOptions(namespaces ...string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedBy})
	o := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: managed},
			&corev1.Pod{}:    {Label: managed},
		},
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

// Setup registers the field indexes and both controllers on mgr.
func Setup(ctx context.Context, mgr ctrl.Manager) error { return SetupWith(ctx, mgr, Options{}) }

// Options are optional settings of the controllers.
type Options struct {
	// HubURL and HubToken are rendered into pod configs (see
	// controllers/metering); empty means pods run without a hub.
	HubURL, HubToken string
	// Reports is the hub's view of the pods (the metering ledger): their
	// load and drain state, for SFUPool status, drain Events and
	// load-driven autoscaling. Nil: none of those.
	Reports sfupool.PodReports
	// Clock is the SFUPool controller's time source (tests); time.Now when nil.
	Clock func() time.Time
	// LoadInterval is how often load-driven pools are sampled (tests);
	// sfupool.DefaultLoadInterval when zero.
	LoadInterval time.Duration
}

// SetupWith is Setup with options.
func SetupWith(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	pools := &sfupool.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), HubURL: o.HubURL, HubToken: o.HubToken,
		Reports: o.Reports, Clock: o.Clock, LoadInterval: o.LoadInterval}
	if err := pools.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up sfupool controller: %w", err)
	}
	apps := &callsapp.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	if err := apps.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up callsapp controller: %w", err)
	}
	return nil
}
