// Package api serves the Calls-compatible HTTP API (CONTRACT §2, §5): it
// routes /v1/apps/... and /apps/..., answers CORS, decodes JSON whatever the
// Content-Type, bounds body and SDP sizes, authenticates the app's Bearer
// secret in constant time, applies the per-session call quota, and calls
// sfu/session. It also serves /health, /ready and /metrics.
//
// No Pion type appears here. It must not import sfu/forward, sfu/transport
// or Pion packages.
package api
