// Package v1alpha1 holds the Switchboard custom resources of the API group
// calls.switchboard.dev: SFUPool (a fleet of SFU and TURN pods) and CallsApp
// (one Calls-compatible application served by a pool).
//
// It owns the Go types, their kubebuilder markers (schema defaults, CEL
// validation, printer columns), the condition types and reasons, and the
// label keys the operator puts on every child object. Defaulting helpers
// here mirror the schema defaults so that code reading a manifest straight
// from a file (dev mode) sees the same values as the API server would give.
//
// It imports only Kubernetes API types and sfu/config (for the shared default
// values); never controller-runtime, clients, controllers or the media core,
// so that anything can import it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=calls.switchboard.dev
package v1alpha1
