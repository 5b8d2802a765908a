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
	// cancel; deliver must not keep data.
	Subscribe func(deliver func(isString bool, data []byte)) (cancel func())
	// Done is closed when the publication ended or the relay broke.
	Done <-chan struct{}
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
// data). done is closed when the publication ends or cancel is called.
// Tapped messages are not egress of any session.
func (m *Manager) TapDataChannel(app AppID, sid SessionID, name string, deliver func(isString bool, data []byte)) (cancel func(), done <-chan struct{}, err error) {
	p, err := m.publishedDC(app, sid, name)
	if err != nil {
		return nil, nil, err
	}
	sub := &dcSub{pub: p, tap: deliver, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, ErrSessionGone
	}
	p.subs = append(p.subs, sub)
	p.mu.Unlock()
	return func() { sub.close(false) }, sub.done, nil
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
	cancel := rc.Subscribe(func(isString bool, data []byte) {
		p.onMessage(webrtc.DataChannelMessage{IsString: isString, Data: data})
	})
	p.stop = func() {
		cancel()
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
