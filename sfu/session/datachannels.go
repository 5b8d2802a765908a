package session

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// DataChannels (CONTRACT §2.7-2.10, §4.3).
//
// Every session may publish named channels (dcPub, location "local") and
// subscribe to channels of other sessions of the same app (dcSub, location
// "remote"). Both are SCTP streams of the session's own PeerConnection,
// created by the SFU as negotiated channels with an id the SFU allocates
// per session (2 upward; 0 and 1 stay free for the in-band "server-events"
// channel, whichever side opens it). A publisher's messages are sent on
// every subscriber's channel with their string/binary type kept. One
// subscriber per publication may hold canReply: its messages go back to
// the publisher only; every other subscriber message is dropped.
//
// Lifecycle: a publication ends on datachannels/close, when the endpoint
// closes its side of the channel, or when the session closes; its
// subscribers' channels are then closed too (the endpoints see onclose)
// and stay listed as inactive. A subscription ends on datachannels/close,
// when the endpoint closes it, when its waitForAck gate expires, or when
// either session closes. A subscription to a channel of a session on
// another fleet pod is the same, fed by the relay (datachannel_fleet.go).
//
// Locks: dcState.mu guards one session's channel table; dcPub.mu guards a
// publication's subscriber list and reply grant; dcSub.mu guards one
// subscription's gate. Order: Session.op, Session.mu (GET session lists
// channels under it), dcState.mu, dcPub.mu, dcSub.mu.
// No Pion call that may block is made with one of them held, and
// dcState.mu of two sessions is never held at once.

// dcState is the DataChannel part of a Session.
type dcState struct {
	mu sync.Mutex
	// serverEvents is the "server-events" channel the SFU opened in-band
	// (establish without an offer), or the one the endpoint opened.
	serverEvents *webrtc.DataChannel
	serverByPeer bool
	// peer holds every channel the endpoint opened in-band; their ids are
	// never allocated to negotiated channels.
	peer []*webrtc.DataChannel
	// pubs are the live publications by name.
	pubs map[string]*dcPub
	// entries are every publication and subscription, in creation order,
	// for GET session and close by id.
	entries []dcEntry
	closed  bool

	// egress and ingress count DataChannel message bytes sent to and
	// received from this session's endpoint (payload only, no SCTP/DTLS
	// overhead). They are added to the session's usage counters.
	egress, ingress atomic.Uint64
}

// dcEntry is one row of the channel table: exactly one of pub and sub.
type dcEntry struct {
	pub *dcPub
	sub *dcSub
}

func (e dcEntry) id() uint16 {
	if e.pub != nil {
		return e.pub.id
	}
	return e.sub.id
}

func (e dcEntry) live() bool {
	if e.pub != nil {
		return !e.pub.isClosed()
	}
	return !e.sub.isClosed()
}

// busy reports whether the entry's SCTP stream may still be in use: an id
// is reused only once the stream reset of its closed channel completed.
func (e dcEntry) busy() bool {
	dc := e.sub.channel()
	if e.pub != nil {
		dc = e.pub.dc
	}
	return e.live() || dc.ReadyState() != webrtc.DataChannelStateClosed
}

// setupDataChannels runs once when the session's PeerConnection is created,
// before any SDP is applied: channels the endpoint opens in-band (its own
// "server-events", or any other) are accepted and their messages dropped.
func (s *Session) setupDataChannels(pc *webrtc.PeerConnection) {
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		s.dc.mu.Lock()
		s.dc.peer = append(s.dc.peer, dc)
		if dc.Label() == ServerEventsChannel && s.dc.serverEvents == nil {
			s.dc.serverEvents, s.dc.serverByPeer = dc, true
		}
		s.dc.mu.Unlock()
		s.log.Debug("endpoint opened a datachannel", "label", dc.Label(), "id", idOf(dc))
		dc.OnMessage(func(msg webrtc.DataChannelMessage) {
			// Nothing routes from an in-band endpoint channel: drop.
			s.dc.ingress.Add(uint64(len(msg.Data)))
		})
	})
}

func idOf(dc *webrtc.DataChannel) int {
	if id := dc.ID(); id != nil {
		return int(*id)
	}
	return -1
}

// dataChannelStates lists the session's DataChannels for GET session.
// Called with s.mu held; it takes only s.dc.mu and the entries' own locks.
func (s *Session) dataChannelStates() []DataChannelState {
	s.dc.mu.Lock()
	defer s.dc.mu.Unlock()
	var out []DataChannelState
	if dc := s.dc.serverEvents; dc != nil {
		// No Pion call that takes the PeerConnection's lock under s.mu: the
		// DTLS role is not consulted here, only the channel's own id.
		id := predictServerEventsID(nil, dc, s.dc.serverByPeer)
		out = append(out, DataChannelState{Location: LocationRemote, DataChannelName: ServerEventsChannel, ID: id,
			Status: channelStatus(dc, false)})
	}
	for _, e := range s.dc.entries {
		if e.pub != nil {
			out = append(out, DataChannelState{Location: LocationLocal, DataChannelName: e.pub.name, ID: e.pub.id,
				Status: channelStatus(e.pub.dc, e.pub.isClosed())})
			continue
		}
		sub := e.sub
		sub.mu.Lock()
		gated := sub.gate != nil && !sub.acked
		closed := sub.closed
		sub.mu.Unlock()
		st := channelStatus(sub.dc, closed)
		if st == StatusActive && gated {
			st = StatusInitializing
		}
		out = append(out, DataChannelState{Location: LocationRemote, SessionID: string(sub.pub.sid),
			DataChannelName: sub.pub.name, ID: sub.id, Status: st})
	}
	return out
}

// channelStatus maps a channel to the GET session status enum: active when
// open, initializing while connecting, inactive once closing or closed.
func channelStatus(dc *webrtc.DataChannel, closed bool) string {
	if closed {
		return StatusInactive
	}
	switch dc.ReadyState() {
	case webrtc.DataChannelStateOpen:
		return StatusActive
	case webrtc.DataChannelStateConnecting:
		return StatusInitializing
	}
	return StatusInactive
}

// closeDataChannels releases DataChannel state when the session closes,
// before the PeerConnection is closed: publications tear down their
// subscribers' channels in other sessions, subscriptions leave their
// publications. Called without locks held.
func (s *Session) closeDataChannels() {
	s.dc.mu.Lock()
	s.dc.closed = true
	entries := append([]dcEntry(nil), s.dc.entries...)
	s.dc.pubs = nil
	s.dc.mu.Unlock()
	for _, e := range entries {
		if e.pub != nil {
			e.pub.close(false)
		} else {
			e.sub.close(false)
		}
	}
}

// sctpNegotiated reports whether the session's current descriptions carry
// an accepted m=application, and whether a pending SFU offer adds one.
func sctpNegotiated(pc *webrtc.PeerConnection) (negotiated, offered bool) {
	if pc == nil {
		return false, false
	}
	if rd := pc.CurrentRemoteDescription(); rd != nil {
		negotiated = hasApplication(rd.SDP)
	}
	if ld := pc.PendingLocalDescription(); ld != nil && ld.Type == webrtc.SDPTypeOffer {
		offered = hasApplication(ld.SDP)
	}
	return negotiated, offered
}

// hasApplication reports whether raw has an m=application section that is
// not rejected (port 0 without bundle-only).
func hasApplication(raw string) bool {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return false
	}
	for _, md := range d.MediaDescriptions {
		if md.MediaName.Media != "application" {
			continue
		}
		if _, bundleOnly := md.Attribute("bundle-only"); md.MediaName.Port.Value != 0 || bundleOnly {
			return true
		}
	}
	return false
}

// sfuIsDTLSClient tells the SFU's DTLS role from the negotiated setup
// attributes: the DTLS client opens in-band channels on even ids, the
// server on odd ones (RFC 8832). ok is false while the role is open.
func sfuIsDTLSClient(pc *webrtc.PeerConnection) (client, ok bool) {
	if ld := pc.CurrentLocalDescription(); ld != nil {
		switch setupOf(ld.SDP) {
		case "active":
			return true, true
		case "passive":
			return false, true
		}
	}
	if rd := pc.CurrentRemoteDescription(); rd != nil {
		switch setupOf(rd.SDP) {
		case "active":
			return false, true
		case "passive":
			return true, true
		}
	}
	return false, false
}

func setupOf(raw string) string {
	for _, l := range strings.Split(raw, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=setup:"); ok {
			return v
		}
	}
	return ""
}

// uniqueApplicationMid gives the m=application section of an SFU offer a
// mid no other section uses. Pion names the appended section after the
// number of sections, which an endpoint's own mids (recycled m-lines,
// non-contiguous numbers) may already hold; a duplicate mid would make the
// offer unusable. The next number above every numeric mid is taken.
func uniqueApplicationMid(raw string) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return "", err
	}
	var app *sdp.MediaDescription
	used := map[string]int{}
	next := 0
	for _, md := range d.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		used[mid]++
		if n, err := strconv.Atoi(mid); err == nil && n >= next {
			next = n + 1
		}
		if md.MediaName.Media == "application" {
			app = md
		}
	}
	if app == nil {
		return raw, nil
	}
	old, _ := app.Attribute(sdp.AttrKeyMID)
	if used[old] < 2 {
		return raw, nil
	}
	fresh := strconv.Itoa(next)
	for i, a := range app.Attributes {
		if a.Key == sdp.AttrKeyMID {
			app.Attributes[i].Value = fresh
		}
	}
	for i, a := range d.Attributes {
		if a.Key != sdp.AttrKeyGroup || !strings.HasPrefix(a.Value, "BUNDLE") {
			continue
		}
		f := strings.Fields(a.Value)
		// The application section is the last of the group, as Pion appends it.
		for j := len(f) - 1; j > 0; j-- {
			if f[j] == old {
				f[j] = fresh
				break
			}
		}
		d.Attributes[i].Value = strings.Join(f, " ")
	}
	out, err := d.Marshal()
	if err != nil {
		return "", err
	}
	return string(out), nil
}
