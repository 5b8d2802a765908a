// Package session holds the state behind the Calls API: sessions (one
// PeerConnection each, created by the first SDP exchange), publications
// (location "local"), subscriptions (location "remote"), and the
// offer/answer state machine of each session. It owns every lock of the
// media core above the forwarding layer.
//
// Lifecycle: the Manager creates sessions; a session ends when its app is
// removed, when it stays without connectivity past the reconnect window, or
// when the Manager closes. Sweep (run every second by the Manager, or by
// tests with a fake clock) collects expired sessions and tracks without
// inbound packets past the track timeout.
//
// It imports sfu/forward and sfu/transport. It must not import sfu/api or
// net/http: the HTTP layer calls in with plain request types.
package session
