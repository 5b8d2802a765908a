// Package turn is the TURN pod: a pion/turn server with Calls-compatible
// ephemeral credentials, a relay policy that cannot be turned into a way into
// the cluster network, per-app egress metering, and the Calls TURN credentials
// API (`/v1/turn/keys/{keyId}/credentials/...`) as a plain http.Handler.
//
// It owns:
//   - the relay policy (policy.go): which peers a relay may reach, as a pure
//     classification plus an allow-list for explicit CIDRs and, in
//     TURNIngress mode, the SFU media endpoints only;
//   - credentials (credentials.go): the REST-style username/password scheme
//     and the key ring built from sfu/config;
//   - revocations (revoke.go) and metering hooks (meter.go);
//   - the server (server.go, conn.go, relay.go): listeners, the request
//     inspection that answers 403/486/508 before pion sees a request, and the
//     relay sockets that re-check every datagram they send.
//
// It must not import Kubernetes packages, the controllers, or the SFU media
// core; the only shared type it reads is sfu/config.Pod. cmd/switchboard wires
// it to flags, files and the HTTP server.
package turn
