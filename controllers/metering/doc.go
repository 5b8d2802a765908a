// Package metering runs the manager side of "config down, usage up" on a
// controller-runtime manager (issue 4): the fleet hub (pods' usage reports
// and config long-poll) and the admin API on one HTTP listener, the usage
// ledger restored from CallsApp status checkpoints before it accepts a
// report, the throttled CallsApp usage status writes, and publishing each
// pool's rendered configuration (from its config Secret) to the hub.
//
// The accounting itself is package hub (no Kubernetes); this package only
// moves data between it and the API server. It runs on the leader only.
package metering
