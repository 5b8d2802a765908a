package session

import (
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// DefaultAckTimeout is how long a waitForAck subscriber has to send its
	// first message (newer Calls docs: 30 s; older ones said 15 s).
	DefaultAckTimeout = 30 * time.Second
	// maxBuffered bounds what the SFU queues on one channel toward a slow
	// endpoint; messages beyond it are dropped rather than buffered.
	maxBuffered = 4 << 20
	// maxHeld bounds the messages held for a waitForAck subscriber until it
	// acknowledges; later ones are dropped.
	maxHeld      = 256
	maxHeldBytes = 1 << 20
)

// dcOptions is a channel's delivery policy.
type dcOptions struct {
	ordered           bool
	maxRetransmits    *uint16
	maxPacketLifeTime *uint16
}

func (o dcOptions) init(id uint16) *webrtc.DataChannelInit {
	neg := true
	ordered := o.ordered
	return &webrtc.DataChannelInit{Negotiated: &neg, ID: &id, Ordered: &ordered,
		MaxRetransmits: o.maxRetransmits, MaxPacketLifeTime: o.maxPacketLifeTime}
}

// dcPub is a channel a session publishes (location "local"). Its SFU side
// lives on the publisher's PeerConnection.
//
// A dcPub with a nil s stands for a channel published on another pod of
// the fleet: it is fed by the DataChannel relay (datachannel_fleet.go), has no SFU-side
// channel, and serves exactly one local subscription; it is closed when
// that subscription ends or the relay does.
type dcPub struct {
	s    *Session // nil for a channel relayed from another pod
	sid  SessionID
	name string
	id   uint16
	opts dcOptions
	dc   *webrtc.DataChannel
	// stop ends a relayed channel's subscription to the relay (nil for a
	// local publication); called once, by close.
	stop func()
	// remote is a relayed channel's subscription to the relay: grant and
	// replies go through it (nil for a local publication).
	remote *RemoteSubscription

	mu      sync.Mutex
	subs    []*dcSub
	replier *dcSub // the subscriber holding canReply, if any
	closed  bool
}

// dcSub is a subscription of a session to a dcPub (location "remote").
// Its SFU side lives on the subscriber's PeerConnection.
type dcSub struct {
	s   *Session
	pub *dcPub
	id  uint16
	dc  *webrtc.DataChannel

	mu sync.Mutex
	// gate is non-nil for waitForAck subscriptions; it is closed when the
	// first message arrives. held queues publisher messages until then.
	gate  chan struct{}
	acked bool
	// tap is set on the relay's subscription of a publication (no session,
	// no channel): messages go to it instead of an endpoint.
	tap       func(isString bool, data []byte)
	tapLost   func() // tells the tap's pod it lost canReply
	held      []webrtc.DataChannelMessage
	heldBytes int
	closed    bool
	done      chan struct{}
}

func (p *dcPub) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (sub *dcSub) isClosed() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.closed
}

// onMessage fans a publisher message out to every subscriber.
func (p *dcPub) onMessage(msg webrtc.DataChannelMessage) {
	if p.s != nil { // relayed messages are not ingress: the source pod counted them
		p.s.dc.ingress.Add(uint64(len(msg.Data)))
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	subs := append([]*dcSub(nil), p.subs...)
	p.mu.Unlock()
	for _, sub := range subs {
		sub.deliver(msg)
	}
}

// deliver sends msg to the subscriber, or holds it while the waitForAck
// gate is shut.
func (sub *dcSub) deliver(msg webrtc.DataChannelMessage) {
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return
	}
	if sub.tap != nil {
		sub.mu.Unlock()
		sub.tap(msg.IsString, msg.Data)
		return
	}
	if sub.gate != nil && !sub.acked {
		if len(sub.held) < maxHeld && sub.heldBytes+len(msg.Data) <= maxHeldBytes {
			data := append([]byte(nil), msg.Data...)
			sub.held = append(sub.held, webrtc.DataChannelMessage{IsString: msg.IsString, Data: data})
			sub.heldBytes += len(data)
		}
		sub.mu.Unlock()
		return
	}
	sub.mu.Unlock()
	send(sub.s, sub.dc, msg)
}

// send writes msg on dc keeping its type, unless the endpoint is too slow
// to drain what is already queued. Egress is counted on s.
func send(s *Session, dc *webrtc.DataChannel, msg webrtc.DataChannelMessage) {
	if dc.ReadyState() != webrtc.DataChannelStateOpen || dc.BufferedAmount() > maxBuffered {
		return
	}
	var err error
	if msg.IsString {
		err = dc.SendText(string(msg.Data))
	} else {
		err = dc.Send(msg.Data)
	}
	if err != nil {
		s.log.Debug("datachannel send failed", "label", dc.Label(), "err", err)
		return
	}
	s.dc.egress.Add(uint64(len(msg.Data)))
}

// onMessage handles a subscriber's message: the first one of a waitForAck
// subscription is its acknowledgement (consumed); afterwards the canReply
// holder's messages go to the publisher, everyone else's are dropped.
func (sub *dcSub) onMessage(msg webrtc.DataChannelMessage) {
	sub.s.dc.ingress.Add(uint64(len(msg.Data)))
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return
	}
	if sub.gate != nil && !sub.acked {
		sub.acked = true
		close(sub.gate)
		held := sub.held
		sub.held, sub.heldBytes = nil, 0
		sub.mu.Unlock()
		for _, m := range held {
			send(sub.s, sub.dc, m)
		}
		return
	}
	sub.mu.Unlock()
	p := sub.pub
	p.mu.Lock()
	ok := !p.closed && p.replier == sub
	p.mu.Unlock()
	switch {
	case !ok:
	case p.s != nil:
		send(p.s, p.dc, msg)
	case p.remote != nil:
		p.remote.Reply(msg.IsString, msg.Data)
	}
}

// awaitAck tears the subscription down unless it acknowledges within d of
// the session clock.
func (sub *dcSub) awaitAck(d time.Duration) {
	select {
	case <-sub.gate:
	case <-sub.done:
	case <-sub.s.m.clock.After(d):
		sub.s.log.Info("datachannel subscriber did not acknowledge in time", "datachannel", sub.pub.name, "id", sub.id, "timeout", d)
		sub.close(true)
	}
}

// close ends a publication: every subscriber channel is closed and marked
// inactive. closeOwn also closes the publisher's own SFU-side channel
// (not needed when the whole PeerConnection is about to close).
func (p *dcPub) close(closeOwn bool) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.closed = true
	subs := p.subs
	p.subs, p.replier = nil, nil
	p.mu.Unlock()
	if p.s != nil {
		p.s.dc.mu.Lock()
		if p.s.dc.pubs[p.name] == p {
			delete(p.s.dc.pubs, p.name)
		}
		p.s.dc.mu.Unlock()
	}
	if p.stop != nil {
		p.stop()
	}
	for _, sub := range subs {
		sub.close(true)
	}
	if closeOwn && p.dc != nil {
		_ = p.dc.Close()
	}
	return true
}

// close ends a subscription and leaves its publication; closeOwn closes
// the subscriber's SFU-side channel so the endpoint sees it close.
func (sub *dcSub) close(closeOwn bool) bool {
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return false
	}
	sub.closed = true
	sub.held = nil
	close(sub.done)
	sub.mu.Unlock()
	p := sub.pub
	p.mu.Lock()
	for i, x := range p.subs {
		if x == sub {
			p.subs = append(p.subs[:i:i], p.subs[i+1:]...)
			break
		}
	}
	if p.replier == sub {
		p.replier = nil
	}
	// A relayed channel serves one subscription: it ends with it.
	orphan := p.s == nil && len(p.subs) == 0
	p.mu.Unlock()
	if orphan {
		p.close(false)
	}
	if closeOwn && sub.dc != nil {
		_ = sub.dc.Close()
	}
	return true
}

// channel returns the subscription's SFU-side channel (nil for a nil sub).
func (sub *dcSub) channel() *webrtc.DataChannel {
	if sub == nil {
		return nil
	}
	return sub.dc
}
