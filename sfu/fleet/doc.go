// Package fleet makes the SFU pods of one pool answer as one SFU: session
// IDs name the pod that owns the session, any pod accepts any Calls API
// call and forwards calls for sessions it does not own to their owner over
// the pod network, new sessions go to the least-loaded pod, and pod-to-pod
// endpoints (load, track relays) are reachable only with the pool's fleet
// token.
//
// It owns session ID encoding, fleet membership (who is at which address),
// the HTTP router in front of the Calls API, and placement: each pod serves
// its Load to its peers, keeps a polled View of theirs, and the router
// creates new sessions on the least-loaded ready, non-draining pod. It
// imports sfu/config and sfu/session (for the Calls error shape) and never
// sfu/api, sfu/forward, Pion or Kubernetes packages. docs/fleet.md
// describes the design.
package fleet
