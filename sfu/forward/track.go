package forward

import (
	"errors"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

var (
	// ErrClosed is returned when attaching to a closed track.
	ErrClosed = errors.New("track closed")
	// ErrCodecMismatch is returned when a down track was negotiated with a
	// codec that the source does not send.
	ErrCodecMismatch = errors.New("codec mismatch between source and down track")
	// ErrTooManyLayers is returned past MaxLayers simulcast layers.
	ErrTooManyLayers = errors.New("too many simulcast layers")
)

// MaxLayers bounds the simulcast layers of one track.
const MaxLayers = 4

// layerIdle is how long a layer may go silent before it counts as
// unavailable for layer selection.
const layerIdle = time.Second

// keyframeDebounce spaces keyframe requests for one layer.
const keyframeDebounce = 500 * time.Millisecond

// PacketReader is what a received layer is read from; *webrtc.TrackRemote
// satisfies it.
type PacketReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// TrackConfig configures a Track.
type TrackConfig struct {
	// ID names the track in logs (e.g. "session/trackName").
	ID   string
	Kind webrtc.RTPCodecType
	// Codec is the negotiated codec, used to bind down tracks before the
	// first packet arrives. It may be set later with SetCodec.
	Codec webrtc.RTPCodecCapability
	// Rids lists the simulcast layers announced in SDP, if any.
	Rids []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RequestKeyframe asks the publisher for a keyframe on the layer with
	// this SSRC. It is called at most every 500 ms per layer.
	RequestKeyframe func(ssrc uint32)
}

// Track is one published media track with one or more received layers,
// fanned out to down tracks.
type Track struct {
	cfg    TrackConfig
	now    func() time.Time
	family atomic.Uint32

	mu     sync.Mutex
	codec  webrtc.RTPCodecCapability
	layers []*layer // by index; index is stable once added
	closed bool

	downs atomic.Pointer[[]*DownTrack]
	// lastPacket is the unix-nano time of the newest packet on any layer.
	lastPacket atomic.Int64
	created    time.Time

	packetsIn atomic.Uint64
	bytesIn   atomic.Uint64
	// availMask has bit i set while layer i is receiving.
	availMask  atomic.Uint32
	lastLayers atomic.Int64
}

type layer struct {
	rid        string
	idx        int
	ring       *packetRing // video only: source of retransmissions
	ssrc       atomic.Uint32
	lastPacket atomic.Int64
	lastKFReq  atomic.Int64
	hdr        rtp.Header // used by Ingest (one caller at a time)
}

// NewTrack makes a track with no layers yet.
func NewTrack(cfg TrackConfig) *Track {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	t := &Track{cfg: cfg, now: now, codec: cfg.Codec, created: now()}
	t.family.Store(uint32(familyOf(cfg.Codec.MimeType)))
	empty := []*DownTrack{}
	t.downs.Store(&empty)
	for _, rid := range cfg.Rids {
		if len(t.layers) < MaxLayers {
			t.layers = append(t.layers, t.newLayer(rid))
		}
	}
	return t
}

// newLayer makes layer number len(t.layers); t.mu held or t not shared yet.
func (t *Track) newLayer(rid string) *layer {
	l := &layer{rid: rid, idx: len(t.layers)}
	if t.cfg.Kind == webrtc.RTPCodecTypeVideo {
		l.ring = &packetRing{}
	}
	return l
}

// layerRing returns the retransmission ring of layer idx (nil if none).
func (t *Track) layerRing(idx int) *packetRing {
	t.mu.Lock()
	defer t.mu.Unlock()
	if idx < 0 || idx >= len(t.layers) {
		return nil
	}
	return t.layers[idx].ring
}

// ID returns the configured ID.
func (t *Track) ID() string { return t.cfg.ID }

// Kind returns the media kind.
func (t *Track) Kind() webrtc.RTPCodecType { return t.cfg.Kind }

// Codec returns the codec down tracks bind with.
func (t *Track) Codec() webrtc.RTPCodecCapability {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.codec
}

// SetCodec records the codec once it is known (negotiation or first packet).
func (t *Track) SetCodec(c webrtc.RTPCodecCapability) {
	t.mu.Lock()
	t.codec = c
	t.mu.Unlock()
	t.family.Store(uint32(familyOf(c.MimeType)))
}

// Rids lists the simulcast layers known so far, in index order.
func (t *Track) Rids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.layers))
	for _, l := range t.layers {
		out = append(out, l.rid)
	}
	return out
}

// Simulcast reports whether the track has more than one layer or any rid.
func (t *Track) Simulcast() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.layers) > 1 || (len(t.layers) == 1 && t.layers[0].rid != "")
}

// LastPacket is the time of the newest inbound packet, or the creation time
// if none arrived yet.
func (t *Track) LastPacket() time.Time {
	if n := t.lastPacket.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return t.created
}

// Receiving reports whether any packet arrived within the last second.
func (t *Track) Receiving() bool {
	n := t.lastPacket.Load()
	return n != 0 && t.now().UnixNano()-n < int64(layerIdle)
}

// Stats returns inbound packet and byte counts.
func (t *Track) Stats() (packets, bytes uint64) { return t.packetsIn.Load(), t.bytesIn.Load() }

// AddLayer starts reading one received layer (rid "" when not simulcast).
// The read loop ends when r fails; it returns immediately after starting it.
func (t *Track) AddLayer(rid string, ssrc uint32, r PacketReader) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	var l *layer
	for _, x := range t.layers {
		if x.rid == rid {
			l = x
		}
	}
	if l == nil {
		if len(t.layers) >= MaxLayers {
			t.mu.Unlock()
			return ErrTooManyLayers
		}
		l = t.newLayer(rid)
		t.layers = append(t.layers, l)
	}
	l.ssrc.Store(ssrc)
	t.mu.Unlock()
	t.relayout()
	go t.readLoop(l, r)
	return nil
}

func (t *Track) readLoop(l *layer, r PacketReader) {
	buf := make([]byte, 1500)
	// Each reader parses into its own header: a layer may briefly have two
	// readers when the publisher changes SSRC.
	var hdr rtp.Header
	for {
		n, _, err := r.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = err // a stopped receiver or closed connection ends the loop
			}
			return
		}
		t.ingest(l, &hdr, buf[:n])
	}
}

// Ingest forwards one raw RTP packet received on layer index idx. It is the
// entry point of the hot path (read loops and benchmarks call it) and must
// only be called from one goroutine per layer.
func (t *Track) Ingest(idx int, pkt []byte) {
	t.mu.Lock()
	if idx < 0 || idx >= len(t.layers) {
		t.mu.Unlock()
		return
	}
	l := t.layers[idx]
	t.mu.Unlock()
	t.ingest(l, &l.hdr, pkt)
}

// EnsureLayer makes sure layer rid exists and returns its index (for tests
// and benchmarks that feed Ingest directly).
func (t *Track) EnsureLayer(rid string) int {
	t.mu.Lock()
	for _, l := range t.layers {
		if l.rid == rid {
			t.mu.Unlock()
			return l.idx
		}
	}
	l := t.newLayer(rid)
	t.layers = append(t.layers, l)
	t.mu.Unlock()
	t.relayout()
	return l.idx
}

func (t *Track) ingest(l *layer, h *rtp.Header, pkt []byte) {
	n, err := h.Unmarshal(pkt)
	if err != nil || n > len(pkt) {
		return
	}
	payload := pkt[n:]
	if h.Padding {
		if len(payload) == 0 {
			return
		}
		pad := int(payload[len(payload)-1])
		if pad == 0 || pad > len(payload) {
			return // malformed padding (GHSA-f26w-gh5m-qq77)
		}
		payload = payload[:len(payload)-pad]
	}
	if len(payload) == 0 {
		return // padding-only probe
	}
	now := t.now().UnixNano()
	prev := l.lastPacket.Swap(now)
	t.lastPacket.Store(now)
	t.packetsIn.Add(1)
	t.bytesIn.Add(uint64(len(pkt)))
	if prev == 0 || now-prev > int64(layerIdle) || now-t.lastLayers.Load() > int64(layerIdle/2) {
		t.lastLayers.Store(now)
		t.refreshAvailability(now)
	}
	if l.ring != nil {
		l.ring.put(h.SequenceNumber, pkt)
	}
	kf := isKeyframe(codecFamily(t.family.Load()), payload)
	var sent uint64
	for _, d := range *t.downs.Load() {
		if d.forward(l.idx, h, payload, kf, now) {
			sent++
		}
	}
	if sent > 0 {
		forwarded.n.Add(sent)
	}
}

// refreshAvailability recomputes which layers are receiving and tells down
// tracks when that changed.
func (t *Track) refreshAvailability(now int64) {
	t.mu.Lock()
	var mask uint32
	for _, l := range t.layers {
		if lp := l.lastPacket.Load(); lp != 0 && now-lp < int64(layerIdle) {
			mask |= 1 << l.idx
		}
	}
	t.mu.Unlock()
	if t.availMask.Swap(mask) != mask {
		t.relayout()
	}
}

// relayout makes every down track re-pick its layer.
func (t *Track) relayout() {
	for _, d := range *t.downs.Load() {
		d.pickLayer()
	}
}

// layout returns the rids by index and the availability mask.
func (t *Track) layout() ([]string, uint32) {
	t.mu.Lock()
	rids := make([]string, len(t.layers))
	for i, l := range t.layers {
		rids[i] = l.rid
	}
	t.mu.Unlock()
	return rids, t.availMask.Load()
}

// RequestKeyframe asks the publisher for a keyframe on layer idx (-1: all),
// debounced per layer.
func (t *Track) RequestKeyframe(idx int) {
	if t.cfg.RequestKeyframe == nil {
		return
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	var targets []*layer
	for _, l := range t.layers {
		if idx < 0 || l.idx == idx {
			targets = append(targets, l)
		}
	}
	t.mu.Unlock()
	for _, l := range targets {
		last := l.lastKFReq.Load()
		if now-last < int64(keyframeDebounce) || !l.lastKFReq.CompareAndSwap(last, now) {
			continue
		}
		if ssrc := l.ssrc.Load(); ssrc != 0 {
			t.cfg.RequestKeyframe(ssrc)
		}
	}
}

// attach adds d to the fan-out list.
func (t *Track) attach(d *DownTrack) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	old := *t.downs.Load()
	next := make([]*DownTrack, 0, len(old)+1)
	next = append(next, old...)
	next = append(next, d)
	t.downs.Store(&next)
	return nil
}

func (t *Track) detach(d *DownTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	t.downs.Store(&next)
}

// DownTracks returns how many down tracks are attached.
func (t *Track) DownTracks() int { return len(*t.downs.Load()) }

// Close stops forwarding and detaches every down track (they stay bound to
// their PeerConnections but go silent). Read loops end with their readers.
func (t *Track) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	downs := *t.downs.Load()
	empty := []*DownTrack{}
	t.downs.Store(&empty)
	t.mu.Unlock()
	for _, d := range downs {
		d.sourceGone(t)
	}
}

// Closed reports whether Close was called.
func (t *Track) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// sortedByRid returns layer indexes in asciibetical rid order.
func sortedByRid(rids []string) []int {
	idx := make([]int, len(rids))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return rids[idx[a]] < rids[idx[b]] })
	return idx
}
