package index

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// PoolRef indexes CallsApps by spec.poolRef.name, so a pool finds its apps
// without listing the namespace. The name is also the CRD's selectable
// field, so the same list works on the cache and on the API server.
const PoolRef = "spec.poolRef.name"

// Setup registers every index on the manager's field indexer. Call it once
// per manager, before the controllers start.
func Setup(ctx context.Context, fi client.FieldIndexer) error {
	err := fi.IndexField(ctx, &v1alpha1.CallsApp{}, PoolRef, func(o client.Object) []string {
		return []string{o.(*v1alpha1.CallsApp).Spec.PoolRef.Name}
	})
	if err != nil {
		return fmt.Errorf("index CallsApps by %s: %w", PoolRef, err)
	}
	return nil
}
