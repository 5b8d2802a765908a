// Command bench is the load generator behind `make bench` for the SFU.
//
// It starts `switchboard sfu` as a separate process on loopback with a
// generated configuration and measures it from outside:
//
//   - fanout: one publisher at 2.5 Mbps to N subscribers (Pion peers in
//     this process). Server CPU per forwarded packet comes from
//     /proc/PID/stat over a steady window, loss and latency from the
//     subscribers (every packet carries a counter and its send time), RSS
//     from /proc/PID/status. A direct Pion to Pion call in the same run is
//     the latency floor.
//   - sessions: closed-loop sessions/new + tracks/new with a real Chrome
//     offer, at a given concurrency.
//   - relay: two SFU processes in one fleet; the same publisher's track to
//     N subscribers on its own pod, then on the other pod through the
//     pod-to-pod relay: CPU per forwarded packet of both processes and the
//     latency each case adds.
//
// It only ever talks to 127.0.0.1. It owns no production code and must not
// be imported; it imports sfu/config and sfu/session for the wire types and
// sfu/transport for the media engine the SFU uses.
package main
