package forward

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// keyframeRetry spaces the keyframe requests of a down track waiting for
// one. It is just over the publisher-side debounce: a request swallowed by
// another's (a second subscriber's, or across pods the relay's own request
// made when the stream opened) is repeated as soon as it can pass.
const keyframeRetry = keyframeDebounce + 100*time.Millisecond

// ErrNoCodec is returned by Bind when the subscriber negotiated no codec
// the down track can send.
var ErrNoCodec = errors.New("no matching codec negotiated")

// Ordering values of simulcast preferences (CONTRACT §2.2).
const (
	OrderNone         = "none"
	OrderAsciibetical = "asciibetical"
)

// Preferences are a subscriber's simulcast choices.
type Preferences struct {
	PreferredRid string
	// PriorityOrdering "asciibetical" allows stepping down under congestion.
	// Accepted and kept; no bandwidth estimation drives it yet.
	PriorityOrdering string
	// RidNotAvailable "asciibetical" falls back to the next receiving layer
	// when the preferred one is not receiving; "none" waits for it.
	RidNotAvailable string
}

// DownTrack is one subscription's outbound track: a webrtc.TrackLocal whose
// packets come from a source Track. The source can be swapped (tracks/update)
// without renegotiation; the output SSRC and sequence stay continuous.
type DownTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	want         webrtc.RTPCodecCapability // empty MimeType: take the first negotiated codec

	mu     sync.Mutex
	bound  bool
	ssrc   uint32
	pt     uint8
	codec  webrtc.RTPCodecCapability
	writer webrtc.TrackLocalWriter
	src    *Track
	family codecFamily
	prefs  Preferences
	// Congestion step-down (priorityOrdering "asciibetical"): layers whose
	// asciibetical position is below stepDown are skipped.
	stepDown   int
	lastStep   int64 // unix nanos of the last step change
	lossySince int64
	cleanSince int64
	cur        int // layer being forwarded, -1 none
	target     int // layer wanted, -1 none
	resync     bool
	started    bool
	seqOff     uint16
	tsOff      uint32
	lastSeq    uint16
	lastTS     uint32
	lastWall   int64
	waitReq    int64 // last keyframe request while waiting to switch
	hdr        rtp.Header
	closed     bool
	gen        uint32 // bumped on every source change
	gate       *Gate  // nil: the writer can always send
	seen       uint32 // gate state when the last packet was forwarded
	sent       *sentLog
	rtxBuf     []byte
	rtxHdr     rtp.Header
	rtxOut     rtp.Header

	packetsOut atomic.Uint64
	bytesOut   atomic.Uint64
}

// NewDownTrack makes an unbound down track. codec may be zero: Bind then
// takes the first codec of kind the subscriber negotiated.
func NewDownTrack(id, streamID string, kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability) *DownTrack {
	return &DownTrack{id: id, streamID: streamID, kind: kind, want: codec, cur: -1, target: -1,
		seen: (*Gate)(nil).load(), hdr: rtp.Header{Version: 2, Extensions: make([]rtp.Extension, 0, 4)}}
}

// SetGate makes the down track forward only while g is open (see Gate).
// Call it before Bind and SetSource; the session passes the gate of the
// subscriber's PeerConnection.
func (d *DownTrack) SetGate(g *Gate) {
	d.mu.Lock()
	d.gate = g
	d.seen = 1 // open with no openings: a state a gate never has
	d.mu.Unlock()
}

// canSend reports whether a keyframe requested now could reach the
// subscriber; requests made while the gate is closed would only be
// answered into the void and then hold back, through the debounce, the
// request made when it opens. d.mu must be held.
func (d *DownTrack) canSend() bool { return d.gate.load()&1 == 1 }

// ID implements webrtc.TrackLocal.
func (d *DownTrack) ID() string { return d.id }

// StreamID implements webrtc.TrackLocal.
func (d *DownTrack) StreamID() string { return d.streamID }

// RID implements webrtc.TrackLocal: subscribers get one layer.
func (d *DownTrack) RID() string { return "" }

// Kind implements webrtc.TrackLocal.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.kind }

// Bind implements webrtc.TrackLocal.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var chosen *webrtc.RTPCodecParameters
	params := ctx.CodecParameters()
	for i := range params {
		p := &params[i]
		if isAux(p.MimeType) {
			continue
		}
		if d.want.MimeType == "" {
			chosen = p
			break
		}
		if strings.EqualFold(p.MimeType, d.want.MimeType) {
			if chosen == nil || p.SDPFmtpLine == d.want.SDPFmtpLine {
				chosen = p
			}
		}
	}
	if chosen == nil {
		return webrtc.RTPCodecParameters{}, ErrNoCodec
	}
	d.mu.Lock()
	d.bound = true
	d.ssrc = uint32(ctx.SSRC())
	d.pt = uint8(chosen.PayloadType)
	d.codec = chosen.RTPCodecCapability
	d.family = familyOf(chosen.MimeType)
	d.writer = ctx.WriteStream()
	d.resync = true
	src := d.src
	ask := d.canSend()
	d.mu.Unlock()
	if src != nil {
		d.pickLayer()
		if ask {
			src.RequestKeyframe(-1)
		}
	}
	return *chosen, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.bound = false
	d.writer = nil
	d.mu.Unlock()
	return nil
}

func isAux(mime string) bool {
	m := strings.ToLower(mime)
	return strings.HasSuffix(m, "/rtx") || strings.HasSuffix(m, "/red") || strings.HasSuffix(m, "/ulpfec") ||
		strings.HasSuffix(m, "/flexfec-03")
}

// Codec returns the bound codec (zero before Bind) or the wanted one.
func (d *DownTrack) Codec() webrtc.RTPCodecCapability {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bound {
		return d.codec
	}
	return d.want
}

// SetSource attaches the down track to src (nil detaches). The first
// packets after a switch wait for a keyframe where the codec allows it.
func (d *DownTrack) SetSource(src *Track) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	old := d.src
	if src != nil {
		want := d.want.MimeType
		if d.bound {
			want = d.codec.MimeType
		}
		if sc := src.Codec().MimeType; want != "" && sc != "" && !strings.EqualFold(want, sc) {
			d.mu.Unlock()
			return ErrCodecMismatch
		}
	}
	d.src = src
	d.cur, d.target = -1, -1
	d.resync = true
	d.gen++
	ask := d.canSend()
	d.mu.Unlock()
	if old != nil && old != src {
		old.detach(d)
	}
	if src == nil || old == src {
		return nil
	}
	if err := src.attach(d); err != nil {
		d.mu.Lock()
		d.src = nil
		d.mu.Unlock()
		return err
	}
	d.pickLayer()
	if ask {
		src.RequestKeyframe(-1)
	}
	return nil
}

// Source returns the current source.
func (d *DownTrack) Source() *Track {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.src
}

func (d *DownTrack) sourceGone(t *Track) {
	d.mu.Lock()
	if d.src == t {
		d.src = nil
		d.cur, d.target = -1, -1
	}
	d.mu.Unlock()
}

// SetPreferences changes the simulcast choice; a new layer is requested
// with a keyframe.
func (d *DownTrack) SetPreferences(p Preferences) {
	d.mu.Lock()
	d.prefs = p
	d.mu.Unlock()
	d.pickLayer()
}

// Layer returns the rid being forwarded ("" if none or not simulcast) and
// the rid wanted.
func (d *DownTrack) Layer() (current, target string) {
	d.mu.Lock()
	src, cur, tgt := d.src, d.cur, d.target
	d.mu.Unlock()
	if src == nil {
		return "", ""
	}
	rids, _ := src.layout()
	if cur >= 0 && cur < len(rids) {
		current = rids[cur]
	}
	if tgt >= 0 && tgt < len(rids) {
		target = rids[tgt]
	}
	return current, target
}

// pickLayer chooses the target layer from preferences and availability.
func (d *DownTrack) pickLayer() {
	d.mu.Lock()
	src := d.src
	if src == nil {
		d.mu.Unlock()
		return
	}
	prefs := d.prefs
	step := d.stepDown
	d.mu.Unlock()
	rids, avail := src.layout()
	target := chooseLayer(rids, avail, prefs)
	if prefs.PriorityOrdering == OrderAsciibetical && step > 0 && target >= 0 {
		target = stepBelow(rids, avail, target, step)
	}
	d.mu.Lock()
	if d.src != src {
		d.mu.Unlock()
		return
	}
	changed := target != d.target
	d.target = target
	cur := d.cur
	ask := d.canSend()
	d.mu.Unlock()
	if changed && ask && target >= 0 && target != cur {
		src.RequestKeyframe(target)
	}
}

// chooseLayer implements CONTRACT §4.4: the preferred rid when it is
// receiving; otherwise, with RidNotAvailable "asciibetical", the next
// receiving layer in rid order (a = best); with "none", the preferred layer
// anyway (forwarding resumes when it does). Without a preference the best
// receiving layer is taken.
func chooseLayer(rids []string, avail uint32, p Preferences) int {
	if len(rids) == 0 {
		return -1
	}
	if len(rids) == 1 {
		return 0
	}
	order := sortedByRid(rids)
	on := func(i int) bool { return avail&(1<<i) != 0 }
	if p.PreferredRid != "" {
		pos := -1
		for k, i := range order {
			if rids[i] == p.PreferredRid {
				pos = k
			}
		}
		if pos >= 0 && on(order[pos]) {
			return order[pos]
		}
		if p.RidNotAvailable == OrderAsciibetical {
			start := pos + 1
			if pos < 0 {
				start = 0
			}
			for k := start; k < len(order); k++ {
				if on(order[k]) {
					return order[k]
				}
			}
			for k := pos - 1; k >= 0; k-- {
				if on(order[k]) {
					return order[k]
				}
			}
		}
		if pos >= 0 {
			return order[pos]
		}
	}
	for _, i := range order {
		if on(i) {
			return i
		}
	}
	return order[0]
}

// forward writes one packet of layer idx if it is the layer this down track
// forwards, and reports whether it was written. It is the per-subscriber
// part of the hot path: no allocation; the caller counts written packets
// into ForwardedPackets once per ingested packet.
func (d *DownTrack) forward(idx int, in *rtp.Header, payload []byte, keyframe bool, now int64) bool {
	d.mu.Lock()
	if !d.bound || d.src == nil || d.writer == nil {
		d.mu.Unlock()
		return false
	}
	if g := d.gate.load(); g != d.seen {
		if g&1 == 0 {
			// The transport is not up: a write would be dropped, and a
			// keyframe "sent" now would leave the subscriber with deltas.
			d.mu.Unlock()
			return false
		}
		// First packet since the transport came up: start over from a
		// keyframe, asked for below without waiting out waitReq.
		d.seen = g
		d.cur = -1
		d.resync = true
		d.waitReq = now - int64(keyframeRetry) - 1
	}
	if idx != d.cur {
		if idx != d.target {
			d.mu.Unlock()
			return false
		}
		if d.family.gated() && !keyframe {
			// Keep asking while we wait to switch.
			if now-d.waitReq > int64(keyframeRetry) {
				d.waitReq = now
				src := d.src
				d.mu.Unlock()
				src.RequestKeyframe(idx)
				return false
			}
			d.mu.Unlock()
			return false
		}
		d.cur = idx
		d.resync = true
	}
	if d.resync {
		if d.started {
			d.seqOff = d.lastSeq + 1 - in.SequenceNumber
			gap := uint32(1)
			if d.codec.ClockRate > 0 && now > d.lastWall {
				if g := uint64(now-d.lastWall) * uint64(d.codec.ClockRate) / uint64(time.Second); g > 0 && g < 1<<31 {
					gap = uint32(g)
				}
			}
			d.tsOff = d.lastTS + gap - in.Timestamp
		}
		d.resync = false
	}
	seq := in.SequenceNumber + d.seqOff
	ts := in.Timestamp + d.tsOff
	if !d.started || int16(seq-d.lastSeq) > 0 {
		d.lastSeq = seq
		d.lastTS = ts
		d.lastWall = now
		d.started = true
	}
	h := &d.hdr
	h.Version = 2
	h.Padding = false
	h.Marker = in.Marker
	h.PayloadType = d.pt
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.SSRC = d.ssrc
	h.CSRC = in.CSRC
	h.Extension = false
	h.ExtensionProfile = 0
	h.Extensions = h.Extensions[:0]
	h.PaddingSize = 0
	if d.kind == webrtc.RTPCodecTypeVideo {
		if d.sent == nil {
			d.sent = &sentLog{}
		}
		e := &d.sent[int(seq)%sentSlots]
		*e = sentEntry{outSeq: seq, inSeq: in.SequenceNumber, layer: int8(idx), valid: true, gen: d.gen, tsOff: d.tsOff}
	}
	n, err := d.writer.WriteRTP(h, payload)
	d.mu.Unlock()
	if err != nil {
		return false
	}
	d.packetsOut.Add(1)
	d.bytesOut.Add(uint64(n))
	return true
}

// Stats returns outbound packet and byte counts (egress).
func (d *DownTrack) Stats() (packets, bytes uint64) { return d.packetsOut.Load(), d.bytesOut.Load() }

// RTCPReader is what subscriber RTCP is read from; *webrtc.RTPSender
// satisfies it.
type RTCPReader interface {
	ReadRTCP() ([]rtcp.Packet, interceptor.Attributes, error)
}

// ServeRTCP reads subscriber RTCP until r fails, turning PLI and FIR into
// keyframe requests toward the source. Run it in its own goroutine: reading
// also drives the NACK responder.
func (d *DownTrack) ServeRTCP(r RTCPReader) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool {
						d.resend(seq)
						return true
					})
				}
			case *rtcp.ReceiverReport:
				for _, r := range p.Reports {
					d.onLoss(r.SSRC, r.FractionLost, time.Now().UnixNano())
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.mu.Lock()
				src, cur := d.src, d.cur
				d.mu.Unlock()
				if src != nil {
					src.RequestKeyframe(cur)
				}
			}
		}
	}
}

// Close detaches the down track from its source for good.
func (d *DownTrack) Close() {
	d.mu.Lock()
	d.closed = true
	src := d.src
	d.src = nil
	d.mu.Unlock()
	if src != nil {
		src.detach(d)
	}
}

// resend answers a NACK for outSeq from the source layer's ring.
func (d *DownTrack) resend(outSeq uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sent == nil || !d.bound || d.writer == nil || d.src == nil {
		return
	}
	e := &d.sent[int(outSeq)%sentSlots]
	if !e.valid || e.outSeq != outSeq || e.gen != d.gen || e.resends >= maxResends {
		return
	}
	ring := d.src.layerRing(int(e.layer))
	if ring == nil {
		return
	}
	if d.rtxBuf == nil {
		d.rtxBuf = make([]byte, slotBytes)
	}
	n := ring.get(e.inSeq, d.rtxBuf)
	if n == 0 {
		return
	}
	pkt := d.rtxBuf[:n]
	hl, err := d.rtxHdr.Unmarshal(pkt)
	if err != nil || hl > n {
		return
	}
	payload := pkt[hl:]
	if d.rtxHdr.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		if pad == 0 || pad > len(payload) {
			return
		}
		payload = payload[:len(payload)-pad]
	}
	e.resends++
	h := &d.rtxOut
	*h = rtp.Header{Version: 2, Marker: d.rtxHdr.Marker, PayloadType: d.pt, SequenceNumber: outSeq,
		Timestamp: d.rtxHdr.Timestamp + e.tsOff, SSRC: d.ssrc, Extensions: h.Extensions[:0]}
	if n, err := d.writer.WriteRTP(h, payload); err == nil {
		d.packetsOut.Add(1)
		d.bytesOut.Add(uint64(n))
		forwarded.n.Add(1)
	}
}

// Congestion thresholds on the subscriber's reported loss fraction (/256).
const (
	lossHigh     = 26 // ≈10 %: step down after lossHold
	lossLow      = 5  // ≈2 %: step back up after cleanHold
	lossHold     = 2 * time.Second
	cleanHold    = 10 * time.Second
	stepInterval = 2 * time.Second
)

// onLoss applies a receiver report: with priorityOrdering "asciibetical",
// sustained loss steps down one layer (a = best, z = worst) and a sustained
// clean link steps back up. With "none" the preferred layer is kept.
func (d *DownTrack) onLoss(ssrc uint32, fraction uint8, now int64) {
	d.mu.Lock()
	if ssrc != d.ssrc || d.prefs.PriorityOrdering != OrderAsciibetical {
		d.mu.Unlock()
		return
	}
	changed := false
	switch {
	case fraction >= lossHigh:
		d.cleanSince = 0
		if d.lossySince == 0 {
			d.lossySince = now
		}
		if now-d.lossySince >= int64(lossHold) && now-d.lastStep >= int64(stepInterval) && d.stepDown < MaxLayers-1 {
			d.stepDown++
			d.lastStep, changed = now, true
		}
	case fraction <= lossLow:
		d.lossySince = 0
		if d.cleanSince == 0 {
			d.cleanSince = now
		}
		if d.stepDown > 0 && now-d.cleanSince >= int64(cleanHold) && now-d.lastStep >= int64(stepInterval) {
			d.stepDown--
			d.lastStep, d.cleanSince, changed = now, now, true
		}
	default:
		d.lossySince, d.cleanSince = 0, 0
	}
	d.mu.Unlock()
	if changed {
		d.pickLayer()
	}
}

// stepBelow moves target step positions down the asciibetical order,
// onto a receiving layer if there is one, never past the worst layer.
func stepBelow(rids []string, avail uint32, target, step int) int {
	order := sortedByRid(rids)
	pos := 0
	for k, i := range order {
		if i == target {
			pos = k
		}
	}
	want := pos + step
	if want >= len(order) {
		want = len(order) - 1
	}
	for k := want; k < len(order); k++ {
		if avail&(1<<order[k]) != 0 {
			return order[k]
		}
	}
	return order[want]
}
