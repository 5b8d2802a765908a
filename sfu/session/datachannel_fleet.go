package session

import "github.com/pion/webrtc/v4"

// DataChannels across the pods of a fleet.
//
// On the publisher's pod the relay taps a publication (TapDataChannel) as
// one more subscriber without a session or an endpoint channel. On a
// subscriber's pod, a subscription to a channel whose session lives
// elsewhere gets its own relayed dcPub (s == nil) fed by the pod's one
// relay stream for that channel (Config.RemoteDataChannel); the relay
// fans each message out to those dcPubs, and each delivers to its one
// subscriber exactly as a local publication does, so egress is counted on
// the subscriber's session only and relayed bytes are never ingress.
//
// canReply: a relayed dcPub's holder asks the publisher's pod for the
// grant through the relay, whose tap then holds it on the publication
// (grantLocked tells a tap when it loses it); the holder's messages go
// back through the relay and are sent to the publisher by its pod.

// DataChannelOptions is a published channel's delivery policy, as the
// fleet relay carries it; a subscriber's channel mirrors it by default.
type DataChannelOptions struct {
	Ordered           bool
	MaxRetransmits    *uint16
	MaxPacketLifeTime *uint16
}

// RemoteDataChannel is a DataChannel published on another pod, as the
// fleet relay delivers it on this one.
type RemoteDataChannel struct {
	Options DataChannelOptions
	// Subscribe calls deliver for every later message, in order, until
	// the subscription's Cancel; deliver must not keep data. lost is called
	// when the subscription held canReply and another subscriber took it.
	Subscribe func(deliver func(isString bool, data []byte), lost func()) RemoteSubscription
	// Done is closed when the publication ended or the relay broke.
	Done <-chan struct{}
}

// RemoteSubscription is one subscription to a RemoteDataChannel.
type RemoteSubscription struct {
	Cancel func()
	// Grant asks the publisher's pod for canReply (true) or gives it back.
	Grant func(hold bool)
	// Reply sends a message of the grant holder to the publisher.
	Reply func(isString bool, data []byte)
}

// DataChannelTap is the fleet relay's subscription to a channel published
// on this node (TapDataChannel).
type DataChannelTap struct {
	Cancel func()
	// Done is closed when the publication ends or Cancel was called.
	Done <-chan struct{}
	// Grant gives the tap canReply (taking it from its holder) or gives it
	// back; Reply sends a message to the publisher while the tap holds it.
	Grant func(hold bool)
	Reply func(isString bool, data []byte)
}

// publishedDC finds a live published channel on this node.
func (m *Manager) publishedDC(app AppID, sid SessionID, name string) (*dcPub, error) {
	owner, err := m.Get(app, sid)
	if err != nil {
		return nil, err
	}
	owner.dc.mu.Lock()
	p := owner.dc.pubs[name]
	owner.dc.mu.Unlock()
	if p == nil || p.isClosed() {
		return nil, ErrSessionGone
	}
	return p, nil
}

// PublishedDataChannel returns the delivery policy of a live channel
// published on this node, for the fleet relay's hello.
func (m *Manager) PublishedDataChannel(app AppID, sid SessionID, name string) (DataChannelOptions, error) {
	p, err := m.publishedDC(app, sid, name)
	if err != nil {
		return DataChannelOptions{}, err
	}
	return DataChannelOptions{Ordered: p.opts.ordered, MaxRetransmits: p.opts.maxRetransmits,
		MaxPacketLifeTime: p.opts.maxPacketLifeTime}, nil
}

// TapDataChannel subscribes deliver to a live channel published on this
// node, for the fleet relay: deliver gets every later message in order
// (from the publisher channel's read goroutine; it must not block or keep
// data); lost is called when the tap held canReply and another subscriber
// took it. Tapped messages are not egress of any session; replies sent
// through the tap are egress of the publisher's session, as on one pod.
func (m *Manager) TapDataChannel(app AppID, sid SessionID, name string, deliver func(isString bool, data []byte), lost func()) (*DataChannelTap, error) {
	p, err := m.publishedDC(app, sid, name)
	if err != nil {
		return nil, err
	}
	sub := &dcSub{pub: p, tap: deliver, tapLost: lost, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrSessionGone
	}
	p.subs = append(p.subs, sub)
	p.mu.Unlock()
	return &DataChannelTap{
		Cancel: func() { sub.close(false) },
		Done:   sub.done,
		Grant: func(hold bool) {
			p.mu.Lock()
			var notify func()
			switch {
			case p.closed || sub.isClosed():
			case hold:
				notify = p.grantLocked(sub)
			case p.replier == sub:
				p.replier = nil
			}
			p.mu.Unlock()
			if notify != nil {
				notify()
			}
		},
		Reply: func(isString bool, data []byte) {
			p.mu.Lock()
			ok := !p.closed && p.replier == sub
			p.mu.Unlock()
			if ok {
				send(p.s, p.dc, webrtc.DataChannelMessage{IsString: isString, Data: data})
			}
		},
	}, nil
}

// grantLocked gives sub the publication's canReply grant and returns the
// notice to send, after unlocking, to a relay tap that held it. Called
// with p.mu held, on a publication of this node.
func (p *dcPub) grantLocked(sub *dcSub) (notify func()) {
	prev := p.replier
	p.replier = sub
	if prev != nil && prev != sub && prev.tapLost != nil {
		return prev.tapLost
	}
	return nil
}

// remoteDCPub asks the fleet for a channel of a session on another node
// and returns a relayed publication for one subscription, or nil.
func (m *Manager) remoteDCPub(app AppID, sid SessionID, name string) *dcPub {
	if m.cfg.RemoteDataChannel == nil {
		return nil
	}
	rc, err := m.cfg.RemoteDataChannel(app, sid, name)
	if err != nil || rc == nil {
		return nil
	}
	p := &dcPub{sid: sid, name: name, opts: dcOptions{ordered: rc.Options.Ordered,
		maxRetransmits: rc.Options.MaxRetransmits, maxPacketLifeTime: rc.Options.MaxPacketLifeTime}}
	ended := make(chan struct{})
	rs := rc.Subscribe(func(isString bool, data []byte) {
		p.onMessage(webrtc.DataChannelMessage{IsString: isString, Data: data})
	}, func() {
		p.mu.Lock()
		p.replier = nil
		p.mu.Unlock()
	})
	p.remote = &rs
	p.stop = func() {
		rs.Cancel()
		close(ended)
	}
	go func() {
		select {
		case <-rc.Done:
			p.close(false)
		case <-ended:
		}
	}()
	return p
}
