// Package usage owns the per-app usage counters of one SFU or TURN process
// (DESIGN 1.3): egress bytes by source, ingress bytes, API requests by
// status code, rate-limited requests by scope, live sessions and tracks,
// and the requests-per-second history behind "peak per second". It exports
// them as Prometheus metrics labelled by app only, and its Reporter pushes
// cumulative snapshots (with a per-process boot ID and a sequence number)
// to the manager's hub, where package hub turns them into monthly usage.
//
// Counters are monotonic for the life of the process and updated with
// atomics: the hot path (a forwarded packet) does one atomic add on an
// *App the caller already holds, with no lock and no allocation.
//
// This package must not import Kubernetes, Pion, or the session and API
// packages: they call into it, not the other way round.
package usage
