// Package revocations persists the fleet hub's TURN revocations in
// Kubernetes so they survive a manager restart (docs/turn.md, "Revocation
// across the fleet"): each pool's live list is one data key
// (hub.RevocationsFileName) of the pool's config Secret, written with a
// JSON merge patch under its own field manager, so the operator's
// server-side apply of the rendered configuration leaves it alone. The
// Secret is mounted in every pod, which therefore also finds the list on
// disk when it starts while the hub is down.
//
// It restores each pool's list into the hub's hub.RevocationStore before
// writing that pool, and writes only when the list changed (a revocation,
// or an entry reaching its expiry). It runs on the leader only.
//
// This package must not import the media core (sfu/..., turn) beyond
// sfu/config; it moves data between package hub and the API server.
package revocations
