package testenv

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"

	"github.com/switchboard-rtc/switchboard/controllers"
)

func controllerConfig() config.Controller {
	return config.Controller{
		SkipNameValidation:      ptr.To(true),
		MaxConcurrentReconciles: controllers.DefaultMaxConcurrentReconciles,
	}
}

// CountingClient wraps a client and records every write that reaches the
// API server (create, update, patch, apply, delete, and their status
// forms). Dry-run requests are not writes and are counted apart.
type CountingClient struct {
	client.Client

	mu     sync.Mutex
	writes []string
	dryRun int
}

// NewCountingClient wraps c.
func NewCountingClient(c client.Client) *CountingClient { return &CountingClient{Client: c} }

// Writes returns the writes so far ("verb Kind name") and resets the count.
func (c *CountingClient) Writes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

// DryRuns returns the number of dry-run requests so far.
func (c *CountingClient) DryRuns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dryRun
}

func (c *CountingClient) record(verb string, obj runtime.Object, name string, dry bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dry {
		c.dryRun++
		return
	}
	kind := "?"
	if gvk, err := c.GroupVersionKindFor(obj); err == nil {
		kind = gvk.Kind
	}
	c.writes = append(c.writes, verb+" "+kind+" "+name)
}

func nameOf(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }

// Create implements client.Client.
func (c *CountingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	o := (&client.CreateOptions{}).ApplyOptions(opts)
	c.record("create", obj, nameOf(obj), len(o.DryRun) > 0)
	return c.Client.Create(ctx, obj, opts...)
}

// Update implements client.Client.
func (c *CountingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	o := (&client.UpdateOptions{}).ApplyOptions(opts)
	c.record("update", obj, nameOf(obj), len(o.DryRun) > 0)
	return c.Client.Update(ctx, obj, opts...)
}

// Patch implements client.Client.
func (c *CountingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	o := (&client.PatchOptions{}).ApplyOptions(opts)
	c.record("patch", obj, nameOf(obj), len(o.DryRun) > 0)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

// Apply implements client.Client.
func (c *CountingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	o := (&client.ApplyOptions{}).ApplyOptions(opts)
	name := "?"
	var ro runtime.Object
	if u, ok := obj.(interface {
		GetName() string
		GetNamespace() string
	}); ok {
		name = u.GetNamespace() + "/" + u.GetName()
	}
	if r, ok := obj.(runtime.Object); ok {
		ro = r
	}
	c.mu.Lock()
	if len(o.DryRun) > 0 {
		c.dryRun++
	} else {
		kind := "?"
		if ro != nil {
			kind = ro.GetObjectKind().GroupVersionKind().Kind
		}
		c.writes = append(c.writes, "apply "+kind+" "+name)
	}
	c.mu.Unlock()
	return c.Client.Apply(ctx, obj, opts...)
}

// Delete implements client.Client.
func (c *CountingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	o := (&client.DeleteOptions{}).ApplyOptions(opts)
	c.record("delete", obj, nameOf(obj), len(o.DryRun) > 0)
	return c.Client.Delete(ctx, obj, opts...)
}

// DeleteAllOf implements client.Client.
func (c *CountingClient) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	c.record("deleteAllOf", obj, obj.GetNamespace(), false)
	return c.Client.DeleteAllOf(ctx, obj, opts...)
}

// Status implements client.Client.
func (c *CountingClient) Status() client.SubResourceWriter {
	return &countingStatus{SubResourceWriter: c.Client.Status(), c: c}
}

// SubResource implements client.Client.
func (c *CountingClient) SubResource(sub string) client.SubResourceClient {
	return &countingSub{SubResourceClient: c.Client.SubResource(sub), c: c, sub: sub}
}

type countingStatus struct {
	client.SubResourceWriter
	c *CountingClient
}

func (s *countingStatus) Create(ctx context.Context, obj client.Object, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.c.record("status-create", obj, nameOf(obj), false)
	return s.SubResourceWriter.Create(ctx, obj, sub, opts...)
}

func (s *countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.c.record("status-update", obj, nameOf(obj), false)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.c.record("status-patch", obj, nameOf(obj), false)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (s *countingStatus) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.c.mu.Lock()
	s.c.writes = append(s.c.writes, "status-apply")
	s.c.mu.Unlock()
	return s.SubResourceWriter.Apply(ctx, obj, opts...)
}

type countingSub struct {
	client.SubResourceClient
	c   *CountingClient
	sub string
}

func (s *countingSub) Create(ctx context.Context, obj client.Object, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.c.record(s.sub+"-create", obj, nameOf(obj), false)
	return s.SubResourceClient.Create(ctx, obj, sub, opts...)
}

func (s *countingSub) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.c.record(s.sub+"-update", obj, nameOf(obj), false)
	return s.SubResourceClient.Update(ctx, obj, opts...)
}

func (s *countingSub) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.c.record(s.sub+"-patch", obj, nameOf(obj), false)
	return s.SubResourceClient.Patch(ctx, obj, patch, opts...)
}

func (s *countingSub) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.c.mu.Lock()
	s.c.writes = append(s.c.writes, s.sub+"-apply")
	s.c.mu.Unlock()
	return s.SubResourceClient.Apply(ctx, obj, opts...)
}
