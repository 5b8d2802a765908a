package session

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

const descNotFound = "Track not found on remote peer. Make sure the publisher peer is connected and sending packets for this track"

func itemErr(r TrackResult, code, desc string) TrackResult {
	r.ErrorCode, r.ErrorDescription = code, desc
	return r
}

func kindOf(s string) webrtc.RTPCodecType {
	switch strings.ToLower(s) {
	case "audio":
		return webrtc.RTPCodecTypeAudio
	case "video":
		return webrtc.RTPCodecTypeVideo
	}
	return 0
}

func validateTracks(tracks []TrackObject, lim Limits) (local bool, err error) {
	if lim.MaxTracksPerCall > 0 && len(tracks) > lim.MaxTracksPerCall {
		return false, errParams(fmt.Sprintf("Expecting at most %d tracks in one call, got %d", lim.MaxTracksPerCall, len(tracks)), ErrTooManyTracks)
	}
	locs := map[string]bool{}
	for i, t := range tracks {
		switch t.Location {
		case LocationLocal:
		case LocationRemote:
			if t.SessionID == "" || t.TrackName == "" {
				return false, errDecoding(fmt.Sprintf("JSON body validation error: tracks[%d] needs sessionId and trackName", i))
			}
		default:
			return false, errDecoding(fmt.Sprintf("JSON body validation error: tracks[%d].location must be local or remote", i))
		}
		locs[t.Location] = true
	}
	if len(locs) > 1 {
		return false, errParams("All tracks of one call must be local or all remote", ErrMixedLocations)
	}
	return locs[LocationLocal], nil
}

func checkDesc(sd *SessionDescription, want string) error {
	if sd == nil {
		return nil
	}
	if sd.Type != want {
		return errSDP(fmt.Sprintf("Expected a session description of type %q, got %q", want, sd.Type), ErrBadDescription)
	}
	if strings.TrimSpace(sd.SDP) == "" {
		return errSDP("Session description has no SDP", ErrBadDescription)
	}
	if err := transport.CheckSDP(sd.SDP); err != nil {
		return errSDP("Session description has too many sections, candidates or lines", err)
	}
	return nil
}

// NewTracks is tracks/new: publish and/or subscribe (CONTRACT §2.2).
func (s *Session) NewTracks(req TracksRequest, lim Limits) (*TracksResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	local, err := validateTracks(req.Tracks, lim)
	if err != nil {
		return nil, err
	}
	if err := checkDesc(req.SessionDescription, "offer"); err != nil {
		return nil, err
	}
	if len(req.Tracks) == 0 && req.SessionDescription == nil {
		return nil, errParams("No tracks and no session description", ErrInvalidTrackObj)
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending {
		return nil, errSDP("A previous SFU offer is waiting for its answer on /renegotiate", ErrPendingOffer)
	}
	if err := s.waitConnected(lim.ConnectWait); err != nil {
		return nil, err
	}
	if req.SessionDescription != nil {
		return s.withClientOffer(req, local)
	}
	return s.withSFUOffer(req, local)
}

// withClientOffer handles push with an endpoint offer, autoDiscover and
// pulls into client-offered m-lines; the reply is an answer.
func (s *Session) withClientOffer(req TracksRequest, local bool) (*TracksResponse, error) {
	secs, err := transport.ParseSections(req.SessionDescription.SDP)
	if err != nil {
		return nil, errSDP("Session description cannot be parsed", err)
	}
	pc, _, err := s.ensurePC()
	if err != nil {
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: req.SessionDescription.SDP}); err != nil {
		return nil, errSDP("Session description not accepted", err)
	}
	resp := &TracksResponse{Tracks: []TrackResult{}}
	var newPubs []*publication
	var newSubs []*subscription
	if local || req.AutoDiscover {
		items := req.Tracks
		if req.AutoDiscover {
			items = s.discover(secs, items)
		}
		for i, it := range items {
			res, pub := s.publishOffered(pc, secs, it, newPubs)
			if i >= len(req.Tracks) {
				res.Location, res.Kind = LocationLocal, it.Kind
			}
			resp.Tracks = append(resp.Tracks, res)
			if pub != nil {
				newPubs = append(newPubs, pub)
			}
		}
	} else {
		used := map[string]bool{}
		s.mu.Lock()
		for _, sub := range s.subs {
			if !sub.closed {
				used[sub.mid] = true
			}
		}
		s.mu.Unlock()
		for _, it := range req.Tracks {
			res, sub := s.pullIntoOffer(pc, secs, it, used)
			resp.Tracks = append(resp.Tracks, res)
			if sub != nil {
				newSubs = append(newSubs, sub)
			}
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		s.dropNew(newPubs, newSubs)
		rollback(pc)
		return nil, errSDP("Cannot answer the session description", err)
	}
	sd, err := setLocal(pc, answer)
	if err != nil {
		s.dropNew(newPubs, newSubs)
		rollback(pc)
		return nil, errInternal(err)
	}
	s.resolveCodecs(sd.SDP)
	if sd.SDP, err = transport.RejectLikeOffer(req.SessionDescription.SDP, sd.SDP); err != nil {
		return nil, errInternal(err)
	}
	resp.SessionDescription = sd
	return resp, nil
}

// discover turns every new sending m-line of the offer into a local track
// object with a random name (autoDiscover).
func (s *Session) discover(secs []transport.MediaSection, items []TrackObject) []TrackObject {
	known := map[string]bool{}
	for _, it := range items {
		known[it.Mid] = true
	}
	s.mu.Lock()
	for _, p := range s.locals {
		if !p.closed {
			known[p.mid] = true
		}
	}
	s.mu.Unlock()
	out := append([]TrackObject(nil), items...)
	for _, sec := range secs {
		if sec.Rejected || known[sec.Mid] {
			continue
		}
		if sec.Direction != webrtc.RTPTransceiverDirectionSendonly && sec.Direction != webrtc.RTPTransceiverDirectionSendrecv {
			continue
		}
		out = append(out, TrackObject{Location: LocationLocal, Mid: sec.Mid, TrackName: RandomHex(16), Kind: sec.Kind.String()})
	}
	return out
}

func (s *Session) publishOffered(pc *webrtc.PeerConnection, secs []transport.MediaSection, it TrackObject, batch []*publication) (TrackResult, *publication) {
	res := TrackResult{TrackName: it.TrackName, Mid: it.Mid}
	if it.TrackName == "" {
		return itemErr(res, CodeInvalidParams, "trackName is required"), nil
	}
	var sec *transport.MediaSection
	for i := range secs {
		if secs[i].Mid == it.Mid {
			sec = &secs[i]
		}
	}
	if sec == nil || sec.Rejected || (sec.Direction != webrtc.RTPTransceiverDirectionSendonly && sec.Direction != webrtc.RTPTransceiverDirectionSendrecv) {
		return itemErr(res, CodeInvalidParams, fmt.Sprintf("mid %q is not a sending m-section of the offer", it.Mid)), nil
	}
	tr := transceiverByMid(pc, it.Mid)
	if tr == nil {
		return itemErr(res, CodeInvalidParams, fmt.Sprintf("mid %q not found", it.Mid)), nil
	}
	name := TrackName(it.TrackName)
	s.mu.Lock()
	_, dup := s.pubs[name]
	for _, p := range batch {
		dup = dup || p.name == name
	}
	for _, p := range s.locals {
		dup = dup || (!p.closed && p.mid == it.Mid)
	}
	s.mu.Unlock()
	if dup {
		return itemErr(res, CodeRepeatedLocalTrack, fmt.Sprintf("Track %q or mid %q is already published by this session", it.TrackName, it.Mid)), nil
	}
	pub := &publication{s: s, name: name, mid: it.Mid, kind: sec.Kind, tr: tr,
		track: s.newTrack(name, sec.Kind, webrtc.RTPCodecCapability{}, sec.Rids)}
	if it.BidirectionalMediaStream && sec.Direction == webrtc.RTPTransceiverDirectionSendrecv {
		dt := s.newDownTrack(it.TrackName, string(s.ID), sec.Kind, webrtc.RTPCodecCapability{})
		if err := s.attachSender(pc, tr, dt); err != nil {
			return itemErr(res, CodeInternal, "Backend error"), nil
		}
		pub.bidi = dt
	}
	s.mu.Lock()
	s.pubs[name] = pub
	s.locals = append(s.locals, pub)
	s.mu.Unlock()
	return res, pub
}

// newDownTrack makes a down track that forwards only while this session's
// PeerConnection is connected, so it starts on a keyframe the subscriber
// actually receives.
func (s *Session) newDownTrack(id, streamID string, kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability) *forward.DownTrack {
	dt := forward.NewDownTrack(id, streamID, kind, codec)
	dt.SetGate(&s.gate)
	return dt
}

// attachSender makes tr send dt (tr came from a remote offer).
func (s *Session) attachSender(pc *webrtc.PeerConnection, tr *webrtc.RTPTransceiver, dt *forward.DownTrack) error {
	if snd := tr.Sender(); snd != nil {
		if err := snd.ReplaceTrack(dt); err != nil {
			return err
		}
		go dt.ServeRTCP(snd)
		return nil
	}
	snd, err := s.m.cfg.Transport.API(s.thirdparty).NewRTPSender(dt, pc.SCTP().Transport())
	if err != nil {
		return err
	}
	if err := tr.SetSender(snd, dt); err != nil {
		_ = snd.Stop()
		return err
	}
	go dt.ServeRTCP(snd)
	return nil
}

func (s *Session) pullIntoOffer(pc *webrtc.PeerConnection, secs []transport.MediaSection, it TrackObject, used map[string]bool) (TrackResult, *subscription) {
	res := TrackResult{SessionID: it.SessionID, TrackName: it.TrackName}
	pub, err := s.lookupPub(SessionID(it.SessionID), TrackName(it.TrackName))
	if err != nil {
		return itemErr(res, CodeNotFoundTrack, descNotFound), nil
	}
	codec := pub.track.Codec()
	if codec.MimeType == "" {
		return itemErr(res, CodeNotFoundTrack, descNotFound), nil
	}
	kind := pub.kind
	if k := kindOf(it.Kind); k != 0 && k != kind {
		return itemErr(res, CodeInvalidParams, "kind does not match the published track"), nil
	}
	for _, sec := range secs {
		if sec.Rejected || used[sec.Mid] || sec.Kind != kind || sec.Direction != webrtc.RTPTransceiverDirectionRecvonly {
			continue
		}
		tr := transceiverByMid(pc, sec.Mid)
		if tr == nil || tr.Sender() != nil {
			continue
		}
		dt := s.newDownTrack(it.TrackName, it.SessionID, kind, codec)
		if err := s.attachSender(pc, tr, dt); err != nil {
			return itemErr(res, CodeInternal, "Backend error"), nil
		}
		used[sec.Mid] = true
		sub := &subscription{mid: sec.Mid, pubSID: SessionID(it.SessionID), name: TrackName(it.TrackName), dt: dt, pub: pub}
		if err := s.subscribe(sub, pub, it.Simulcast); err != nil {
			return itemErr(res, CodeNotFoundTrack, descNotFound), nil
		}
		res.Mid = sec.Mid
		return res, sub
	}
	return itemErr(res, CodeInvalidParams, fmt.Sprintf("The offer has no free recvonly %s m-section for this track", kind)), nil
}

// subscribe attaches sub's down track to pub and records sub.
func (s *Session) subscribe(sub *subscription, pub *publication, sim *Simulcast) error {
	if sim != nil {
		sub.dt.SetPreferences(prefsOf(sim))
	}
	if err := sub.dt.SetSource(pub.track); err != nil {
		return err
	}
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return nil
}

func prefsOf(sim *Simulcast) forward.Preferences {
	return forward.Preferences{PreferredRid: sim.PreferredRid, PriorityOrdering: sim.PriorityOrdering, RidNotAvailable: sim.RidNotAvailable}
}

// withSFUOffer handles pulls with an SFU offer, push with an SFU offer
// (bidirectionalMediaStream + kind) and "#name" pulls onto existing
// bidirectional transceivers.
func (s *Session) withSFUOffer(req TracksRequest, local bool) (*TracksResponse, error) {
	pc, _, err := s.ensurePC()
	if err != nil {
		return nil, err
	}
	resp := &TracksResponse{Tracks: make([]TrackResult, len(req.Tracks))}
	type added struct {
		i   int
		tr  *webrtc.RTPTransceiver
		pub *publication
		sub *subscription
	}
	var adds []added
	for i, it := range req.Tracks {
		if local {
			res := TrackResult{TrackName: it.TrackName}
			kind := kindOf(it.Kind)
			switch {
			case it.TrackName == "":
				resp.Tracks[i] = itemErr(res, CodeInvalidParams, "trackName is required")
				continue
			case kind == 0:
				resp.Tracks[i] = itemErr(res, CodeInvalidParams, "kind (audio or video) is required when the SFU makes the offer")
				continue
			}
			name := TrackName(it.TrackName)
			s.mu.Lock()
			_, dup := s.pubs[name]
			s.mu.Unlock()
			for _, a := range adds {
				dup = dup || (a.pub != nil && a.pub.name == name)
			}
			if dup {
				resp.Tracks[i] = itemErr(res, CodeRepeatedLocalTrack, fmt.Sprintf("Track %q is already published by this session", it.TrackName))
				continue
			}
			pub := &publication{s: s, name: name, kind: kind, track: s.newTrack(name, kind, webrtc.RTPCodecCapability{}, nil)}
			var tr *webrtc.RTPTransceiver
			if it.BidirectionalMediaStream {
				dt := s.newDownTrack(it.TrackName, string(s.ID), kind, webrtc.RTPCodecCapability{})
				tr, err = pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
				if err == nil {
					go dt.ServeRTCP(tr.Sender())
				}
				pub.bidi = dt
			} else {
				tr, err = pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
			}
			if err != nil {
				resp.Tracks[i] = itemErr(res, CodeInternal, "Backend error")
				continue
			}
			pub.tr = tr
			adds = append(adds, added{i: i, tr: tr, pub: pub})
			continue
		}
		res := TrackResult{SessionID: it.SessionID, TrackName: it.TrackName}
		pub, err := s.lookupPub(SessionID(it.SessionID), TrackName(it.TrackName))
		if err != nil || pub.track.Codec().MimeType == "" {
			resp.Tracks[i] = itemErr(res, CodeNotFoundTrack, descNotFound)
			continue
		}
		if strings.HasPrefix(it.Mid, "#") {
			resp.Tracks[i] = s.pullOntoBidi(it, pub)
			continue
		}
		dt := s.newDownTrack(it.TrackName, it.SessionID, pub.kind, pub.track.Codec())
		tr, err := pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			resp.Tracks[i] = itemErr(res, CodeInternal, "Backend error")
			continue
		}
		go dt.ServeRTCP(tr.Sender())
		sub := &subscription{pubSID: SessionID(it.SessionID), name: TrackName(it.TrackName), dt: dt, pub: pub}
		if err := s.subscribe(sub, pub, it.Simulcast); err != nil {
			resp.Tracks[i] = itemErr(res, CodeNotFoundTrack, descNotFound)
			_ = pc.RemoveTrack(tr.Sender())
			continue
		}
		adds = append(adds, added{i: i, tr: tr, sub: sub})
	}
	if len(adds) == 0 {
		return resp, nil
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, errInternal(err)
	}
	sd, err := setLocal(pc, offer)
	if err != nil {
		return nil, errInternal(err)
	}
	s.mu.Lock()
	s.pending = true
	for _, a := range adds {
		mid := a.tr.Mid()
		if a.pub != nil {
			a.pub.mid = mid
			s.pubs[a.pub.name] = a.pub
			s.locals = append(s.locals, a.pub)
			resp.Tracks[a.i] = TrackResult{TrackName: string(a.pub.name), Mid: mid}
		} else {
			a.sub.mid = mid
			resp.Tracks[a.i] = TrackResult{SessionID: string(a.sub.pubSID), TrackName: string(a.sub.name), Mid: mid}
		}
	}
	s.mu.Unlock()
	resp.RequiresImmediateRenegotiation = true
	resp.SessionDescription = sd
	return resp, nil
}

// pullOntoBidi feeds a publication into this session's bidirectional
// transceiver named by "#<localTrackName>"; no SDP change is needed.
func (s *Session) pullOntoBidi(it TrackObject, pub *publication) TrackResult {
	res := TrackResult{SessionID: it.SessionID, TrackName: it.TrackName}
	s.mu.Lock()
	host := s.pubs[TrackName(strings.TrimPrefix(it.Mid, "#"))]
	s.mu.Unlock()
	if host == nil || host.bidi == nil {
		return itemErr(res, CodeInvalidParams, fmt.Sprintf("No bidirectional local track %q in this session", strings.TrimPrefix(it.Mid, "#")))
	}
	if host.kind != pub.kind {
		return itemErr(res, CodeInvalidParams, "kind does not match the bidirectional transceiver")
	}
	sub := &subscription{mid: host.mid, pubSID: SessionID(it.SessionID), name: TrackName(it.TrackName), dt: host.bidi, pub: pub}
	s.mu.Lock()
	for _, old := range s.subs {
		if old.mid == host.mid && !old.closed {
			old.closed = true
		}
	}
	s.mu.Unlock()
	if err := s.subscribe(sub, pub, it.Simulcast); err != nil {
		return itemErr(res, CodeNotFoundTrack, descNotFound)
	}
	res.Mid = host.mid
	return res
}

// dropNew forgets publications and subscriptions of a failed exchange.
func (s *Session) dropNew(pubs []*publication, subs []*subscription) {
	s.mu.Lock()
	for _, p := range pubs {
		p.closed = true
		if s.pubs[p.name] == p {
			delete(s.pubs, p.name)
		}
	}
	for _, sub := range subs {
		sub.closed = true
	}
	s.mu.Unlock()
	for _, p := range pubs {
		p.track.Close()
	}
	for _, sub := range subs {
		sub.dt.Close()
	}
}

// Renegotiate takes the endpoint's answer to a pending SFU offer, or an
// endpoint offer (then returns an answer).
func (s *Session) Renegotiate(sd SessionDescription) (*SessionDescription, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	pc := s.peerConnection()
	switch sd.Type {
	case "answer":
		if err := checkDesc(&sd, "answer"); err != nil {
			return nil, err
		}
		s.mu.Lock()
		pending := s.pending
		s.mu.Unlock()
		if pc == nil || !pending {
			return nil, errSDP("No SFU offer is waiting for an answer", ErrNoPendingOffer)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.SDP}); err != nil {
			return nil, errSDP("Answer not accepted", err)
		}
		s.mu.Lock()
		s.pending = false
		s.mu.Unlock()
		s.resolveCodecs(sd.SDP)
		return nil, nil
	case "offer":
		return s.answerOffer(sd)
	}
	return nil, errSDP("sessionDescription.type must be offer or answer", ErrBadDescription)
}

// AnswerOffer answers an endpoint offer without touching tracks (the
// deprecated sessions/new with an offer).
func (s *Session) AnswerOffer(sd SessionDescription) (*SessionDescription, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	return s.answerOffer(sd)
}

func (s *Session) answerOffer(sd SessionDescription) (*SessionDescription, error) {
	if err := checkDesc(&sd, "offer"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending {
		return nil, errSDP("A previous SFU offer is waiting for its answer on /renegotiate", ErrPendingOffer)
	}
	pc, _, err := s.ensurePC()
	if err != nil {
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.SDP}); err != nil {
		return nil, errSDP("Session description not accepted", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		rollback(pc)
		return nil, errSDP("Cannot answer the session description", err)
	}
	out, err := setLocal(pc, answer)
	if err != nil {
		rollback(pc)
		return nil, errInternal(err)
	}
	if out.SDP, err = transport.RejectLikeOffer(sd.SDP, out.SDP); err != nil {
		return nil, errInternal(err)
	}
	return out, nil
}

// CloseTracks is tracks/close (CONTRACT §2.4).
func (s *Session) CloseTracks(req CloseRequest, lim Limits) (*TracksResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if len(req.Tracks) == 0 {
		return nil, errParams("tracks must list at least one mid", ErrInvalidTrackObj)
	}
	if lim.MaxTracksPerCall > 0 && len(req.Tracks) > lim.MaxTracksPerCall {
		return nil, errParams(fmt.Sprintf("Expecting at most %d tracks in one call", lim.MaxTracksPerCall), ErrTooManyTracks)
	}
	if err := checkDesc(req.SessionDescription, "offer"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending && req.SessionDescription != nil {
		return nil, errSDP("A previous SFU offer is waiting for its answer on /renegotiate", ErrPendingOffer)
	}
	if err := s.waitConnected(lim.ConnectWait); err != nil {
		return nil, err
	}
	resp := &TracksResponse{Tracks: []TrackResult{}}
	for _, it := range req.Tracks {
		if s.closeMid(it.Mid) {
			resp.Tracks = append(resp.Tracks, TrackResult{Mid: it.Mid})
		} else {
			resp.Tracks = append(resp.Tracks, itemErr(TrackResult{Mid: it.Mid}, CodeCloseTrack, "Track doesn't exist or was already closed"))
		}
	}
	if req.SessionDescription != nil && !req.Force {
		answer, err := s.answerOffer(*req.SessionDescription)
		if err != nil {
			return nil, err
		}
		resp.SessionDescription = answer
	}
	return resp, nil
}

// closeMid stops everything this session sends or receives on mid.
func (s *Session) closeMid(mid string) bool {
	if mid == "" {
		return false
	}
	s.mu.Lock()
	var pubs []*publication
	var subs []*subscription
	for _, p := range s.locals {
		if p.mid == mid && !p.closed {
			p.closed = true
			if s.pubs[p.name] == p {
				delete(s.pubs, p.name)
			}
			pubs = append(pubs, p)
		}
	}
	for _, sub := range s.subs {
		if sub.mid == mid && !sub.closed {
			sub.closed = true
			subs = append(subs, sub)
		}
	}
	s.pruneClosed()
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
	return len(pubs)+len(subs) > 0
}

// UpdateTracks is tracks/update (CONTRACT §2.5): change the simulcast
// layer, or swap the source of a receiving transceiver.
func (s *Session) UpdateTracks(req UpdateRequest, lim Limits) (*TracksResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if lim.MaxTracksPerCall > 0 && len(req.Tracks) > lim.MaxTracksPerCall {
		return nil, errParams(fmt.Sprintf("Expecting at most %d tracks in one call", lim.MaxTracksPerCall), ErrTooManyTracks)
	}
	if err := s.waitConnected(lim.ConnectWait); err != nil {
		return nil, err
	}
	resp := &TracksResponse{Tracks: []TrackResult{}}
	for _, it := range req.Tracks {
		resp.Tracks = append(resp.Tracks, s.updateOne(it))
	}
	return resp, nil
}

func (s *Session) updateOne(it TrackObject) TrackResult {
	res := TrackResult{Mid: it.Mid, SessionID: it.SessionID, TrackName: it.TrackName}
	s.mu.Lock()
	var sub *subscription
	for _, x := range s.subs {
		if x.mid == it.Mid && !x.closed {
			sub = x
		}
	}
	s.mu.Unlock()
	if sub == nil {
		return itemErr(res, CodeUpdateTrack, fmt.Sprintf("No receiving track at mid %q", it.Mid))
	}
	pub := sub.pub
	if (it.SessionID != "" && SessionID(it.SessionID) != sub.pubSID) || (it.TrackName != "" && TrackName(it.TrackName) != sub.name) || sub.dt.Source() == nil {
		sid, name := sub.pubSID, sub.name
		if it.SessionID != "" {
			sid = SessionID(it.SessionID)
		}
		if it.TrackName != "" {
			name = TrackName(it.TrackName)
		}
		np, err := s.lookupPub(sid, name)
		if err != nil {
			return itemErr(res, CodeNotFoundTrack, descNotFound)
		}
		if err := sub.dt.SetSource(np.track); err != nil {
			if errors.Is(err, forward.ErrCodecMismatch) {
				return itemErr(res, CodeUpdateTrack, "The new source uses another codec than this transceiver")
			}
			return itemErr(res, CodeNotFoundTrack, descNotFound)
		}
		s.mu.Lock()
		sub.pub, sub.pubSID, sub.name = np, sid, name
		s.mu.Unlock()
		pub = np
	}
	res.SessionID, res.TrackName = string(sub.pubSID), string(sub.name)
	if it.Simulcast != nil {
		rids := pub.track.Rids()
		if !pub.track.Simulcast() {
			return itemErr(res, CodeUpdateTrack, "The track is not configured for simulcast")
		}
		if p := it.Simulcast.PreferredRid; p != "" && !contains(rids, p) {
			return itemErr(res, CodeUpdateTrack, fmt.Sprintf("The publisher does not send rid %q", p))
		}
		sub.dt.SetPreferences(prefsOf(it.Simulcast))
	}
	return res
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// rollback returns the session to stable after an offer it could not
// answer, so the next exchange can proceed.
func rollback(pc *webrtc.PeerConnection) {
	if pc.SignalingState() == webrtc.SignalingStateHaveRemoteOffer {
		_ = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
	}
}
