package session

import (
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/pion/webrtc/v4"
)

// Sentinel errors of the DataChannel calls.
var (
	ErrSCTPNegotiated = errors.New("datachannel transport already negotiated")
	ErrNoSCTP         = errors.New("no datachannel transport negotiated")
	ErrNoFreeID       = errors.New("no free datachannel id")
)

const (
	descDCNotFound = "DataChannel not found: make sure the publisher session exists in this app and published this dataChannelName"
	descDCClosed   = "DataChannel doesn't exist or was already closed"
	// maxNameLen bounds dataChannelName (the SCTP label limit is 65535).
	maxNameLen = 1024
)

func errNoSCTP() *Error {
	return newErr(http.StatusTooEarly, CodeSessionError,
		"The session has no DataChannel transport: call datachannels/establish (or offer m=application) first", ErrNoSCTP)
}

// EstablishDataChannels is datachannels/establish (CONTRACT §2.7): it adds
// the SCTP transport to the session. Without an offer the SFU re-offers
// with m=application appended and opens "server-events" in-band; with an
// endpoint offer (which carries the endpoint's own "server-events") it
// answers.
func (s *Session) EstablishDataChannels(req EstablishRequest, lim Limits) (*EstablishResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if req.DataChannel == nil {
		return nil, errDecoding("JSON body validation error: dataChannel is required")
	}
	if req.DataChannel.Location != LocationRemote || req.DataChannel.DataChannelName != ServerEventsChannel {
		return nil, errParams(fmt.Sprintf("datachannels/establish only pulls the remote %q channel", ServerEventsChannel), ErrInvalidTrackObj)
	}
	if err := checkDesc(req.SessionDescription, "offer"); err != nil {
		return nil, err
	}
	pc := s.peerConnection()
	if negotiated, _ := sctpNegotiated(pc); negotiated {
		return nil, newErr(http.StatusBadRequest, CodeDecodingError,
			"DataChannel transport already negotiated for this session", ErrSCTPNegotiated)
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
	resp := &EstablishResponse{DataChannel: DataChannelResult{DataChannelName: ServerEventsChannel}}
	if req.SessionDescription != nil {
		if !hasApplication(req.SessionDescription.SDP) {
			return nil, errSDP("The offer has no m=application section", ErrBadDescription)
		}
		answer, err := s.answerOffer(*req.SessionDescription)
		if err != nil {
			return nil, err
		}
		resp.SessionDescription = answer
		resp.DataChannel.ID = u16(s.serverEventsID(true))
		return resp, nil
	}
	pc, _, err = s.ensurePC()
	if err != nil {
		return nil, err
	}
	dc, err := pc.CreateDataChannel(ServerEventsChannel, nil)
	if err != nil {
		return nil, errInternal(fmt.Errorf("open server-events: %w", err))
	}
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { s.dc.ingress.Add(uint64(len(msg.Data))) })
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		resp.SessionDescription, err = setLocal(pc, offer)
	}
	if err == nil {
		// Pion sets only the offer it made, so a fresh application mid
		// goes to the endpoint only; Pion finds m=application by kind,
		// and later offers take the mid from the endpoint's answer.
		resp.SessionDescription.SDP, err = uniqueApplicationMid(resp.SessionDescription.SDP)
	}
	if err != nil {
		_ = dc.Close()
		return nil, errInternal(err)
	}
	s.dc.mu.Lock()
	s.dc.serverEvents, s.dc.serverByPeer = dc, false
	s.dc.mu.Unlock()
	s.mu.Lock()
	s.pending = true
	s.mu.Unlock()
	resp.RequiresImmediateRenegotiation = true
	resp.DataChannel.ID = u16(s.serverEventsID(false))
	return resp, nil
}

// serverEventsID is the id of the in-band "server-events" channel: known
// once SCTP runs, predicted before from the DTLS role (a new association
// starts at the lowest id of the opener's parity, even for the DTLS
// client, RFC 8832). While the role is still open (the SFU's first offer
// on a fresh session) the endpoint is expected to answer "setup:active" as
// browsers do, which makes the SFU the DTLS server and the id 1. A Pion
// endpoint answering an ICE-lite offer picks "passive" instead and gets 0;
// GET session reports the real id once the channel is open.
func (s *Session) serverEventsID(byPeer bool) uint16 {
	pc := s.peerConnection()
	s.dc.mu.Lock()
	dc := s.dc.serverEvents
	s.dc.mu.Unlock()
	return predictServerEventsID(pc, dc, byPeer)
}

func predictServerEventsID(pc *webrtc.PeerConnection, dc *webrtc.DataChannel, byPeer bool) uint16 {
	if dc != nil {
		if id := dc.ID(); id != nil {
			return *id
		}
	}
	// With the role still open the SFU is taken for the DTLS server.
	client := false
	if pc != nil {
		client, _ = sfuIsDTLSClient(pc)
	}
	if byPeer == client {
		return 1 // the opener is the DTLS server: odd ids
	}
	return 0
}

// prepDataChannels bounds the items of a datachannels call.
func prepDataChannels(items []DataChannelObject, lim Limits) error {
	if len(items) == 0 {
		return errParams("dataChannels must list at least one item", ErrInvalidTrackObj)
	}
	if lim.MaxTracksPerCall > 0 && len(items) > lim.MaxTracksPerCall {
		return errParams(fmt.Sprintf("Expecting at most %d dataChannels in one call, got %d", lim.MaxTracksPerCall, len(items)), ErrTooManyTracks)
	}
	return nil
}

func validateDataChannels(items []DataChannelObject) (local bool, err error) {
	locs := map[string]bool{}
	for i, it := range items {
		switch it.Location {
		case LocationLocal:
		case LocationRemote:
			if it.SessionID == "" || it.DataChannelName == "" {
				return false, errDecoding(fmt.Sprintf("JSON body validation error: dataChannels[%d] needs sessionId and dataChannelName", i))
			}
		default:
			return false, errDecoding(fmt.Sprintf("JSON body validation error: dataChannels[%d].location must be local or remote", i))
		}
		locs[it.Location] = true
		if it.MaxRetransmits != nil && it.MaxPacketLifeTime != nil {
			return false, errParams(fmt.Sprintf("dataChannels[%d]: maxRetransmits and maxPacketLifeTime are mutually exclusive", i), ErrInvalidTrackObj)
		}
		for _, v := range []*int64{it.MaxRetransmits, it.MaxPacketLifeTime} {
			if v != nil && (*v < 0 || *v > math.MaxUint16) {
				return false, errParams(fmt.Sprintf("dataChannels[%d]: maxRetransmits and maxPacketLifeTime must be between 0 and 65535", i), ErrInvalidTrackObj)
			}
		}
	}
	if len(locs) > 1 {
		return false, errParams("All dataChannels of one call must be local or all remote", ErrMixedLocations)
	}
	return locs[LocationLocal], nil
}

// optionsOf reads the delivery policy of a request item; base fills what
// the item leaves out (a subscriber mirrors its publisher by default).
func optionsOf(it DataChannelObject, base *dcOptions) dcOptions {
	o := dcOptions{ordered: true}
	if base != nil {
		o = *base
	}
	if it.Ordered != nil {
		o.ordered = *it.Ordered
	}
	if it.MaxRetransmits != nil || it.MaxPacketLifeTime != nil {
		o.maxRetransmits, o.maxPacketLifeTime = nil, nil
	}
	if it.MaxRetransmits != nil {
		v := uint16(*it.MaxRetransmits)
		o.maxRetransmits = &v
	}
	if it.MaxPacketLifeTime != nil {
		v := uint16(*it.MaxPacketLifeTime)
		o.maxPacketLifeTime = &v
	}
	return o
}

// NewDataChannels is datachannels/new (CONTRACT §2.8): publish channels
// of this session (local) or subscribe to channels of other sessions of
// the same app (remote). No SDP is exchanged: every channel is negotiated
// with the id returned.
func (s *Session) NewDataChannels(req DataChannelsRequest, lim Limits) (*DataChannelsResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := prepDataChannels(req.DataChannels, lim); err != nil {
		return nil, err
	}
	local, err := validateDataChannels(req.DataChannels)
	if err != nil {
		return nil, err
	}
	if err := s.waitConnected(lim.ConnectWait); err != nil {
		return nil, err
	}
	pc := s.peerConnection()
	if negotiated, offered := sctpNegotiated(pc); !negotiated && !offered {
		return nil, errNoSCTP()
	}
	resp := &DataChannelsResponse{DataChannels: []DataChannelResult{}}
	for _, it := range req.DataChannels {
		if local {
			resp.DataChannels = append(resp.DataChannels, s.publishDataChannel(pc, it))
		} else {
			resp.DataChannels = append(resp.DataChannels, s.subscribeDataChannel(pc, it))
		}
	}
	return resp, nil
}

// allocID returns the lowest id from 2 upward that no live channel of this
// session uses (negotiated ones, in-band ones either side opened). want,
// if set, is taken when free. Called with s.dc.mu held.
func (s *Session) allocID(want *uint16) (uint16, error) {
	used := map[uint16]bool{0: true, 1: true}
	for _, e := range s.dc.entries {
		if e.busy() {
			used[e.id()] = true
		}
	}
	for _, dc := range append([]*webrtc.DataChannel{s.dc.serverEvents}, s.dc.peer...) {
		if dc == nil || dc.ReadyState() == webrtc.DataChannelStateClosed {
			continue
		}
		if id := dc.ID(); id != nil {
			used[*id] = true
		}
	}
	if want != nil {
		if used[*want] || *want == math.MaxUint16 {
			return 0, fmt.Errorf("%w: id %d is reserved or in use", ErrNoFreeID, *want)
		}
		return *want, nil
	}
	for id := uint16(2); id < math.MaxUint16; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, ErrNoFreeID
}

// addEntry records a channel, dropping a closed row that had the same id.
// Called with s.dc.mu held.
func (s *Session) addEntry(e dcEntry) {
	kept := s.dc.entries[:0]
	for _, old := range s.dc.entries {
		if old.id() == e.id() && !old.live() {
			continue
		}
		kept = append(kept, old)
	}
	s.dc.entries = append(kept, e)
}

func (s *Session) publishDataChannel(pc *webrtc.PeerConnection, it DataChannelObject) DataChannelResult {
	res := DataChannelResult{Location: LocationLocal, DataChannelName: it.DataChannelName}
	switch {
	case it.DataChannelName == "":
		return dcItemErr(res, CodeInvalidParams, "dataChannelName is required")
	case len(it.DataChannelName) > maxNameLen:
		return dcItemErr(res, CodeInvalidParams, fmt.Sprintf("dataChannelName is longer than %d bytes", maxNameLen))
	case it.DataChannelName == ServerEventsChannel:
		return dcItemErr(res, CodeInvalidParams, fmt.Sprintf("%q is reserved for datachannels/establish", ServerEventsChannel))
	}
	opts := optionsOf(it, nil)
	// Session.op serialises allocations: the name and id stay free until
	// the channel is recorded below.
	s.dc.mu.Lock()
	dup := s.dc.pubs[it.DataChannelName] != nil
	id, err := s.allocID(it.ID)
	s.dc.mu.Unlock()
	if dup {
		return dcItemErr(res, CodeRepeatedLocalTrack, fmt.Sprintf("DataChannel %q is already published by this session", it.DataChannelName))
	}
	if err != nil {
		return dcItemErr(res, CodeInvalidParams, err.Error())
	}
	dc, err := pc.CreateDataChannel(it.DataChannelName, opts.init(id))
	if err != nil {
		s.log.Warn("cannot create datachannel", "datachannel", it.DataChannelName, "id", id, "err", err)
		return dcItemErr(res, CodeInternal, "Backend error")
	}
	p := &dcPub{s: s, sid: s.ID, name: it.DataChannelName, id: id, opts: opts, dc: dc}
	dc.OnMessage(p.onMessage)
	dc.OnClose(func() { p.close(false) })
	s.dc.mu.Lock()
	if s.dc.closed {
		s.dc.mu.Unlock()
		_ = dc.Close()
		return dcItemErr(res, CodeInternal, "Backend error")
	}
	if s.dc.pubs == nil {
		s.dc.pubs = map[string]*dcPub{}
	}
	s.dc.pubs[p.name] = p
	s.addEntry(dcEntry{pub: p})
	s.dc.mu.Unlock()
	s.log.Debug("datachannel published", "datachannel", p.name, "id", id)
	res.ID = u16(id)
	return res
}

// lookupDCPub finds a live published channel of the same app.
func (s *Session) lookupDCPub(sid SessionID, name string) *dcPub {
	owner, err := s.m.Get(s.App, sid)
	if err != nil {
		return nil
	}
	owner.dc.mu.Lock()
	p := owner.dc.pubs[name]
	owner.dc.mu.Unlock()
	if p == nil || p.isClosed() {
		return nil
	}
	return p
}

// liveSub finds this session's live subscription to (sid, name).
func (s *Session) liveSub(sid SessionID, name string) *dcSub {
	s.dc.mu.Lock()
	defer s.dc.mu.Unlock()
	for _, e := range s.dc.entries {
		if e.sub != nil && e.sub.pub.sid == sid && e.sub.pub.name == name && e.live() {
			return e.sub
		}
	}
	return nil
}

func (s *Session) subscribeDataChannel(pc *webrtc.PeerConnection, it DataChannelObject) (res DataChannelResult) {
	res = DataChannelResult{Location: LocationRemote, SessionID: it.SessionID, DataChannelName: it.DataChannelName}
	p := s.lookupDCPub(SessionID(it.SessionID), it.DataChannelName)
	if p == nil {
		p = s.m.remoteDCPub(s.App, SessionID(it.SessionID), it.DataChannelName)
		if p == nil {
			return dcItemErr(res, CodeNotFoundTrack, descDCNotFound)
		}
		// A relayed publication serves this subscription only: it ends
		// here if the subscription is not made.
		defer func() {
			if res.ErrorCode != "" {
				p.close(false)
			}
		}()
	}
	if s.liveSub(p.sid, p.name) != nil {
		return dcItemErr(res, CodeRepeatedLocalTrack, fmt.Sprintf("This session already subscribes to %q of session %s", p.name, p.sid))
	}
	opts := optionsOf(it, &p.opts)
	s.dc.mu.Lock()
	id, err := s.allocID(it.ID)
	s.dc.mu.Unlock()
	if err != nil {
		return dcItemErr(res, CodeInvalidParams, err.Error())
	}
	dc, err := pc.CreateDataChannel(p.name, opts.init(id))
	if err != nil {
		s.log.Warn("cannot create datachannel", "datachannel", p.name, "id", id, "err", err)
		return dcItemErr(res, CodeInternal, "Backend error")
	}
	sub := &dcSub{s: s, pub: p, id: id, dc: dc, done: make(chan struct{})}
	if it.WaitForAck {
		sub.gate = make(chan struct{})
	}
	dc.OnMessage(sub.onMessage)
	dc.OnClose(func() { sub.close(false) })
	s.dc.mu.Lock()
	if s.dc.closed {
		s.dc.mu.Unlock()
		_ = dc.Close()
		return dcItemErr(res, CodeInternal, "Backend error")
	}
	s.addEntry(dcEntry{sub: sub})
	s.dc.mu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		sub.close(true)
		return dcItemErr(res, CodeNotFoundTrack, descDCNotFound)
	}
	p.subs = append(p.subs, sub)
	var notify func()
	grant := it.CanReply != nil && *it.CanReply
	if grant {
		if p.s != nil {
			notify = p.grantLocked(sub)
		} else {
			p.replier = sub
		}
		res.CanReply = boolPtr(true)
	}
	p.mu.Unlock()
	if notify != nil {
		notify()
	}
	if grant && p.remote != nil {
		p.remote.Grant(true)
	}
	if sub.gate != nil {
		go sub.awaitAck(DefaultAckTimeout)
	}
	s.log.Debug("datachannel subscribed", "datachannel", p.name, "publisher", string(p.sid), "id", id)
	res.ID = u16(id)
	return res
}

// UpdateDataChannels is datachannels/update (CONTRACT §2.9): grant or
// revoke canReply on this session's subscriptions. A grant replaces the
// publication's previous holder.
func (s *Session) UpdateDataChannels(req DataChannelsRequest, lim Limits) (*DataChannelsResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := prepDataChannels(req.DataChannels, lim); err != nil {
		return nil, err
	}
	for i, it := range req.DataChannels {
		if (it.Location != "" && it.Location != LocationRemote) || it.SessionID == "" || it.DataChannelName == "" {
			return nil, errParams(fmt.Sprintf("dataChannels[%d]: datachannels/update takes remote channels with sessionId and dataChannelName", i), ErrInvalidTrackObj)
		}
	}
	resp := &DataChannelsResponse{DataChannels: []DataChannelResult{}}
	for _, it := range req.DataChannels {
		res := DataChannelResult{Location: LocationRemote, SessionID: it.SessionID, DataChannelName: it.DataChannelName}
		sub := s.liveSub(SessionID(it.SessionID), it.DataChannelName)
		if sub == nil {
			resp.DataChannels = append(resp.DataChannels, dcItemErr(res, CodeNotFoundTrack, descDCNotFound))
			continue
		}
		p := sub.pub
		p.mu.Lock()
		var notify func()
		// A relayed channel (p.s nil) asks the publisher's pod too.
		remoteGrant := (*bool)(nil)
		if it.CanReply != nil {
			switch {
			case *it.CanReply && p.s == nil:
				p.replier = sub
				remoteGrant = boolPtr(true)
			case *it.CanReply:
				notify = p.grantLocked(sub)
			case p.replier == sub:
				p.replier = nil
				if p.s == nil {
					remoteGrant = boolPtr(false)
				}
			}
		}
		holds := p.replier == sub
		p.mu.Unlock()
		if notify != nil {
			notify()
		}
		if remoteGrant != nil && p.remote != nil {
			p.remote.Grant(*remoteGrant)
		}
		res.ID, res.CanReply = u16(sub.id), boolPtr(holds)
		resp.DataChannels = append(resp.DataChannels, res)
	}
	return resp, nil
}

// CloseDataChannels is datachannels/close (CONTRACT §2.10): close this
// session's channels by id. Closing a publication closes its subscribers'
// channels too. No SDP is exchanged and no connected transport is needed.
func (s *Session) CloseDataChannels(req DataChannelsRequest, lim Limits) (*DataChannelsResponse, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := prepDataChannels(req.DataChannels, lim); err != nil {
		return nil, err
	}
	resp := &DataChannelsResponse{DataChannels: []DataChannelResult{}}
	for _, it := range req.DataChannels {
		resp.DataChannels = append(resp.DataChannels, s.closeDataChannel(it))
	}
	return resp, nil
}

func (s *Session) closeDataChannel(it DataChannelObject) DataChannelResult {
	res := DataChannelResult{Location: it.Location, SessionID: it.SessionID, DataChannelName: it.DataChannelName, ID: it.ID}
	fail := func() DataChannelResult {
		r := dcItemErr(res, CodeCloseTrack, descDCClosed)
		r.ID = it.ID
		return r
	}
	if it.ID == nil {
		return fail()
	}
	s.dc.mu.Lock()
	var found dcEntry
	for _, e := range s.dc.entries {
		if e.id() == *it.ID && e.live() {
			found = e
		}
	}
	s.dc.mu.Unlock()
	switch {
	case found.pub != nil:
		if !found.pub.close(true) {
			return fail()
		}
		return DataChannelResult{Location: LocationLocal, DataChannelName: found.pub.name, ID: u16(found.pub.id)}
	case found.sub != nil:
		if !found.sub.close(true) {
			return fail()
		}
		return DataChannelResult{Location: LocationRemote, SessionID: string(found.sub.pub.sid),
			DataChannelName: found.sub.pub.name, ID: u16(found.sub.id)}
	}
	return fail()
}
