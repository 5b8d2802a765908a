package forward

import "sync/atomic"

// forwarded counts the RTP packets every down track of this process wrote
// to its subscriber (first sends and NACK resends). It is one counter for
// the process, like the process's CPU time it is divided into
// (switchboard_forwarded_packets_total over process_cpu_seconds_total), so
// a scrape reads one word instead of walking live down tracks, and closed
// down tracks cannot make it go backwards. The fan-out loop adds once per
// ingested packet, not once per subscriber; the padding keeps the hot word
// off the cache lines of neighbouring variables.
var forwarded struct {
	_ [64]byte
	n atomic.Uint64
	_ [56]byte
}

// ForwardedPackets returns how many RTP packets down tracks of this process
// have written to subscribers since it started. It only grows.
func ForwardedPackets() uint64 { return forwarded.n.Load() }
