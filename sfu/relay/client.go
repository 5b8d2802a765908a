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
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
)

// Defaults of ClientOptions.
const (
	DefaultDialTimeout = 8 * time.Second
	// DefaultUnusedGrace is how long a relay with no local subscriber is
	// kept (a subscriber may re-pull at once after tracks/close).
	DefaultUnusedGrace = 10 * time.Second
	// DefaultTrackTimeout matches the Calls track timeout: a relay that
	// brings no packet for this long is closed, as the source would have
	// collected the track.
	DefaultTrackTimeout = 30 * time.Second
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// Token returns the fleet token sent in TokenHeader on every relay
	// request (it follows configuration changes).
	Token       func() string
	TokenHeader string
	// Prefix is the relay path prefix on the source pod.
	Prefix string
	// Now is the clock (the injected clock of the media core).
	Now         func() time.Time
	DialTimeout time.Duration
	UnusedGrace time.Duration
	// TrackTimeout returns the track timeout of an app; nil means 30 s.
	TrackTimeout func(app string) time.Duration
	// SweepEvery is the period of the background sweep; negative disables
	// it (tests call Sweep), 0 means 1 s.
	SweepEvery time.Duration
	Logger     *slog.Logger
}

// Client opens relay streams from other pods and keeps one per (track,
// this pod), shared by every local subscriber of that track. Close ends
// every stream and waits for their goroutines.
type Client struct {
	o   ClientOptions
	log *slog.Logger

	mu     sync.Mutex
	relays map[key]*Relay
	dials  map[key]*dial
	// chans and chanDials are the DataChannel relays (channel.go).
	chans     map[key]*Channel
	chanDials map[key]*chanDial
	closed    bool
	wg        sync.WaitGroup
	stop      chan struct{}
}

type key struct{ app, sid, name string }

// dial is an open in progress, so concurrent pulls of one track share it.
type dial struct {
	done chan struct{}
	r    *Relay
	err  error
}

// NewClient starts a client and its sweep.
func NewClient(o ClientOptions) *Client {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.UnusedGrace == 0 {
		o.UnusedGrace = DefaultUnusedGrace
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Client{o: o, log: o.Logger, relays: map[key]*Relay{}, dials: map[key]*dial{},
		chans: map[key]*Channel{}, chanDials: map[key]*chanDial{}, stop: make(chan struct{})}
	every := o.SweepEvery
	if every == 0 {
		every = time.Second
	}
	if every > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-t.C:
					c.Sweep()
				}
			}
		}()
	}
	return c
}

// Track returns the local fan-out track of (app, sid, name) published on
// the pod at addr, opening the relay stream if none is open yet.
func (c *Client) Track(ctx context.Context, addr, app, sid, name string) (*forward.Track, error) {
	k := key{app, sid, name}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if r := c.relays[k]; r != nil && !r.isClosed() {
		c.mu.Unlock()
		return r.track, nil
	}
	if d := c.dials[k]; d != nil {
		c.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if d.err != nil {
			return nil, d.err
		}
		return d.r.track, nil
	}
	d := &dial{done: make(chan struct{})}
	c.dials[k] = d
	c.wg.Add(1) // the relay's goroutines, released by run or on failure
	c.mu.Unlock()

	r, err := c.open(ctx, addr, k)
	c.mu.Lock()
	delete(c.dials, k)
	if err == nil && c.closed {
		err = ErrClosed
	}
	if err == nil {
		c.relays[k] = r
	}
	c.mu.Unlock()
	d.r, d.err = r, err
	close(d.done)
	if err != nil {
		if r != nil {
			r.close()
			r.wait()
		}
		c.wg.Done()
		return nil, err
	}
	go func() {
		defer c.wg.Done()
		r.run()
		c.mu.Lock()
		if c.relays[k] == r {
			delete(c.relays, k)
		}
		c.mu.Unlock()
	}()
	return r.track, nil
}

// open dials the source pod and reads the hello.
func (c *Client) open(ctx context.Context, addr string, k key) (*Relay, error) {
	path := c.o.Prefix + url.PathEscape(k.app) + "/" + url.PathEscape(k.sid) + "/" + url.PathEscape(k.name)
	conn, br, p, err := c.handshake(ctx, addr, path)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("relay %s/%s from %s: %w", k.sid, k.name, addr, err)
	}
	var h hello
	if err := json.Unmarshal(p, &h); err != nil || h.Codec.MimeType == "" {
		_ = conn.Close()
		return nil, fmt.Errorf("relay %s/%s from %s: bad hello: %v", k.sid, k.name, addr, err)
	}
	kind := webrtc.NewRTPCodecType(h.Kind)
	if kind == 0 {
		kind = webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(strings.ToLower(h.Codec.MimeType), "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
	}
	r := &Relay{c: c, k: k, addr: addr, conn: conn, br: br, ctrl: make(chan byte, 16), done: make(chan struct{}),
		created: c.o.Now(), log: c.log.With("relay", k.sid+"/"+k.name, "source", addr)}
	r.track = forward.NewTrack(forward.TrackConfig{
		ID: "relay/" + k.sid + "/" + k.name, Kind: kind, Codec: h.Codec, Now: c.o.Now,
		RequestKeyframe: r.requestKeyframe,
	})
	r.lastUsed = r.created
	if err := r.setLayers(h.Rids); err != nil {
		return r, err
	}
	return r, nil
}

// handshake dials addr, upgrades GET path to a relay stream with the
// fleet token and reads the hello frame; the stream's deadline is cleared.
func (c *Client) handshake(ctx context.Context, addr, path string) (net.Conn, *bufio.Reader, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
	defer cancel()
	conn, err := dialRetrying(ctx, addr)
	if err != nil {
		return nil, nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", Upgrade)
	req.Header.Set(c.o.TokenHeader, c.o.Token())
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		_ = conn.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, nil, nil, ErrNotFound
		}
		return nil, nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	typ, _, p, err := readFrame(br, nil)
	if err != nil || typ != frameHello {
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("no hello: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, p, nil
}

// dialRetrying dials addr until it connects or ctx ends. A peer's name can
// be missing from cluster DNS for a few seconds after the peer turned
// ready (the headless Service's records lag, and resolvers cache the
// negative answer for their TTL, 5 s with CoreDNS's defaults), and a
// restarting peer refuses connections for a moment; one failed dial must
// not fail a pull that a retry a second later would serve.
func dialRetrying(ctx context.Context, addr string) (net.Conn, error) {
	wait := 50 * time.Millisecond
	for {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// Relays returns how many relay streams this pod receives.
func (c *Client) Relays() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.relays)
}

// Sweep closes relays whose source went silent past the track timeout and
// relays no local subscriber used for the unused grace.
func (c *Client) Sweep() {
	now := c.o.Now()
	c.sweepChannels(now)
	c.mu.Lock()
	var all []*Relay
	for _, r := range c.relays {
		all = append(all, r)
	}
	c.mu.Unlock()
	for _, r := range all {
		timeout := DefaultTrackTimeout
		if c.o.TrackTimeout != nil {
			if t := c.o.TrackTimeout(r.k.app); t > 0 {
				timeout = t
			}
		}
		if now.Sub(r.track.LastPacket()) > timeout {
			r.log.Info("relay closed: no packets from source", "timeout", timeout)
			r.close()
			continue
		}
		r.mu.Lock()
		if r.track.DownTracks() > 0 {
			r.lastUsed = now
		}
		unused := now.Sub(r.lastUsed) > c.o.UnusedGrace
		r.mu.Unlock()
		if unused {
			r.log.Debug("relay closed: no local subscriber")
			r.close()
		}
	}
}

// Close ends every relay and waits for their goroutines.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.stop)
	var all []*Relay
	for _, r := range c.relays {
		all = append(all, r)
	}
	var chans []*Channel
	for _, ch := range c.chans {
		chans = append(chans, ch)
	}
	c.mu.Unlock()
	for _, r := range all {
		r.close()
	}
	for _, ch := range chans {
		ch.close()
	}
	c.wg.Wait()
}

// Relay is one incoming relay stream and its local fan-out track. When
// the stream ends (source closed the track, source pod gone, no packets
// past the track timeout, no local subscriber) the track is closed and
// every local subscriber sees its pull go inactive.
type Relay struct {
	c     *Client
	k     key
	addr  string
	conn  net.Conn
	br    *bufio.Reader
	track *forward.Track
	log   *slog.Logger
	ctrl  chan byte

	created time.Time

	mu       sync.Mutex
	lastUsed time.Time      // last sweep that saw a local subscriber
	readers  []*layerReader // by source layer index
	closed   bool
	once     sync.Once
	done     chan struct{}
	loops    sync.WaitGroup
}

func (r *Relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// setLayers adds a reader for every source layer not known yet.
func (r *Relay) setLayers(rids []string) error {
	for i, rid := range rids {
		if i >= forward.MaxLayers {
			break
		}
		r.mu.Lock()
		if i < len(r.readers) || r.closed {
			r.mu.Unlock()
			continue
		}
		lr := &layerReader{ch: make(chan *[]byte, outQueue), done: r.done}
		r.readers = append(r.readers, lr)
		r.mu.Unlock()
		// The SSRC is the source layer index + 1, so a keyframe request
		// names its layer.
		if err := r.track.AddLayer(rid, uint32(i+1), lr); err != nil {
			return err
		}
	}
	return nil
}

func (r *Relay) requestKeyframe(ssrc uint32) {
	layer := byte(allLayers)
	if ssrc > 0 && ssrc <= forward.MaxLayers {
		layer = byte(ssrc - 1)
	}
	select {
	case r.ctrl <- layer:
	default:
	}
}

func (r *Relay) run() {
	r.loops.Add(1)
	go func() {
		defer r.loops.Done()
		r.writeLoop()
	}()
	r.readLoop()
	r.close()
	r.wait()
}

func (r *Relay) wait() { r.loops.Wait() }

func (r *Relay) readLoop() {
	var buf []byte
	for {
		typ, layer, p, err := readFrame(r.br, buf)
		if err != nil {
			if !r.isClosed() {
				r.log.Info("relay stream ended", "err", err)
			}
			return
		}
		buf = p[:0]
		switch typ {
		case frameRTP:
			r.mu.Lock()
			var lr *layerReader
			if int(layer) < len(r.readers) {
				lr = r.readers[layer]
			}
			r.mu.Unlock()
			if lr != nil {
				lr.push(p)
			}
		case frameLayers:
			var rids []string
			if json.Unmarshal(p, &rids) == nil {
				_ = r.setLayers(rids)
			}
		case frameEnd:
			r.log.Debug("relay source ended the track")
			return
		}
	}
}

func (r *Relay) writeLoop() {
	var b [headerLen]byte
	for {
		select {
		case <-r.done:
			return
		case layer := <-r.ctrl:
			putHeader(b[:], frameKeyframe, layer, 0)
			_ = r.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := r.conn.Write(b[:]); err != nil {
				r.close()
				return
			}
		}
	}
}

// close ends the stream and the local track; subscribers go inactive.
func (r *Relay) close() {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.done)
		_ = r.conn.Close()
		r.track.Close()
	})
}

// layerReader feeds one relayed layer to the local track's read loop.
type layerReader struct {
	ch   chan *[]byte
	done chan struct{}
}

func (l *layerReader) push(p []byte) {
	bp := framePool.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	select {
	case l.ch <- bp:
	default:
		framePool.Put(bp)
	}
}

// Read implements forward.PacketReader.
func (l *layerReader) Read(b []byte) (int, interceptor.Attributes, error) {
	select {
	case <-l.done:
		return 0, nil, io.EOF
	case bp := <-l.ch:
		n := copy(b, *bp)
		short := n < len(*bp)
		framePool.Put(bp)
		if short {
			return 0, nil, errShortBuffer
		}
		return n, nil, nil
	}
}

var errShortBuffer = errors.New("relay: packet larger than read buffer")
