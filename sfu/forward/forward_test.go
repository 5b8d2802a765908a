package forward

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fakeCtx binds a DownTrack without a PeerConnection.
type fakeCtx struct {
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	w      *captureWriter
}

func (c *fakeCtx) CodecParameters() []webrtc.RTPCodecParameters           { return c.codecs }
func (c *fakeCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c *fakeCtx) SSRC() webrtc.SSRC                                      { return c.ssrc }
func (c *fakeCtx) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c *fakeCtx) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c *fakeCtx) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c *fakeCtx) ID() string                                             { return "ctx" }
func (c *fakeCtx) RTCPReader() interceptor.RTCPReader                     { return nil }

// captureWriter keeps the last packet (copying only when keep is set) and counts.
type captureWriter struct {
	keep    bool
	n       int
	headers []rtp.Header
	payload [][]byte
}

func (w *captureWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	w.n++
	if w.keep {
		hc := *h
		hc.Extensions = append([]rtp.Extension(nil), h.Extensions...)
		w.headers = append(w.headers, hc)
		w.payload = append(w.payload, append([]byte(nil), p...))
	}
	return len(p) + 12, nil
}

func (w *captureWriter) Write(b []byte) (int, error) { return len(b), nil }

var vp8 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

func bound(t testing.TB, w *captureWriter, ssrc uint32) *DownTrack {
	d := NewDownTrack("t", "s", webrtc.RTPCodecTypeVideo, vp8)
	_, err := d.Bind(&fakeCtx{ssrc: webrtc.SSRC(ssrc), w: w, codecs: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/rtx", ClockRate: 90000}, PayloadType: 97},
		{RTPCodecCapability: vp8, PayloadType: 120},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func packet(t testing.TB, ssrc uint32, seq uint16, ts uint32, key bool, body byte) []byte {
	p := []byte{0x10, 0x01, body, body, body}
	if key {
		p[1] = 0x00
	}
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
	_ = h.SetExtension(3, []byte("a"))
	raw, err := (&rtp.Packet{Header: h, Payload: p}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDownTrackRewritesHeaderAndStaysContinuousAcrossSourceSwitch(t *testing.T) {
	w := &captureWriter{keep: true}
	d := bound(t, w, 4242)
	a := NewTrack(TrackConfig{ID: "a", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	b := NewTrack(TrackConfig{ID: "b", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	ia, ib := a.EnsureLayer(""), b.EnsureLayer("")
	if err := d.SetSource(a); err != nil {
		t.Fatal(err)
	}
	a.Ingest(ia, packet(t, 1, 100, 9000, false, 1)) // not a keyframe: held back
	a.Ingest(ia, packet(t, 1, 101, 9000, true, 2))
	a.Ingest(ia, packet(t, 1, 102, 12000, false, 3))
	if err := d.SetSource(b); err != nil {
		t.Fatal(err)
	}
	b.Ingest(ib, packet(t, 7, 5000, 1, false, 4)) // held until a keyframe
	b.Ingest(ib, packet(t, 7, 5001, 3001, true, 5))
	b.Ingest(ib, packet(t, 7, 5002, 6001, false, 6))
	a.Ingest(ia, packet(t, 1, 103, 15000, true, 7)) // old source: detached
	if len(w.headers) != 4 {
		t.Fatalf("forwarded %d packets, want 4", len(w.headers))
	}
	for i, h := range w.headers {
		if h.SSRC != 4242 || h.PayloadType != 120 || h.Extension || len(h.Extensions) != 0 {
			t.Fatalf("packet %d header not rewritten: %+v", i, h)
		}
		if i > 0 && h.SequenceNumber != w.headers[i-1].SequenceNumber+1 {
			t.Fatalf("sequence not continuous: %d after %d", h.SequenceNumber, w.headers[i-1].SequenceNumber)
		}
	}
	if w.headers[2].Timestamp <= w.headers[1].Timestamp || w.headers[3].Timestamp-w.headers[2].Timestamp != 3000 {
		t.Fatalf("timestamps: %d %d %d", w.headers[1].Timestamp, w.headers[2].Timestamp, w.headers[3].Timestamp)
	}
	for i, body := range []byte{2, 3, 5, 6} {
		if !bytes.Equal(w.payload[i][2:], []byte{body, body, body}) {
			t.Fatalf("payload %d changed: %v", i, w.payload[i])
		}
	}
}

func TestMalformedPaddingIsDropped(t *testing.T) {
	w := &captureWriter{}
	d := bound(t, w, 1)
	tr := NewTrack(TrackConfig{Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	i := tr.EnsureLayer("")
	_ = d.SetSource(tr)
	pkt := packet(t, 1, 1, 1, true, 1)
	pkt[0] |= 0x20         // padding flag
	pkt[len(pkt)-1] = 0xff // padding longer than the payload (GHSA-f26w-gh5m-qq77)
	tr.Ingest(i, pkt)
	tr.Ingest(i, pkt[:3]) // truncated header
	if w.n != 0 {
		t.Fatalf("malformed packets forwarded: %d", w.n)
	}
	tr.Ingest(i, packet(t, 1, 2, 2, true, 1))
	if w.n != 1 {
		t.Fatal("a good packet after bad ones must pass")
	}
}

func TestChooseLayer(t *testing.T) {
	rids := []string{"c", "a", "b"} // index order as received
	all := uint32(0b111)
	cases := []struct {
		name  string
		avail uint32
		p     Preferences
		want  string
	}{
		{"no preference takes the best receiving layer", all, Preferences{}, "a"},
		{"preferred and receiving", all, Preferences{PreferredRid: "b"}, "b"},
		{"preferred missing, none waits for it", 0b011, Preferences{PreferredRid: "b", RidNotAvailable: "none"}, "b"},
		{"preferred missing, asciibetical steps down", 0b011, Preferences{PreferredRid: "b", RidNotAvailable: "asciibetical"}, "c"},
		{"nothing below, asciibetical steps up", 0b010, Preferences{PreferredRid: "c", RidNotAvailable: "asciibetical"}, "a"},
		{"unknown rid falls back to best", 0b100, Preferences{PreferredRid: "zz"}, "b"},
	}
	for _, c := range cases {
		if got := rids[chooseLayer(rids, c.avail, c.p)]; got != c.want {
			t.Errorf("%s: got %q want %q", c.name, got, c.want)
		}
	}
}

func TestKeyframeDetection(t *testing.T) {
	cases := []struct {
		name string
		f    codecFamily
		p    []byte
		want bool
	}{
		{"vp8 key", familyVP8, []byte{0x10, 0x00}, true},
		{"vp8 delta", familyVP8, []byte{0x10, 0x01}, false},
		{"vp8 continuation", familyVP8, []byte{0x00, 0x00}, false},
		{"vp8 key with picture id", familyVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 truncated", familyVP8, []byte{0x90}, false},
		{"h264 idr", familyH264, []byte{0x65}, true},
		{"h264 sps in stap-a", familyH264, []byte{0x18, 0x00, 0x02, 0x67, 0x42}, true},
		{"h264 fu-a idr start", familyH264, []byte{0x7c, 0x85}, true},
		{"h264 non-idr", familyH264, []byte{0x41}, false},
		{"vp9 key", familyVP9, []byte{0x08}, true},
		{"vp9 inter", familyVP9, []byte{0x48}, false},
		{"audio always", familyAudio, nil, true},
	}
	for _, c := range cases {
		if got := isKeyframe(c.f, c.p); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

func TestForwardingAllocatesNothing(t *testing.T) {
	tr, pkt := fanOut(t, 50)
	idx := 0
	allocs := testing.AllocsPerRun(1000, func() { tr.Ingest(idx, pkt) })
	if allocs != 0 {
		t.Fatalf("%.1f allocations per forwarded packet", allocs)
	}
}

func fanOut(t testing.TB, n int) (*Track, []byte) {
	tr := NewTrack(TrackConfig{ID: "bench", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	tr.EnsureLayer("")
	gate := &Gate{} // as in a session: every down track behind an open gate
	gate.SetOpen(true)
	for i := 0; i < n; i++ {
		d := NewDownTrack("t", "s", webrtc.RTPCodecTypeVideo, vp8)
		d.SetGate(gate)
		if _, err := d.Bind(&fakeCtx{ssrc: webrtc.SSRC(1000 + i), w: &captureWriter{}, codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: vp8, PayloadType: 120}}}); err != nil {
			t.Fatal(err)
		}
		if err := d.SetSource(tr); err != nil {
			t.Fatal(err)
		}
	}
	pkt := packet(t, 1, 1, 1, true, 9)
	pkt = append(pkt[:len(pkt):len(pkt)], make([]byte, 1100)...) // a 1.2 kB video packet
	tr.Ingest(0, pkt)
	return tr, pkt
}

// BenchmarkFanOut measures the SFU's own per-packet work for one published
// packet fanned out to N down tracks (writer = no-op; SRTP and the socket
// are measured by make bench). ns/op divided by N is the cost per forwarded
// packet; allocs/op must be 0.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100, 300} {
		b.Run(benchName(n), func(b *testing.B) {
			tr, pkt := fanOut(b, n)
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt) * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Ingest(0, pkt)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/forwarded")
		})
	}
}

func benchName(n int) string {
	return "subscribers=" + itoa(n)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// rtcpFeed yields queued RTCP batches, then fails.
type rtcpFeed struct{ batches [][]rtcp.Packet }

func (f *rtcpFeed) ReadRTCP() ([]rtcp.Packet, interceptor.Attributes, error) {
	if len(f.batches) == 0 {
		return nil, nil, io.EOF
	}
	b := f.batches[0]
	f.batches = f.batches[1:]
	return b, nil, nil
}

func TestNackIsAnsweredFromTheSharedRing(t *testing.T) {
	w := &captureWriter{keep: true}
	d := bound(t, w, 77)
	tr := NewTrack(TrackConfig{Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	i := tr.EnsureLayer("")
	_ = d.SetSource(tr)
	for seq := uint16(10); seq < 20; seq++ {
		tr.Ingest(i, packet(t, 1, seq, uint32(seq)*100, true, byte(seq)))
	}
	lost := w.headers[3] // pretend the subscriber lost the 4th packet
	nack := &rtcp.TransportLayerNack{MediaSSRC: 77, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{lost.SequenceNumber, lost.SequenceNumber + 500})}
	// The same NACK four times: at most three resends of one packet.
	d.ServeRTCP(&rtcpFeed{batches: [][]rtcp.Packet{{nack}, {nack}, {nack}, {nack}}})
	resent := w.headers[10:]
	if len(resent) != maxResends {
		t.Fatalf("resent %d packets, want %d (one per NACK, capped)", len(resent), maxResends)
	}
	for k, h := range resent {
		if h.SequenceNumber != lost.SequenceNumber || h.Timestamp != lost.Timestamp || h.SSRC != 77 || h.PayloadType != 120 {
			t.Fatalf("resend %d: %+v, want the header of %+v", k, h, lost)
		}
		if !bytes.Equal(w.payload[10+k], w.payload[3]) {
			t.Fatalf("resend %d payload differs", k)
		}
	}
}

func TestPriorityOrderingStepsDownUnderLossAndBackUp(t *testing.T) {
	d := bound(t, &captureWriter{}, 9)
	tr := NewTrack(TrackConfig{Kind: webrtc.RTPCodecTypeVideo, Codec: vp8, Rids: []string{"a", "b", "c"}})
	_ = d.SetSource(tr)
	for _, rid := range []string{"a", "b", "c"} {
		tr.Ingest(tr.EnsureLayer(rid), packet(t, 1, 1, 1, true, 1))
	}
	target := func() string { _, tg := d.Layer(); return tg }
	d.SetPreferences(Preferences{PreferredRid: "a", PriorityOrdering: OrderAsciibetical})
	if target() != "a" {
		t.Fatalf("start: %q", target())
	}
	sec := int64(time.Second)
	now := time.Now().UnixNano()
	d.onLoss(9, 60, now)
	d.onLoss(9, 60, now+1*sec)
	if target() != "a" {
		t.Fatal("one second of loss must not step down yet")
	}
	d.onLoss(9, 60, now+2*sec)
	if target() != "b" {
		t.Fatalf("after 2 s of 23%% loss: %q", target())
	}
	d.onLoss(9, 60, now+5*sec)
	if target() != "c" {
		t.Fatalf("still lossy: %q", target())
	}
	d.onLoss(9, 0, now+6*sec)
	d.onLoss(9, 0, now+16*sec)
	if target() != "b" {
		t.Fatalf("after 10 s clean: %q", target())
	}
	// With priorityOrdering none the preferred layer is kept whatever the loss.
	d.SetPreferences(Preferences{PreferredRid: "a", PriorityOrdering: OrderNone})
	d.onLoss(9, 200, now+20*sec)
	d.onLoss(9, 200, now+30*sec)
	if target() != "a" {
		t.Fatalf("priorityOrdering none: %q", target())
	}
}
