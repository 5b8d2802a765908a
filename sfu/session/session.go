package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

// gatherTimeout bounds ICE gathering; with a UDP mux it takes microseconds.
const gatherTimeout = 5 * time.Second

// Session is one endpoint's PeerConnection and its tracks. API operations
// on a session are serialised (op); state read by other sessions and Pion
// callbacks is guarded by mu. Lock order: op, then mu; never hold mu of two
// sessions at once. The Manager's Sweep or Close closes it.
type Session struct {
	ID         SessionID
	App        AppID
	thirdparty bool
	m          *Manager
	log        *slog.Logger

	op sync.Mutex

	mu            sync.Mutex
	pc            *webrtc.PeerConnection
	pending       bool // an SFU offer waits for its answer
	connected     bool
	everConnected bool
	connCh        chan struct{} // closed while connected
	lostAt        time.Time
	created       time.Time
	lastUse       time.Time
	pubs          map[TrackName]*publication // live publications by name
	locals        []*publication             // every publication, for GET
	subs          []*subscription            // every subscription, for GET
	closed        bool
	done          chan struct{}
	remote        netip.AddrPort // client address told to OnRemoteAddr
	// gate is open while the PeerConnection is connected; the session's
	// down tracks forward only then (see forward.Gate).
	gate forward.Gate

	dc dcState // DataChannels (datachannels.go)
}

// publication is a track this session publishes (location "local").
type publication struct {
	s     *Session
	name  TrackName
	mid   string
	kind  webrtc.RTPCodecType
	tr    *webrtc.RTPTransceiver
	track *forward.Track
	// bidi is the outbound side of a bidirectional transceiver (sendrecv);
	// "#name" pulls feed it.
	bidi   *forward.DownTrack
	closed bool
}

// subscription is a track this session receives (location "remote").
type subscription struct {
	mid    string
	pubSID SessionID
	name   TrackName
	dt     *forward.DownTrack
	pub    *publication
	closed bool
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Session) touch() {
	now := s.m.clock.Now()
	s.mu.Lock()
	s.lastUse = now
	s.mu.Unlock()
}

// Connected reports whether the transport is connected now.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// begin serialises an operation; the caller must call the returned func.
func (s *Session) begin() (func(), error) {
	s.op.Lock()
	if s.isClosed() {
		s.op.Unlock()
		return nil, errGone()
	}
	s.touch()
	return s.op.Unlock, nil
}

// ensurePC creates the PeerConnection at the first SDP exchange.
func (s *Session) ensurePC() (*webrtc.PeerConnection, bool, error) {
	s.mu.Lock()
	if s.pc != nil {
		pc := s.pc
		s.mu.Unlock()
		return pc, false, nil
	}
	s.mu.Unlock()
	pc, err := s.m.cfg.Transport.NewPeerConnection(s.thirdparty)
	if err != nil {
		return nil, false, errInternal(err)
	}
	// Pion runs each state handler in its own goroutine, so they can arrive
	// out of order: read the current state instead of the reported one.
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) { s.onConnectionState(pc) })
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { s.onTrack(pc, t, r) })
	if s.m.cfg.OnRemoteAddr != nil {
		pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
			s.setRemote(p)
		})
	}
	s.setupDataChannels(pc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		return nil, false, errGone()
	}
	s.pc = pc
	s.mu.Unlock()
	return pc, true, nil
}

// setRemote reports the newly selected client address (and drops the old).
func (s *Session) setRemote(p *webrtc.ICECandidatePair) {
	if p == nil || p.Remote == nil {
		return
	}
	ip, err := netip.ParseAddr(p.Remote.Address)
	if err != nil {
		return
	}
	addr := netip.AddrPortFrom(ip.Unmap(), p.Remote.Port)
	s.mu.Lock()
	old := s.remote
	if s.closed || old == addr {
		s.mu.Unlock()
		return
	}
	s.remote = addr
	s.mu.Unlock()
	if old.IsValid() {
		s.m.cfg.OnRemoteAddr(s.App, old, false)
	}
	s.m.cfg.OnRemoteAddr(s.App, addr, true)
}

// PeerConnection returns the session's PeerConnection (nil before the first
// SDP exchange). It is the seam for DataChannel support in this package.
func (s *Session) peerConnection() *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pc
}

func (s *Session) onConnectionState(pc *webrtc.PeerConnection) {
	now := s.m.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := pc.ConnectionState()
	s.log.Debug("connection state", "state", st.String())
	switch st {
	case webrtc.PeerConnectionStateConnected:
		if !s.connected {
			s.connected = true
			close(s.connCh)
		}
		s.everConnected = true
		s.lostAt = time.Time{}
		s.gate.SetOpen(true)
	case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		if s.connected {
			s.connected = false
			s.connCh = make(chan struct{})
		}
		s.gate.SetOpen(false)
		if s.lostAt.IsZero() {
			s.lostAt = now
		}
	}
}

// waitConnected blocks until the transport is connected or the connect
// wait runs out (425). A session with no transport yet does not wait.
func (s *Session) waitConnected(wait time.Duration) error {
	s.mu.Lock()
	if s.pc == nil || s.connected {
		s.mu.Unlock()
		return nil
	}
	ch := s.connCh
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-s.done:
		return errGone()
	case <-s.m.clock.After(wait):
		return errNotConnected()
	}
}

func (s *Session) expired(now time.Time, window time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if !s.lostAt.IsZero() {
		return now.Sub(s.lostAt) > window
	}
	return !s.everConnected && now.Sub(s.lastUse) > window
}

func (s *Session) onTrack(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	mid := ""
	for _, t := range pc.GetTransceivers() {
		if t.Receiver() == recv {
			mid = t.Mid()
		}
	}
	s.mu.Lock()
	var pub *publication
	for _, p := range s.locals {
		if p.mid == mid && !p.closed {
			pub = p
		}
	}
	s.mu.Unlock()
	if pub == nil {
		s.log.Debug("inbound track without publication", "mid", mid)
		return
	}
	if c := pub.track.Codec(); c.MimeType == "" {
		pub.track.SetCodec(remote.Codec().RTPCodecCapability)
	} else if !strings.EqualFold(c.MimeType, remote.Codec().MimeType) {
		// Subscribers were bound to the negotiated codec; the publisher
		// sends another one of the answer's list.
		s.log.Warn("publisher sends another codec than negotiated first", "track", string(pub.name),
			"negotiated", c.MimeType, "received", remote.Codec().MimeType)
	}
	if err := pub.track.AddLayer(remote.RID(), uint32(remote.SSRC()), remote); err != nil {
		s.log.Warn("cannot receive layer", "track", string(pub.name), "rid", remote.RID(), "err", err)
	}
}

func (s *Session) newTrack(name TrackName, kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability, rids []string) *forward.Track {
	return forward.NewTrack(forward.TrackConfig{
		ID: string(s.ID) + "/" + string(name), Kind: kind, Codec: codec, Rids: rids,
		Now: s.m.clock.Now,
		RequestKeyframe: func(ssrc uint32) {
			if pc := s.peerConnection(); pc != nil {
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
			}
		},
	})
}

// setLocal sets a local description, waits for gathering and returns the
// complete SDP.
func setLocal(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (*SessionDescription, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return nil, fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
		return nil, errors.New("ice gathering timed out")
	}
	ld := pc.LocalDescription()
	return &SessionDescription{Type: ld.Type.String(), SDP: ld.SDP}, nil
}

func transceiverByMid(pc *webrtc.PeerConnection, mid string) *webrtc.RTPTransceiver {
	for _, t := range pc.GetTransceivers() {
		if t.Mid() == mid {
			return t
		}
	}
	return nil
}

// lookupPub finds a live publication of the same app.
func (s *Session) lookupPub(sid SessionID, name TrackName) (*publication, error) {
	owner, err := s.m.Get(s.App, sid)
	if err != nil {
		return s.m.remotePub(s.App, sid, name, err)
	}
	owner.mu.Lock()
	defer owner.mu.Unlock()
	p := owner.pubs[name]
	if p == nil || p.closed {
		return nil, ErrSessionGone
	}
	return p, nil
}

// resolveCodecs fills in the codec of publications negotiated by desc.
func (s *Session) resolveCodecs(desc string) {
	secs, err := transport.ParseSections(desc)
	if err != nil {
		return
	}
	s.mu.Lock()
	pubs := append([]*publication(nil), s.locals...)
	s.mu.Unlock()
	for _, p := range pubs {
		if p.track.Codec().MimeType != "" {
			continue
		}
		for _, sec := range secs {
			if sec.Mid == p.mid && sec.Codec.MimeType != "" {
				p.track.SetCodec(sec.Codec)
			}
		}
	}
}

// Close ends the session: its publications stop (subscribers elsewhere go
// inactive), its subscriptions detach and the PeerConnection closes.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	pc := s.pc
	pubs := append([]*publication(nil), s.locals...)
	subs := append([]*subscription(nil), s.subs...)
	for _, p := range pubs {
		p.closed = true
	}
	for _, sub := range subs {
		sub.closed = true
	}
	s.mu.Unlock()
	for _, p := range pubs {
		p.track.Close()
		if p.bidi != nil {
			p.bidi.Close()
		}
	}
	for _, sub := range subs {
		sub.dt.Close()
	}
	s.closeDataChannels()
	if pc != nil {
		if err := pc.Close(); err != nil {
			s.log.Debug("close peer connection", "err", err)
		}
	}
	_, _, egress, ingress := s.counts()
	s.m.retire(s, Usage{EgressBytes: egress, IngressBytes: ingress})
	s.mu.Lock()
	remote := s.remote
	s.remote = netip.AddrPort{}
	s.mu.Unlock()
	if remote.IsValid() && s.m.cfg.OnRemoteAddr != nil {
		s.m.cfg.OnRemoteAddr(s.App, remote, false)
	}
}

// maxClosedKept bounds how many closed tracks a session keeps listing as
// inactive in GET session.
const maxClosedKept = 256

// pruneClosed forgets the oldest closed tracks past maxClosedKept. s.mu held.
func (s *Session) pruneClosed() {
	closedSubs := 0
	for _, sub := range s.subs {
		if sub.closed {
			closedSubs++
		}
	}
	if closedSubs > maxClosedKept {
		kept := s.subs[:0]
		for _, sub := range s.subs {
			if sub.closed && closedSubs > maxClosedKept {
				closedSubs--
				continue
			}
			kept = append(kept, sub)
		}
		s.subs = kept
	}
	closedPubs := 0
	for _, p := range s.locals {
		if p.closed {
			closedPubs++
		}
	}
	if closedPubs > maxClosedKept {
		kept := s.locals[:0]
		for _, p := range s.locals {
			if p.closed && closedPubs > maxClosedKept {
				closedPubs--
				continue
			}
			kept = append(kept, p)
		}
		s.locals = kept
	}
}

// collectIdle closes publications without inbound packets for timeout.
func (s *Session) collectIdle(now time.Time, timeout time.Duration) {
	s.mu.Lock()
	var idle []*publication
	for _, p := range s.locals {
		if !p.closed && now.Sub(p.track.LastPacket()) > timeout {
			p.closed = true
			if s.pubs[p.name] == p {
				delete(s.pubs, p.name)
			}
			idle = append(idle, p)
		}
	}
	s.pruneClosed()
	s.mu.Unlock()
	for _, p := range idle {
		s.log.Info("track collected after inactivity", "track", string(p.name), "timeout", timeout)
		p.track.Close()
	}
}

func (s *Session) counts() (pubs, subs int, egress, ingress uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counted := map[*forward.DownTrack]bool{}
	for _, p := range s.locals {
		if !p.closed {
			pubs++
		}
		_, b := p.track.Stats()
		ingress += b
		if p.bidi != nil && !counted[p.bidi] {
			counted[p.bidi] = true
			_, e := p.bidi.Stats()
			egress += e
		}
	}
	for _, sub := range s.subs {
		if !sub.closed && sub.dt.Source() != nil {
			subs++
		}
		if !counted[sub.dt] {
			counted[sub.dt] = true
			_, e := sub.dt.Stats()
			egress += e
		}
	}
	egress += s.dc.egress.Load()
	ingress += s.dc.ingress.Load()
	return
}

// State is GET session: every track this session published or pulled.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Tracks: []TrackState{}, DataChannels: []DataChannelState{}}
	for _, p := range s.locals {
		status := StatusInitializing
		if n, _ := p.track.Stats(); p.closed {
			status = StatusInactive
		} else if n > 0 {
			status = StatusActive
		}
		st.Tracks = append(st.Tracks, TrackState{Location: LocationLocal, Mid: p.mid, TrackName: string(p.name), Status: status})
	}
	for _, sub := range s.subs {
		status := StatusInitializing
		src := sub.dt.Source()
		if sub.closed || src == nil {
			status = StatusInactive
		} else if n, _ := sub.dt.Stats(); n > 0 {
			status = StatusActive
		}
		st.Tracks = append(st.Tracks, TrackState{Location: LocationRemote, Mid: sub.mid, TrackName: string(sub.name),
			SessionID: string(sub.pubSID), Status: status})
	}
	st.DataChannels = append(st.DataChannels, s.dataChannelStates()...)
	return st
}
