package relay

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
)

// LookupFunc finds a live publication on this pod.
type LookupFunc func(app, sessionID, trackName string) (*forward.Track, error)

// watchEvery is how often a source stream checks for new layers and for
// the end of its publication.
const watchEvery = 200 * time.Millisecond

// endFlushTimeout bounds how long the end marker may wait for the socket.
const endFlushTimeout = time.Second

// outQueue bounds frames waiting for the socket; past it packets are
// dropped (the destination's subscribers NACK or ask for a keyframe)
// rather than stalling the publisher's fan-out.
const outQueue = 1024

// Server serves relay streams of this pod's publications to other pods.
// The fleet router authenticates requests before they reach it. Close ends
// every stream and waits for their goroutines.
type Server struct {
	lookup LookupFunc
	log    *slog.Logger

	mu      sync.Mutex
	streams map[any]*sender // *source or *chanSource
	closed  bool
	wg      sync.WaitGroup
}

// NewServer returns a relay server over lookup.
func NewServer(lookup LookupFunc, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{lookup: lookup, log: log, streams: map[any]*sender{}}
}

// Streams returns how many track relay streams this pod is sending.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked()
}

// ChannelStreams returns how many DataChannel relay streams this pod is
// sending.
func (s *Server) ChannelStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams) - s.countLocked()
}

func (s *Server) countLocked() int {
	n := 0
	for k := range s.streams {
		if _, ok := k.(*source); ok {
			n++
		}
	}
	return n
}

// ServeHTTP upgrades GET {prefix}{appId}/{sessionId}/{trackName} to a relay
// stream. The route must be registered with those three path values.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	app, sid, name := r.PathValue("appId"), r.PathValue("sessionId"), r.PathValue("trackName")
	if r.Header.Get("Upgrade") != Upgrade {
		http.Error(w, "relay needs Upgrade: "+Upgrade, http.StatusUpgradeRequired)
		return
	}
	src, err := s.lookup(app, sid, name)
	if err != nil || src == nil || src.Codec().MimeType == "" {
		http.Error(w, "track not found", http.StatusNotFound)
		return
	}
	conn, br, ok := s.upgrade(w)
	if !ok {
		return
	}
	st := &source{sender: newSender(conn), srv: s, br: br, src: src,
		log: s.log.With("relay", sid+"/"+name, "peer", conn.RemoteAddr().String())}
	if !s.add(st, &st.sender) {
		return
	}
	go st.run()
}

// upgrade hijacks the request's connection and answers 101.
func (s *Server) upgrade(w http.ResponseWriter) (net.Conn, *bufio.Reader, bool) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot upgrade", http.StatusInternalServerError)
		return nil, nil, false
	}
	// The API server's read and write timeouts must not end a stream
	// (net/http clears them on hijack too).
	_ = conn.SetDeadline(time.Time{})
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + Upgrade + "\r\n\r\n"); err != nil {
		_ = conn.Close()
		return nil, nil, false
	}
	if err := brw.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, false
	}
	return conn, brw.Reader, true
}

// add registers a started stream (key: *source or *chanSource); false if
// the server closed meanwhile (the connection is then closed).
func (s *Server) add(key any, snd *sender) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = snd.conn.Close()
		return false
	}
	s.streams[key] = snd
	s.wg.Add(1)
	return true
}

func (s *Server) remove(key any) {
	s.mu.Lock()
	delete(s.streams, key)
	s.mu.Unlock()
}

// Close ends every stream and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var all []*sender
	for _, st := range s.streams {
		all = append(all, st)
	}
	s.mu.Unlock()
	for _, st := range all {
		st.close()
	}
	s.wg.Wait()
}

// source is one outgoing relay stream: one forward.DownTrack per layer of
// the publication, each pinned to its layer, writing frames to out.
type source struct {
	sender
	srv *Server
	br  *bufio.Reader
	src *forward.Track
	log *slog.Logger

	mu     sync.Mutex
	layers []*forward.DownTrack // by source layer index
}

// sender is the outgoing half shared by media and DataChannel streams: a
// bounded frame queue drained by writeLoop onto the connection.
type sender struct {
	conn net.Conn
	out  chan *[]byte
	once sync.Once
	done chan struct{}

	dropped atomic.Uint64
}

func newSender(conn net.Conn) sender {
	return sender{conn: conn, out: make(chan *[]byte, outQueue), done: make(chan struct{})}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

func (st *source) run() {
	defer st.srv.wg.Done()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); st.writeLoop() }()
	go func() { defer wg.Done(); st.readLoop() }()
	h := hello{Kind: st.src.Kind().String(), Codec: st.src.Codec(), Rids: st.src.Rids()}
	st.sendJSON(frameHello, h)
	st.addLayers(h.Rids)
	t := time.NewTicker(watchEvery)
	for {
		select {
		case <-st.done:
		case <-t.C:
			if st.src.Closed() {
				// The writer closes the stream once the end marker is out;
				// a destination that stopped reading is cut off anyway.
				st.enqueue(frameEnd, 0, nil)
				select {
				case <-st.done:
				case <-time.After(endFlushTimeout):
					st.close()
				}
				continue
			}
			if rids := st.src.Rids(); len(rids) > st.layerCount() {
				st.sendJSON(frameLayers, rids)
				st.addLayers(rids)
			}
			continue
		}
		break
	}
	t.Stop()
	wg.Wait()
	st.mu.Lock()
	layers := st.layers
	st.layers = nil
	st.mu.Unlock()
	for _, d := range layers {
		d.Close()
	}
	st.srv.remove(st)
	if n := st.dropped.Load(); n > 0 {
		st.log.Info("relay stream ended with dropped packets", "dropped", n)
	}
}

func (st *source) layerCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.layers)
}

// addLayers starts a pinned down track for every layer not relayed yet.
func (st *source) addLayers(rids []string) {
	codec := st.src.Codec()
	for {
		st.mu.Lock()
		idx := len(st.layers)
		if idx >= len(rids) || idx >= forward.MaxLayers {
			st.mu.Unlock()
			return
		}
		d := forward.NewDownTrack("relay", "relay", st.src.Kind(), codec)
		st.layers = append(st.layers, d)
		st.mu.Unlock()
		if rids[idx] != "" {
			d.SetPreferences(forward.Preferences{PreferredRid: rids[idx], RidNotAvailable: forward.OrderNone, PriorityOrdering: forward.OrderNone})
		}
		ctx := &bindContext{ssrc: webrtc.SSRC(idx + 1), codec: codec, w: &layerWriter{st: st, layer: byte(idx)}}
		if _, err := d.Bind(ctx); err != nil {
			st.log.Warn("relay cannot bind layer", "layer", idx, "err", err)
			continue
		}
		if err := d.SetSource(st.src); err != nil {
			st.close()
			return
		}
	}
}

func (st *sender) sendJSON(typ byte, v any) {
	b, err := json.Marshal(v)
	if err != nil || len(b) > maxFrameLen {
		return
	}
	st.enqueue(typ, 0, b)
}

// enqueue queues one frame; it never blocks.
func (st *sender) enqueue(typ, layer byte, payload []byte) {
	bp := framePool.Get().(*[]byte)
	b := append((*bp)[:0], 0, 0, 0, 0)
	b = append(b, payload...)
	putHeader(b, typ, layer, len(payload))
	st.push(bp, b)
}

func (st *sender) push(bp *[]byte, b []byte) {
	*bp = b
	select {
	case <-st.done:
		framePool.Put(bp)
		return
	default:
	}
	select {
	case st.out <- bp:
	default:
		st.dropped.Add(1)
		framePool.Put(bp)
	}
}

func (st *sender) writeLoop() {
	w := bufio.NewWriterSize(st.conn, 32<<10)
	for {
		select {
		case <-st.done:
			return
		case bp := <-st.out:
			end := len(*bp) >= headerLen && (*bp)[0] == frameEnd
			_, err := w.Write(*bp)
			framePool.Put(bp)
			if err == nil && (end || len(st.out) == 0) {
				err = w.Flush()
			}
			if err != nil || end {
				st.close()
				return
			}
		}
	}
}

// readLoop takes keyframe requests from the destination pod.
func (st *source) readLoop() {
	var buf []byte
	for {
		typ, layer, p, err := readFrame(st.br, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				st.log.Debug("relay read", "err", err)
			}
			st.close()
			return
		}
		buf = p[:0]
		if typ == frameKeyframe {
			idx := int(layer)
			if layer == allLayers {
				idx = -1
			}
			st.src.RequestKeyframe(idx)
		}
	}
}

func (st *sender) close() {
	st.once.Do(func() {
		close(st.done)
		_ = st.conn.Close()
	})
}

// layerWriter turns a pinned down track's output into RTP frames.
type layerWriter struct {
	st    *source
	layer byte
}

func (lw *layerWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	bp := framePool.Get().(*[]byte)
	hl := h.MarshalSize()
	n := hl + len(payload)
	b := (*bp)[:0]
	if cap(b) < headerLen+n {
		b = make([]byte, 0, headerLen+n)
	}
	b = b[:headerLen+n]
	if _, err := h.MarshalTo(b[headerLen:]); err != nil {
		framePool.Put(bp)
		return 0, err
	}
	copy(b[headerLen+hl:], payload)
	putHeader(b, frameRTP, lw.layer, n)
	lw.st.push(bp, b)
	return n, nil
}

func (lw *layerWriter) Write(b []byte) (int, error) {
	lw.st.enqueue(frameRTP, lw.layer, b)
	return len(b), nil
}

// bindContext is the TrackLocalContext a pinned down track is bound with:
// one codec, a fixed SSRC per layer, frames as the write stream.
type bindContext struct {
	ssrc  webrtc.SSRC
	codec webrtc.RTPCodecCapability
	w     webrtc.TrackLocalWriter
}

func (c *bindContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: c.codec, PayloadType: 96}}
}
func (c *bindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c *bindContext) SSRC() webrtc.SSRC                                      { return c.ssrc }
func (c *bindContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c *bindContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c *bindContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c *bindContext) ID() string                                             { return "relay" }
func (c *bindContext) RTCPReader() interceptor.RTCPReader                     { return nil }
