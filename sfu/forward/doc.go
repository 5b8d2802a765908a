// Package forward moves RTP from published tracks to down tracks: it reads
// each received layer, picks the simulcast layer every down track should
// get, rewrites SSRC, payload type, sequence numbers and timestamps so a down
// track stays continuous across layer and source switches, and turns
// subscriber PLI/FIR into debounced keyframe requests toward the publisher.
// A down track behind a closed Gate (its subscriber's transport is not up)
// forwards nothing, so it never starts on a keyframe the subscriber cannot
// receive; when the gate opens it asks for a keyframe and starts on it.
//
// The per-packet path (Track.Ingest to DownTrack.forward to the Pion
// writer) allocates nothing; BenchmarkFanOut proves it with -benchmem.
//
// Lifecycle: the session layer creates a Track per publication and a
// DownTrack per subscription, attaches and detaches them, and closes both.
// A layer's read loop ends when its PacketReader fails (the receiver
// stopped or the PeerConnection closed).
//
// It must not import sfu/session, sfu/api or sfu/transport: it has no
// notion of sessions, apps or HTTP.
package forward
