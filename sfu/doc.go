// Package sfu assembles one SFU node: the node's UDP port and DTLS
// certificate (sfu/transport), the sessions (sfu/session) and the Calls HTTP
// API (sfu/api). `switchboard sfu` and `switchboard dev` both build on New.
//
// Lifecycle: New opens the UDP socket; SetConfig swaps apps and limits live;
// Drain marks the node not ready and sends new sessions to fleet peers
// (refusing them when no peer can take one), and DrainUntil waits for the
// sessions to end or a deadline; Close closes every session, then the
// socket.
//
// Layering: sfu/api → sfu/session → sfu/forward, sfu/transport. This package
// is the only one that sees them all. It must not import Kubernetes packages.
package sfu
