// Package ratelimit enforces the gateway rate limits of DESIGN 1.2: a fixed
// one-second window counter per (app ID, client IP, authenticated or not),
// the per-session 50 calls/s limit, client-IP extraction behind trusted
// proxies, the exact 429 bodies and an HTTP middleware.
//
// Everything here is pure and clock-injected so the window arithmetic is
// testable; the hot path (Limiter.Allow) takes one shard lock and allocates
// nothing. Memory is bounded: counters live only for the current window and
// each shard holds at most a fixed number of keys, beyond which new keys
// share conservative overflow counters (see table.go).
//
// Across API replicas each pod counts locally and enforces its share of the
// app limit (PerReplica); docs/ratelimits.md states the resulting margin.
//
// This package must not import Kubernetes, Pion or the session packages; it
// reports throttling through the Observer callback instead of importing
// sfu/usage.
package ratelimit
