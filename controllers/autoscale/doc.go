// Package autoscale decides how many SFU pods a load-driven pool should run
// and which end of its ordinal range to remove (SFUPool
// spec.autoscaling.mode Load; docs/proposals/2026-11-24-autoscaling-on-load.md).
//
// Decide is a pure function of the policy, a time series of per-pod load
// samples, the current scale and the time: no client, no clock, no state.
// The pool controller keeps the samples and applies the decision; History
// is the bounded buffer it keeps them in.
//
// It imports only the standard library and api/v1alpha1 (for Policy's
// constructor); it must not import controller-runtime, the controllers or
// the media core.
package autoscale
