package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// DataChannel relay streams carry the messages of one published
// DataChannel to one destination pod. The source pod taps the publication
// like a local subscriber would; the destination fans each message out to
// its local subscriptions. Messages longer than one frame are split into
// fragments: the layer byte of a message frame carries flagString on every
// fragment and flagMore on all but the last.
//
// The canReply grant crosses pods too: the destination asks for it (grant
// frame, layer 1) or gives it back (layer 0) on behalf of one of its local
// subscriptions, then sends that subscription's messages back as message
// frames; the source tells it when the stream lost the grant to another
// subscriber (lost frame).
const (
	flagString byte = 1 << 0
	flagMore   byte = 1 << 1
	// MaxChannelMessage bounds one relayed DataChannel message; larger
	// ones are dropped on the source pod (Pion reads at most 64 KiB).
	MaxChannelMessage = 1 << 18
	// channelQueueBytes bounds the message bytes waiting for the socket on
	// the source pod; past it whole messages are dropped, as the SFU drops
	// messages toward a client whose channel buffer is full.
	channelQueueBytes = 4 << 20
)

// ChannelOptions is the delivery policy of a published DataChannel; a
// subscriber's channel mirrors it unless the subscriber asks otherwise.
type ChannelOptions struct {
	Ordered           bool    `json:"ordered"`
	MaxRetransmits    *uint16 `json:"maxRetransmits,omitempty"`
	MaxPacketLifeTime *uint16 `json:"maxPacketLifeTime,omitempty"`
}

// Tap is a live subscription of a relay stream to a DataChannel published
// on this pod.
type Tap struct {
	// Cancel ends the tap.
	Cancel func()
	// Done is closed when the publication ends (or Cancel was called).
	Done <-chan struct{}
	// Grant gives the tap the publication's canReply grant (true), taking
	// it from its holder, or gives it back (false).
	Grant func(hold bool)
	// Reply sends a message to the publisher if the tap holds the grant.
	Reply func(isString bool, data []byte)
}

// TapFunc subscribes deliver to a published DataChannel on this pod.
// deliver is called for every message in order, from one goroutine at a
// time; it must not block and must not keep data. lost is called when the
// tap loses the canReply grant to another subscriber.
type TapFunc func(deliver func(isString bool, data []byte), lost func()) (*Tap, error)

// ChannelLookupFunc finds a live published DataChannel on this pod.
type ChannelLookupFunc func(app, sessionID, name string) (ChannelOptions, TapFunc, error)

// ChannelHandler returns the handler of DataChannel relay streams:
// GET {prefix}{appId}/{sessionId}/datachannels/{name}, registered with those
// path values. Streams belong to s: Close ends them too.
func (s *Server) ChannelHandler(lookup ChannelLookupFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app, sid, name := r.PathValue("appId"), r.PathValue("sessionId"), r.PathValue("name")
		if r.Header.Get("Upgrade") != Upgrade {
			http.Error(w, "relay needs Upgrade: "+Upgrade, http.StatusUpgradeRequired)
			return
		}
		opts, tap, err := lookup(app, sid, name)
		if err != nil || tap == nil {
			http.Error(w, "datachannel not found", http.StatusNotFound)
			return
		}
		conn, br, ok := s.upgrade(w)
		if !ok {
			return
		}
		cs := &chanSource{sender: newSender(conn), srv: s, br: br,
			log: s.log.With("relay", sid+"/datachannels/"+name, "peer", conn.RemoteAddr().String())}
		if !s.add(cs, &cs.sender) {
			return
		}
		go cs.run(opts, tap)
	})
}

// chanSource is one outgoing DataChannel relay stream.
type chanSource struct {
	sender
	srv *Server
	br  *bufio.Reader
	log *slog.Logger

	mu     sync.Mutex
	queued int // message bytes in out
}

func (cs *chanSource) run(opts ChannelOptions, tapFn TapFunc) {
	defer cs.srv.wg.Done()
	defer cs.srv.remove(cs)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cs.writeLoop() }()
	// The hello goes out before the tap exists, so it precedes every message.
	cs.sendJSON(frameHello, opts)
	ended := (<-chan struct{})(closedChan)
	tap, err := tapFn(cs.deliver, func() { cs.enqueue(frameLost, 0, nil) })
	if err == nil && tap != nil {
		ended = tap.Done
		wg.Add(1)
		go func() { defer wg.Done(); cs.readLoop(tap) }()
	}
	select {
	case <-cs.done:
	case <-ended:
		cs.enqueue(frameEnd, 0, nil)
		select {
		case <-cs.done:
		case <-time.After(endFlushTimeout):
			cs.close()
		}
	}
	if tap != nil {
		tap.Cancel()
	}
	// The read loop may be blocked on a destination that never closes.
	cs.close()
	wg.Wait()
	if n := cs.dropped.Load(); n > 0 {
		cs.log.Info("datachannel relay stream ended with dropped messages", "dropped", n)
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// deliver queues one message as one or more frames; it never blocks. A
// message that does not fit in the queue is dropped whole.
func (cs *chanSource) deliver(isString bool, data []byte) {
	frames := (len(data) + maxFrameLen - 1) / maxFrameLen
	if frames == 0 {
		frames = 1
	}
	cs.mu.Lock()
	full := len(data) > MaxChannelMessage || cs.queued+len(data) > channelQueueBytes || len(cs.out)+frames > cap(cs.out)
	if !full {
		cs.queued += len(data)
	}
	cs.mu.Unlock()
	if full {
		cs.dropped.Add(1)
		return
	}
	var flags byte
	if isString {
		flags = flagString
	}
	for off := 0; ; off += maxFrameLen {
		end := min(off+maxFrameLen, len(data))
		f := flags
		if end < len(data) {
			f |= flagMore
		}
		cs.enqueue(frameMessage, f, data[off:end])
		if end == len(data) {
			return
		}
	}
}

// writeLoop drains the queue like sender.writeLoop, keeping the byte count.
func (cs *chanSource) writeLoop() {
	w := bufio.NewWriterSize(cs.conn, 32<<10)
	for {
		select {
		case <-cs.done:
			return
		case bp := <-cs.out:
			b := *bp
			end := len(b) >= headerLen && b[0] == frameEnd
			if len(b) >= headerLen && b[0] == frameMessage {
				cs.mu.Lock()
				cs.queued -= len(b) - headerLen
				cs.mu.Unlock()
			}
			_, err := w.Write(b)
			framePool.Put(bp)
			if err == nil && (end || len(cs.out) == 0) {
				err = w.Flush()
			}
			if err != nil || end {
				cs.close()
				return
			}
		}
	}
}

// readLoop takes grant requests and replies from the destination pod.
func (cs *chanSource) readLoop(tap *Tap) {
	var buf []byte
	var msg reassembly
	for {
		typ, flags, p, err := readFrame(cs.br, buf)
		if err != nil {
			cs.close()
			return
		}
		buf = p[:0]
		switch typ {
		case frameGrant:
			tap.Grant(flags == 1)
		case frameMessage:
			data, done, err := msg.add(flags, p)
			if err != nil {
				cs.log.Warn("datachannel relay: reply too long")
				cs.close()
				return
			}
			if done {
				tap.Reply(flags&flagString != 0, data)
				msg.reset()
			}
		}
	}
}

// reassembly puts fragmented messages back together.
type reassembly struct{ buf []byte }

// add takes one message frame; done reports a complete message in data
// (valid until reset or the next add).
func (r *reassembly) add(flags byte, p []byte) (data []byte, done bool, err error) {
	if flags&flagMore == 0 && len(r.buf) == 0 {
		return p, true, nil
	}
	if len(r.buf)+len(p) > MaxChannelMessage {
		return nil, false, errFrame
	}
	r.buf = append(r.buf, p...)
	return r.buf, flags&flagMore == 0, nil
}

func (r *reassembly) reset() { r.buf = r.buf[:0] }

// writeMessage writes one message as frames to w, for the destination's
// replies (rare: no queue, a write deadline instead).
func writeMessage(w io.Writer, isString bool, data []byte) error {
	var flags byte
	if isString {
		flags = flagString
	}
	for off := 0; ; off += maxFrameLen {
		end := min(off+maxFrameLen, len(data))
		f := flags
		if end < len(data) {
			f |= flagMore
		}
		b := make([]byte, headerLen+end-off)
		putHeader(b, frameMessage, f, end-off)
		copy(b[headerLen:], data[off:end])
		if _, err := w.Write(b); err != nil {
			return err
		}
		if end == len(data) {
			return nil
		}
	}
}

// Channel is the destination end of a DataChannel relay stream, shared by
// every local subscription of that channel on this pod. It is closed when
// the source ends the publication, the stream breaks, or no local
// subscriber used it for the unused grace; Done then closes.
type Channel struct {
	c    *Client
	k    key
	conn net.Conn
	br   *bufio.Reader
	opts ChannelOptions
	log  *slog.Logger

	mu       sync.Mutex
	subs     map[*chanSub]struct{}
	holder   *chanSub  // the local subscription holding canReply, if any
	lastUsed time.Time // last sweep or unsubscribe that saw a subscriber
	closed   bool
	once     sync.Once
	done     chan struct{}

	wmu sync.Mutex // serialises writes to the source pod
}

type chanSub struct {
	deliver func(isString bool, data []byte)
	lost    func()
}

// ChannelSubscription is one local subscription of a Channel.
type ChannelSubscription struct {
	ch  *Channel
	sub *chanSub
}

// Options is the publisher's delivery policy.
func (ch *Channel) Options() ChannelOptions { return ch.opts }

// Done is closed when the relay stream ended.
func (ch *Channel) Done() <-chan struct{} { return ch.done }

// Subscribe calls deliver for every message of the channel, in order, from
// the stream's read goroutine, until Cancel. deliver must not block for
// long and must not keep data. lost is called when the subscription held
// the canReply grant and lost it (another subscriber on any pod took it).
// Subscribing to a closed channel returns a subscription that does nothing.
func (ch *Channel) Subscribe(deliver func(isString bool, data []byte), lost func()) *ChannelSubscription {
	sub := &chanSub{deliver: deliver, lost: lost}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !ch.closed {
		ch.subs[sub] = struct{}{}
	}
	return &ChannelSubscription{ch: ch, sub: sub}
}

// Cancel ends the subscription (giving back the grant if it holds it).
func (cs *ChannelSubscription) Cancel() {
	ch := cs.ch
	ch.mu.Lock()
	delete(ch.subs, cs.sub)
	ch.lastUsed = ch.c.o.Now()
	held := ch.holder == cs.sub
	if held {
		ch.holder = nil
	}
	closed := ch.closed
	ch.mu.Unlock()
	if held && !closed {
		ch.write(func(w io.Writer) error { return writeGrant(w, false) })
	}
}

// Grant asks the source pod for the canReply grant for this subscription
// (taking it from any other holder, local or not), or gives it back.
func (cs *ChannelSubscription) Grant(hold bool) {
	ch := cs.ch
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	var prev *chanSub
	switch {
	case hold:
		if ch.holder != cs.sub {
			prev = ch.holder
		}
		ch.holder = cs.sub
	case ch.holder == cs.sub:
		ch.holder = nil
	default:
		ch.mu.Unlock()
		return
	}
	ch.mu.Unlock()
	if prev != nil && prev.lost != nil {
		prev.lost()
	}
	ch.write(func(w io.Writer) error { return writeGrant(w, hold) })
}

// Reply sends a message of the grant holder to the publisher.
func (cs *ChannelSubscription) Reply(isString bool, data []byte) {
	ch := cs.ch
	ch.mu.Lock()
	ok := !ch.closed && ch.holder == cs.sub && len(data) <= MaxChannelMessage
	ch.mu.Unlock()
	if ok {
		ch.write(func(w io.Writer) error { return writeMessage(w, isString, data) })
	}
}

func writeGrant(w io.Writer, hold bool) error {
	var b [headerLen]byte
	var layer byte
	if hold {
		layer = 1
	}
	putHeader(b[:], frameGrant, layer, 0)
	_, err := w.Write(b[:])
	return err
}

// write runs f on the connection with a write deadline; a failed write
// ends the stream.
func (ch *Channel) write(f func(io.Writer) error) {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	_ = ch.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if err := f(ch.conn); err != nil {
		ch.close()
	}
}

// lostGrant handles the source's lost frame.
func (ch *Channel) lostGrant() {
	ch.mu.Lock()
	prev := ch.holder
	ch.holder = nil
	ch.mu.Unlock()
	if prev != nil && prev.lost != nil {
		prev.lost()
	}
}

// Subscribers returns how many local subscriptions use the channel.
func (ch *Channel) Subscribers() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.subs)
}

func (ch *Channel) isClosed() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.closed
}

func (ch *Channel) close() {
	ch.once.Do(func() {
		ch.mu.Lock()
		ch.closed = true
		ch.subs = nil
		ch.mu.Unlock()
		close(ch.done)
		_ = ch.conn.Close()
	})
}

// run reads messages until the stream ends and fans each out.
func (ch *Channel) run() {
	defer ch.close()
	var buf []byte
	var msg reassembly
	var subs []*chanSub
	for {
		typ, flags, p, err := readFrame(ch.br, buf)
		if err != nil {
			if !ch.isClosed() {
				ch.log.Info("datachannel relay stream ended", "err", err)
			}
			return
		}
		buf = p[:0]
		switch typ {
		case frameEnd:
			ch.log.Debug("datachannel relay: source ended the publication")
			return
		case frameLost:
			ch.lostGrant()
			continue
		case frameMessage:
		default:
			continue
		}
		data, done, err := msg.add(flags, p)
		if err != nil {
			ch.log.Warn("datachannel relay: message too long")
			return
		}
		if !done {
			continue
		}
		ch.mu.Lock()
		subs = subs[:0]
		for s := range ch.subs {
			subs = append(subs, s)
		}
		ch.mu.Unlock()
		for _, s := range subs {
			s.deliver(flags&flagString != 0, data)
		}
		msg.reset()
	}
}

// chanDial is an open in progress, so concurrent subscriptions share it.
type chanDial struct {
	done chan struct{}
	ch   *Channel
	err  error
}

// Channel returns the local end of the DataChannel relay of (app, sid,
// name) published on the pod at addr, opening the stream if none is open.
func (c *Client) Channel(ctx context.Context, addr, app, sid, name string) (*Channel, error) {
	k := key{app, sid, name}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if ch := c.chans[k]; ch != nil && !ch.isClosed() {
		c.mu.Unlock()
		return ch, nil
	}
	if d := c.chanDials[k]; d != nil {
		c.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return d.ch, d.err
	}
	d := &chanDial{done: make(chan struct{})}
	c.chanDials[k] = d
	c.wg.Add(1) // the channel's read goroutine, released by run or on failure
	c.mu.Unlock()

	ch, err := c.openChannel(ctx, addr, k)
	c.mu.Lock()
	delete(c.chanDials, k)
	if err == nil && c.closed {
		err = ErrClosed
		ch.close()
		ch = nil
	}
	if err == nil {
		c.chans[k] = ch
	}
	c.mu.Unlock()
	d.ch, d.err = ch, err
	close(d.done)
	if err != nil {
		c.wg.Done()
		return nil, err
	}
	go func() {
		defer c.wg.Done()
		ch.run()
		c.mu.Lock()
		if c.chans[k] == ch {
			delete(c.chans, k)
		}
		c.mu.Unlock()
	}()
	return ch, nil
}

func (c *Client) openChannel(ctx context.Context, addr string, k key) (*Channel, error) {
	path := c.o.Prefix + url.PathEscape(k.app) + "/" + url.PathEscape(k.sid) + "/datachannels/" + url.PathEscape(k.name)
	conn, br, p, err := c.handshake(ctx, addr, path)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("relay datachannel %s/%s from %s: %w", k.sid, k.name, addr, err)
	}
	var opts ChannelOptions
	if err := json.Unmarshal(p, &opts); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("relay datachannel %s/%s from %s: bad hello: %w", k.sid, k.name, addr, err)
	}
	return &Channel{c: c, k: k, conn: conn, br: br, opts: opts, subs: map[*chanSub]struct{}{},
		lastUsed: c.o.Now(), done: make(chan struct{}),
		log: c.log.With("relay", k.sid+"/datachannels/"+k.name, "source", addr)}, nil
}

// Channels returns how many DataChannel relay streams this pod receives.
func (c *Client) Channels() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chans)
}

// sweepChannels closes channels no local subscriber used for the unused
// grace. A silent channel is normal (DataChannels have no track timeout);
// a dead source pod breaks the TCP stream instead.
func (c *Client) sweepChannels(now time.Time) {
	c.mu.Lock()
	var all []*Channel
	for _, ch := range c.chans {
		all = append(all, ch)
	}
	c.mu.Unlock()
	for _, ch := range all {
		ch.mu.Lock()
		if len(ch.subs) > 0 {
			ch.lastUsed = now
		}
		unused := now.Sub(ch.lastUsed) > c.o.UnusedGrace
		ch.mu.Unlock()
		if unused {
			ch.log.Debug("datachannel relay closed: no local subscriber")
			ch.close()
		}
	}
}
