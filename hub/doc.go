// Package hub is the manager side of "config down, usage up" (DESIGN 2.3):
// the HTTP endpoints SFU and TURN pods talk to, the Ledger that turns their
// cumulative usage reports into per-app monthly usage without losing or
// double counting bytes, and the ConfigStore that serves each pool's
// rendered sfu/config.Pod for fast pickup, and the admin API
// (/admin/apps/{appId}) over an AppStore. It also holds the pod side:
// Source (config from the mounted file plus a hub long-poll) and Agent
// (Source, rate limiters, usage meter, request middleware and reporter in
// one piece for `switchboard sfu` and `switchboard turn`).
//
// TURN revocations (docs/turn.md): RevocationStore keeps each pool's
// revoked usernames until they expire and the hub serves them on a
// long-poll beside the config; RevocationForwarder is the API pod's side
// (revoke calls up to the hub), RevocationFollower the TURN pod's (the
// list down, from the hub or the mounted Secret).
//
// The Ledger's durable state is AppState, which the operator persists in
// CallsApp status and hands back with Restore after a manager restart; see
// docs/proposals/2026-11-23-config-down-usage-up.md.
//
// This package must not import Kubernetes packages, controllers or the
// media core beyond sfu/config and sfu/usage: it is tested on its own and
// wired by cmd/switchboard and the CallsApp controller.
package hub
