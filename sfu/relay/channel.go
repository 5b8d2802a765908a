package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// TapFunc subscribes deliver to a published DataChannel on this pod.
// deliver is called for every message in order, from one goroutine at a
// time; it must not block and must not keep data. cancel ends the tap;
// done is closed when the publication ends.
type TapFunc func(deliver func(isString bool, data []byte)) (cancel func(), done <-chan struct{}, err error)

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

func (cs *chanSource) run(opts ChannelOptions, tap TapFunc) {
	defer cs.srv.wg.Done()
	defer cs.srv.remove(cs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); cs.writeLoop() }()
	go func() { defer wg.Done(); cs.readLoop() }()
	// The hello goes out before the tap exists, so it precedes every message.
	cs.sendJSON(frameHello, opts)
	cancel, ended, err := tap(cs.deliver)
	if err != nil {
		ended = closedChan
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
	if cancel != nil {
		cancel()
	}
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

// readLoop notices the destination closing the stream; nothing flows
// back on a DataChannel relay yet.
func (cs *chanSource) readLoop() {
	var buf []byte
	for {
		_, _, p, err := readFrame(cs.br, buf)
		if err != nil {
			cs.close()
			return
		}
		buf = p[:0]
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
	lastUsed time.Time // last sweep or unsubscribe that saw a subscriber
	closed   bool
	once     sync.Once
	done     chan struct{}
}

type chanSub struct {
	deliver func(isString bool, data []byte)
}

// Options is the publisher's delivery policy.
func (ch *Channel) Options() ChannelOptions { return ch.opts }

// Done is closed when the relay stream ended.
func (ch *Channel) Done() <-chan struct{} { return ch.done }

// Subscribe calls deliver for every message of the channel, in order, from
// the stream's read goroutine, until cancel. deliver must not block for
// long and must not keep data. Subscribing to a closed channel returns a
// no-op cancel.
func (ch *Channel) Subscribe(deliver func(isString bool, data []byte)) (cancel func()) {
	sub := &chanSub{deliver: deliver}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return func() {}
	}
	ch.subs[sub] = struct{}{}
	return func() {
		ch.mu.Lock()
		delete(ch.subs, sub)
		ch.lastUsed = ch.c.o.Now()
		ch.mu.Unlock()
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
	var buf, msg []byte
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
		case frameMessage:
		default:
			continue
		}
		data := p
		if flags&flagMore != 0 || len(msg) > 0 {
			if len(msg)+len(p) > MaxChannelMessage {
				ch.log.Warn("datachannel relay: message too long", "bytes", len(msg)+len(p))
				return
			}
			msg = append(msg, p...)
			if flags&flagMore != 0 {
				continue
			}
			data = msg
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
		msg = msg[:0]
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
