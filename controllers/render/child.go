package render

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Object is a Kubernetes object with metadata (what controller-runtime calls
// client.Object), declared here so this package needs no client import.
type Object interface {
	metav1.Object
	runtime.Object
}

// Child is one object of a pool: either desired (Object set, to be applied)
// or absent (Absent set: an empty object of the kind and name that must not
// exist, because the spec turned it off).
type Child struct {
	Object Object
	Absent Object
}

// ApplyForm is obj as sent in a Server-Side Apply request: status and the
// zero creation timestamps that typed objects always carry are dropped, so
// the operator claims only the fields it means to set.
func ApplyForm(obj Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T %s: %w", obj, obj.GetName(), err)
	}
	delete(m, "status")
	dropNullTimestamps(m)
	return &unstructured.Unstructured{Object: m}, nil
}

// dropNullTimestamps removes every "creationTimestamp": null, at any depth
// (object and pod template metadata).
func dropNullTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		if ts, ok := t["creationTimestamp"]; ok && ts == nil {
			delete(t, "creationTimestamp")
		}
		for _, c := range t {
			dropNullTimestamps(c)
		}
	case []any:
		for _, c := range t {
			dropNullTimestamps(c)
		}
	}
}
