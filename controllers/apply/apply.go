package apply

import (
	"context"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// FieldManager is the one Server-Side Apply field manager of the operator.
const FieldManager = "switchboard-operator"

// Result says what Object or Absent did.
type Result string

const (
	// Unchanged: the object already matched; nothing was written.
	Unchanged Result = "unchanged"
	// Created: the object did not exist and was applied.
	Created Result = "created"
	// Updated: the object existed and differed; it was applied.
	Updated Result = "updated"
	// Deleted: a leftover object was deleted.
	Deleted Result = "deleted"
)

// Object makes obj (a rendered child) exist as rendered, owned by owner
// through a controller reference. It reads the current object from c (the
// cache), asks the API server for a dry-run apply when it exists, and
// applies for real only when the dry-run result differs from it.
func Object(ctx context.Context, c client.Client, owner client.Object, obj render.Object) (Result, error) {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return "", fmt.Errorf("apply %T %s: %w", obj, obj.GetName(), err)
	}
	if err := controllerutil.SetControllerReference(owner, obj, c.Scheme()); err != nil {
		return "", fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	desired, err := render.ApplyForm(obj)
	if err != nil {
		return "", err
	}
	desired.SetGroupVersionKind(gvk)

	current, err := newTyped(c.Scheme(), gvk)
	if err != nil {
		return "", err
	}
	err = c.Get(ctx, client.ObjectKeyFromObject(obj), current)
	switch {
	case apierrors.IsNotFound(err):
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(desired), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return "", fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		return Created, nil
	case err != nil:
		return "", fmt.Errorf("get %s %s: %w", gvk.Kind, obj.GetName(), err)
	}

	dry := desired.DeepCopy()
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(dry), client.FieldOwner(FieldManager), client.ForceOwnership, client.DryRunAll); err != nil {
		return "", fmt.Errorf("dry-run apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	same, err := sameObject(c.Scheme(), gvk, current, dry)
	if err != nil {
		return "", err
	}
	if same {
		return Unchanged, nil
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(desired), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return "", fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return Updated, nil
}

// Absent deletes the object of obj's kind and name when owner controls it;
// an object someone else made is left alone.
func Absent(ctx context.Context, c client.Client, owner client.Object, obj render.Object) (Result, error) {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return "", fmt.Errorf("delete %T %s: %w", obj, obj.GetName(), err)
	}
	current, err := newTyped(c.Scheme(), gvk)
	if err != nil {
		return "", err
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
		if apierrors.IsNotFound(err) {
			return Unchanged, nil
		}
		return "", fmt.Errorf("get %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	if !metav1.IsControlledBy(current, owner) || current.GetDeletionTimestamp() != nil {
		return Unchanged, nil
	}
	uid := current.GetUID()
	if err := c.Delete(ctx, current, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return Deleted, nil
}

func newTyped(s *runtime.Scheme, gvk schema.GroupVersionKind) (client.Object, error) {
	o, err := s.New(gvk)
	if err != nil {
		return nil, fmt.Errorf("new %s: %w", gvk, err)
	}
	co, ok := o.(client.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not a client.Object", gvk)
	}
	return co, nil
}

// sameObject compares the current object with a dry-run result, both
// brought to the same typed-then-unstructured form, ignoring what a write
// does not control (status, managed fields, resource version).
func sameObject(s *runtime.Scheme, gvk schema.GroupVersionKind, current client.Object, dry *unstructured.Unstructured) (bool, error) {
	dryTyped, err := newTyped(s, gvk)
	if err != nil {
		return false, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(dry.Object, dryTyped); err != nil {
		return false, fmt.Errorf("decode dry-run %s %s: %w", gvk.Kind, dry.GetName(), err)
	}
	a, err := comparableForm(current)
	if err != nil {
		return false, err
	}
	b, err := comparableForm(dryTyped)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(a, b), nil
}

func comparableForm(o client.Object) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	delete(m, "apiVersion")
	delete(m, "kind")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "resourceVersion")
	}
	return m, nil
}

// Status writes obj's status, changed from before (a copy taken when the
// reconcile read it), as a merge patch with the optimistic lock: a write
// from a stale view fails instead of overwriting what another writer (pod
// reports through the hub) put there. An object deleted meanwhile is not
// an error. conflict tells the caller to reconcile again on a fresh view.
func Status(ctx context.Context, c client.Client, obj, before client.Object) (conflict bool, err error) {
	err = c.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsConflict(err):
		return true, err
	}
	return false, err
}
