// Package transport sets up Pion for the SFU: the codecs and interceptors of
// the media engine, one ICE UDP mux for the whole node (a single port),
// ICE-lite (full ICE for thirdparty sessions), one DTLS certificate per node,
// SRTP AEAD-GCM first, and the addresses advertised in candidates.
//
// It owns the node's UDP socket and certificate; Close releases them after
// every PeerConnection made here has been closed by its owner.
//
// It must not import sfu/session, sfu/api or sfu/forward: it knows nothing of
// sessions or tracks.
package transport
