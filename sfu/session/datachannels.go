package session

import "github.com/pion/webrtc/v4"

// DataChannel seam (CONTRACT §2.7-2.10). The DataChannel work fills these
// hooks in; the rest of the session already negotiates m=application
// whenever an endpoint offers it, and the helpers it needs are here:
// ensurePC (first SDP exchange), waitConnected (5 s wait, 425), setLocal
// (offer/answer with gathering), the pending flag (one offer/answer at a
// time), lookup of another session through s.m.Get(s.App, id) (same app
// only), and the op/mu lock discipline described on Session.

// setupDataChannels runs once when the session's PeerConnection is created,
// before any SDP is applied (e.g. to install OnDataChannel for the client's
// "server-events" channel).
func (s *Session) setupDataChannels(pc *webrtc.PeerConnection) {
	_ = pc
}

// dataChannelStates lists the session's DataChannels for GET session.
// Called with s.mu held.
func (s *Session) dataChannelStates() []DataChannelState { return nil }

// closeDataChannels releases DataChannel state when the session closes,
// before the PeerConnection is closed. Called without locks held.
func (s *Session) closeDataChannels() {}
