package relay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	prefix      = "/relay/"
	tokenHeader = "X-Test-Token"
)

var opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}

// chanReader feeds packets to a source track's read loop.
type chanReader struct {
	ch   chan []byte
	done chan struct{}
}

func (c *chanReader) Read(b []byte) (int, interceptor.Attributes, error) {
	select {
	case p := <-c.ch:
		return copy(b, p), nil, nil
	case <-c.done:
		return 0, nil, io.EOF
	}
}

// capture is a down track's write stream that records payload counters.
type capture struct {
	mu    sync.Mutex
	seen  []uint32
	ssrc  uint32
	total atomic.Int64
}

func (c *capture) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	c.mu.Lock()
	c.seen = append(c.seen, binary.BigEndian.Uint32(p))
	c.ssrc = h.SSRC
	c.mu.Unlock()
	c.total.Add(1)
	return len(p), nil
}
func (c *capture) Write(b []byte) (int, error) { return len(b), nil }

type bindCtx struct{ w webrtc.TrackLocalWriter }

func (c bindCtx) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: opus, PayloadType: 111}}
}
func (bindCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (bindCtx) SSRC() webrtc.SSRC                                      { return 4242 }
func (bindCtx) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (bindCtx) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c bindCtx) WriteStream() webrtc.TrackLocalWriter                 { return c.w }
func (bindCtx) ID() string                                             { return "t" }
func (bindCtx) RTCPReader() interceptor.RTCPReader                     { return nil }

// subscribe attaches a bound down track to t and returns what it writes.
func subscribe(t *testing.T, tr *forward.Track) (*capture, *forward.DownTrack) {
	t.Helper()
	c := &capture{}
	d := forward.NewDownTrack("sub", "sub", webrtc.RTPCodecTypeAudio, opus)
	if _, err := d.Bind(bindCtx{w: c}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSource(tr); err != nil {
		t.Fatal(err)
	}
	return c, d
}

func packet(n uint32) []byte {
	payload := make([]byte, 40)
	binary.BigEndian.PutUint32(payload, n)
	for i := 4; i < len(payload); i++ {
		payload[i] = byte(n) + byte(i)
	}
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(n), Timestamp: n * 960, SSRC: 1234},
		Payload: payload}).Marshal()
	return b
}

type pod struct {
	srv    *relay.Server
	http   *httptest.Server
	client *relay.Client
	now    atomic.Int64
	mu     sync.Mutex
	tracks map[string]*forward.Track
	chans  map[string]*fakeChannel
}

func newPod(t *testing.T) *pod {
	t.Helper()
	p := &pod{tracks: map[string]*forward.Track{}}
	p.now.Store(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC).UnixNano())
	p.srv = relay.NewServer(func(app, sid, name string) (*forward.Track, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if tr := p.tracks[app+"/"+sid+"/"+name]; tr != nil && !tr.Closed() {
			return tr, nil
		}
		return nil, errors.New("no such track")
	}, nil)
	mux := http.NewServeMux()
	mux.Handle("GET "+prefix+"{appId}/{sessionId}/{trackName}", p.srv)
	mux.Handle("GET "+prefix+"{appId}/{sessionId}/datachannels/{name}", p.srv.ChannelHandler(p.lookupChannel))
	// Short server timeouts, as the API server has (30 s there): they must
	// not end a relay stream.
	p.http = httptest.NewUnstartedServer(mux)
	p.http.Config.ReadTimeout, p.http.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	p.http.Start()
	p.client = relay.NewClient(relay.ClientOptions{Token: func() string { return "tok" }, TokenHeader: tokenHeader, Prefix: prefix,
		SweepEvery: -1, Now: func() time.Time { return time.Unix(0, p.now.Load()) }})
	t.Cleanup(func() {
		p.client.Close()
		p.srv.Close()
		p.http.Close()
	})
	return p
}

func (p *pod) addr() string { return strings.TrimPrefix(p.http.URL, "http://") }

// publish makes a live audio track on p fed by the returned reader.
func (p *pod) publish(t *testing.T, name string, kf func(uint32)) (*forward.Track, *chanReader) {
	t.Helper()
	tr := forward.NewTrack(forward.TrackConfig{ID: name, Kind: webrtc.RTPCodecTypeAudio, Codec: opus, RequestKeyframe: kf})
	r := &chanReader{ch: make(chan []byte, 64), done: make(chan struct{})}
	if err := tr.AddLayer("", 1234, r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(r.done); tr.Close() })
	p.mu.Lock()
	p.tracks["app/sid/"+name] = tr
	p.mu.Unlock()
	return tr, r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRelayCarriesPacketsInOrderAndKeyframeRequestsBack(t *testing.T) {
	a, b := newPod(t), newPod(t)
	var kfs atomic.Int64
	var kfSSRC atomic.Uint32
	src, in := a.publish(t, "mic", func(ssrc uint32) { kfs.Add(1); kfSSRC.Store(ssrc) })

	ctx := context.Background()
	t1, err := b.client.Track(ctx, a.addr(), "app", "sid", "mic")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := b.client.Track(ctx, a.addr(), "app", "sid", "mic")
	if err != nil || t2 != t1 || b.client.Relays() != 1 {
		t.Fatalf("second pull must share the relay: %v, same=%v, relays=%d", err, t2 == t1, b.client.Relays())
	}
	if t1.Codec().MimeType != webrtc.MimeTypeOpus || t1.Kind() != webrtc.RTPCodecTypeAudio {
		t.Fatalf("relayed track is %s %s", t1.Kind(), t1.Codec().MimeType)
	}
	sub1, _ := subscribe(t, t1)
	sub2, _ := subscribe(t, t1)
	// The pull returns once the source pod answered the upgrade; its stream
	// attaches to the publication just after, so the first packets may come
	// before it. Feed packets until both subscribers have 50: from the first
	// one a subscriber sees, none may be missing or out of order.
	n := uint32(0)
	waitFor(t, "50 packets at both subscribers", func() bool {
		if n < 1000 {
			n++
			in.ch <- packet(n)
		}
		return sub1.total.Load() >= 50 && sub2.total.Load() >= 50
	})
	sub1.mu.Lock()
	for i, c := range sub1.seen {
		if c != sub1.seen[0]+uint32(i) {
			t.Fatalf("packet %d carries counter %d after starting at %d: reordered or lost", i, c, sub1.seen[0])
		}
	}
	ssrc := sub1.ssrc
	sub1.mu.Unlock()
	if ssrc != 4242 {
		t.Fatalf("subscriber's SSRC %d, want its own 4242", ssrc)
	}
	if a.srv.Streams() != 1 {
		t.Fatalf("source sends %d streams, want 1", a.srv.Streams())
	}

	// Past the keyframe debounce of the attach requests on both pods (the
	// source pod's track runs on the wall clock, B's on its injected one).
	time.Sleep(600 * time.Millisecond)
	b.now.Add(int64(time.Second))
	seen := sub1.total.Load()
	for i := uint32(1); i <= 10; i++ {
		in.ch <- packet(n + i)
	}
	waitFor(t, "packets after the server's read and write timeouts", func() bool { return sub1.total.Load() >= seen+10 })
	before := kfs.Load()
	t1.RequestKeyframe(0)
	waitFor(t, "keyframe request at the source", func() bool { return kfs.Load() > before })
	if kfSSRC.Load() != 1234 {
		t.Fatalf("keyframe asked for SSRC %d, want the publisher's 1234", kfSSRC.Load())
	}

	// The publication ends on the source pod: the relayed track closes.
	src.Close()
	waitFor(t, "relayed track closed", t1.Closed)
	waitFor(t, "relay gone on both pods", func() bool { return b.client.Relays() == 0 && a.srv.Streams() == 0 })
}

func TestRelayOfUnknownTrackIsNotFound(t *testing.T) {
	a, b := newPod(t), newPod(t)
	_, err := b.client.Track(context.Background(), a.addr(), "app", "sid", "nope")
	if !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if b.client.Relays() != 0 {
		t.Fatal("a failed open left a relay")
	}
}

func TestRelayWithoutSubscribersOrPacketsIsClosedBySweep(t *testing.T) {
	a, b := newPod(t), newPod(t)
	_, in := a.publish(t, "mic", nil)
	t1, err := b.client.Track(context.Background(), a.addr(), "app", "sid", "mic")
	if err != nil {
		t.Fatal(err)
	}
	_, d := subscribe(t, t1)
	in.ch <- packet(1)
	waitFor(t, "first packet relayed", func() bool { n, _ := t1.Stats(); return n > 0 })
	// A subscriber keeps it past the unused grace while packets flow.
	b.now.Add(int64(relay.DefaultUnusedGrace) + int64(time.Second))
	in.ch <- packet(2)
	waitFor(t, "second packet", func() bool { n, _ := t1.Stats(); return n > 1 })
	b.client.Sweep()
	if t1.Closed() {
		t.Fatal("relay with a subscriber closed by the sweep")
	}
	// No packet for the track timeout: closed.
	b.now.Add(int64(relay.DefaultTrackTimeout) + int64(time.Second))
	b.client.Sweep()
	if !t1.Closed() {
		t.Fatal("silent relay still open after the track timeout")
	}
	d.Close()

	// A relay nobody subscribes to is closed after the unused grace.
	t2, err := b.client.Track(context.Background(), a.addr(), "app", "sid", "mic")
	if err != nil {
		t.Fatal(err)
	}
	in.ch <- packet(3)
	waitFor(t, "packet on the new relay", func() bool { n, _ := t2.Stats(); return n > 0 })
	b.client.Sweep()
	if t2.Closed() {
		t.Fatal("closed before the unused grace")
	}
	b.now.Add(int64(relay.DefaultUnusedGrace) + int64(time.Second))
	in.ch <- packet(4) // still fresh, only unused
	waitFor(t, "packet 4", func() bool { n, _ := t2.Stats(); return n > 1 })
	b.client.Sweep()
	if !t2.Closed() {
		t.Fatal("unused relay still open after the grace")
	}
	waitFor(t, "relay gone", func() bool { return b.client.Relays() == 0 && a.srv.Streams() == 0 })
}

// rig is a publication on pod A relayed to one subscriber's down track on
// pod B over loopback TCP, both pods in this process.
type rig struct {
	src          *forward.Track
	idx          int
	pkts         [][]byte
	got, latency atomic.Int64
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	r := &rig{}
	r.src = forward.NewTrack(forward.TrackConfig{ID: "mic", Kind: webrtc.RTPCodecTypeAudio, Codec: opus})
	r.idx = r.src.EnsureLayer("")
	srv := relay.NewServer(func(_, _, _ string) (*forward.Track, error) { return r.src, nil }, nil)
	mux := http.NewServeMux()
	mux.Handle("GET "+prefix+"{appId}/{sessionId}/{trackName}", srv)
	hs := httptest.NewServer(mux)
	cl := relay.NewClient(relay.ClientOptions{Token: func() string { return "tok" }, TokenHeader: tokenHeader, Prefix: prefix, SweepEvery: -1})
	tb.Cleanup(func() {
		cl.Close()
		srv.Close()
		hs.Close()
		r.src.Close()
	})
	tr, err := cl.Track(context.Background(), strings.TrimPrefix(hs.URL, "http://"), "app", "sid", "mic")
	if err != nil {
		tb.Fatal(err)
	}
	w := &timedWriter{got: &r.got, latency: &r.latency}
	d := forward.NewDownTrack("sub", "sub", webrtc.RTPCodecTypeAudio, opus)
	if _, err := d.Bind(bindCtx{w: w}); err != nil {
		tb.Fatal(err)
	}
	if err := d.SetSource(tr); err != nil {
		tb.Fatal(err)
	}
	r.pkts = make([][]byte, 1024)
	for i := range r.pkts {
		r.pkts[i] = packet(uint32(i))
	}
	// Warm up until the relay carries packets, then let them drain.
	for n := 0; r.got.Load() == 0; n++ {
		r.src.Ingest(r.idx, stamp(r.pkts[n%len(r.pkts)]))
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Second)
	r.got.Store(0)
	r.latency.Store(0)
	return r
}

// send ingests packet i at the publication, staying well under the
// relay's queue bounds as media pacing does.
func (r *rig) send(i int) {
	r.src.Ingest(r.idx, stamp(r.pkts[i%len(r.pkts)]))
	if i%64 == 63 {
		for r.got.Load() < int64(i)-128 {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// drain waits until n packets arrived (or 5 s passed).
func (r *rig) drain(n int) {
	for deadline := time.Now().Add(5 * time.Second); r.got.Load() < int64(n) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkRelayPacket measures one audio packet from a publication on
// pod A to a subscriber's down track on pod B through the relay (loopback
// TCP), and the added latency.
func BenchmarkRelayPacket(b *testing.B) {
	r := newRig(b)
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.send(i)
	}
	r.drain(b.N)
	b.StopTimer()
	if n := r.got.Load(); n > 0 {
		b.ReportMetric(float64(r.latency.Load())/float64(n)/1e3, "µs-latency")
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/pkt")
		b.ReportMetric(float64(int64(b.N)-n), "lost")
	}
}

// TestRelayHopAllocatesNothingPerPacket counts the process's heap
// allocations while 20,000 packets cross the relay: both pods' per-packet
// paths (source down track, frame queue, socket, destination queue, track)
// must reuse their buffers. A pooled buffer may be refilled after a GC, so
// the bound is 1 allocation per 20 packets, far below the 1 per packet
// any per-packet allocation would cost.
func TestRelayHopAllocatesNothingPerPacket(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random; run without -race")
	}
	r := newRig(t)
	const n = 20000
	for i := 0; i < 2000; i++ { // fill the buffer pools
		r.send(i)
	}
	r.drain(2000)
	r.got.Store(0)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i++ {
		r.send(i)
	}
	r.drain(n)
	runtime.ReadMemStats(&m1)
	if got := r.got.Load(); got != n {
		t.Fatalf("%d of %d packets relayed", got, n)
	}
	per := float64(m1.Mallocs-m0.Mallocs) / n
	t.Logf("%.4f allocations per relayed packet (%d in all)", per, m1.Mallocs-m0.Mallocs)
	if per > 0.05 {
		t.Fatalf("%.3f allocations per relayed packet, want 0 (at most 0.05 for pool refills)", per)
	}
}

// cpuTime is the process's user plus system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// stamp writes the send time into the payload after the counter.
func stamp(p []byte) []byte {
	binary.BigEndian.PutUint64(p[12+4:], uint64(time.Now().UnixNano()))
	return p
}

type timedWriter struct {
	got, latency *atomic.Int64
}

func (w *timedWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) {
	sent := int64(binary.BigEndian.Uint64(p[4:12]))
	w.latency.Add(time.Now().UnixNano() - sent)
	w.got.Add(1)
	return len(p), nil
}
func (w *timedWriter) Write(b []byte) (int, error) { return len(b), nil }

// fakeChannel is a published DataChannel on a test pod.
type fakeChannel struct {
	mu      sync.Mutex
	taps    map[int]func(bool, []byte)
	lost    map[int]func()
	holder  int // tap holding canReply; 0: none, -1: a local subscriber
	replies []string
	next    int
	ended   chan struct{}
}

func (p *pod) publishChannel(name string) *fakeChannel {
	fc := &fakeChannel{taps: map[int]func(bool, []byte){}, lost: map[int]func(){}, ended: make(chan struct{})}
	p.mu.Lock()
	if p.chans == nil {
		p.chans = map[string]*fakeChannel{}
	}
	p.chans["app/sid/"+name] = fc
	p.mu.Unlock()
	return fc
}

func (p *pod) lookupChannel(app, sid, name string) (relay.ChannelOptions, relay.TapFunc, error) {
	p.mu.Lock()
	fc := p.chans[app+"/"+sid+"/"+name]
	p.mu.Unlock()
	if fc == nil {
		return relay.ChannelOptions{}, nil, errors.New("no such channel")
	}
	three := uint16(3)
	return relay.ChannelOptions{Ordered: false, MaxRetransmits: &three}, func(deliver func(bool, []byte), lost func()) (*relay.Tap, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.next++
		id := fc.next
		fc.taps[id] = deliver
		fc.lost[id] = lost
		return &relay.Tap{
			Cancel: func() { fc.mu.Lock(); delete(fc.taps, id); fc.mu.Unlock() },
			Done:   fc.ended,
			Grant:  func(hold bool) { fc.grant(id, hold) },
			Reply: func(isString bool, data []byte) {
				fc.mu.Lock()
				if fc.holder == id {
					fc.replies = append(fc.replies, fmt.Sprintf("%v:%s", isString, data))
				}
				fc.mu.Unlock()
			},
		}, nil
	}, nil
}

// grant moves canReply to id (or releases it), telling a tap that loses it.
func (fc *fakeChannel) grant(id int, hold bool) {
	fc.mu.Lock()
	var lost func()
	switch {
	case hold && fc.holder != id:
		lost = fc.lost[fc.holder]
		fc.holder = id
	case !hold && fc.holder == id:
		fc.holder = 0
	}
	fc.mu.Unlock()
	if lost != nil {
		lost()
	}
}

func (fc *fakeChannel) state() (holder int, replies []string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.holder, append([]string(nil), fc.replies...)
}

// send delivers one message to every tap, as the publisher's channel does.
func (fc *fakeChannel) send(isString bool, data []byte) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, d := range fc.taps {
		d(isString, data)
	}
}

func (fc *fakeChannel) tapCount() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return len(fc.taps)
}

type msgLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *msgLog) deliver(isString bool, data []byte) {
	kind := "bin:"
	if isString {
		kind = "str:"
	}
	l.mu.Lock()
	l.msgs = append(l.msgs, kind+string(data))
	l.mu.Unlock()
}

func (l *msgLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

func TestChannelRelayFansOutMessagesInOrderAndEndsWithThePublication(t *testing.T) {
	a, b := newPod(t), newPod(t)
	fc := a.publishChannel("chat")
	ctx := context.Background()
	ch1, err := b.client.Channel(ctx, a.addr(), "app", "sid", "chat")
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := b.client.Channel(ctx, a.addr(), "app", "sid", "chat")
	if err != nil || ch2 != ch1 || b.client.Channels() != 1 {
		t.Fatalf("second subscription must share the stream: %v, same=%v, channels=%d", err, ch2 == ch1, b.client.Channels())
	}
	if o := ch1.Options(); o.Ordered || o.MaxRetransmits == nil || *o.MaxRetransmits != 3 {
		t.Fatalf("relayed options %+v, want the publisher's (unordered, 3 retransmits)", o)
	}
	var l1, l2 msgLog
	sub1 := ch1.Subscribe(l1.deliver, nil)
	ch1.Subscribe(l2.deliver, nil)
	waitFor(t, "tap on the source pod", func() bool { return fc.tapCount() == 1 })

	big := make([]byte, 100_000) // several frames
	for i := range big {
		big[i] = byte(i * 7)
	}
	var want []string
	for i := 0; i < 200; i++ {
		m := fmt.Sprintf("message %d", i)
		fc.send(i%2 == 0, []byte(m))
		if i%2 == 0 {
			want = append(want, "str:"+m)
		} else {
			want = append(want, "bin:"+m)
		}
		if i == 100 {
			fc.send(false, big)
			want = append(want, "bin:"+string(big))
		}
	}
	fc.send(true, nil) // an empty message stays a message
	want = append(want, "str:")
	for i, l := range []*msgLog{&l1, &l2} {
		waitFor(t, "every message at both subscribers", func() bool { return len(l.all()) >= len(want) })
		if got := l.all(); !slices.Equal(got, want) {
			t.Fatalf("subscriber %d got %d messages, first difference at %d", i, len(got), firstDiff(got, want))
		}
	}
	if a.srv.ChannelStreams() != 1 {
		t.Fatalf("source sends %d channel streams, want 1", a.srv.ChannelStreams())
	}

	// One subscriber leaves: the other still receives.
	sub1.Cancel()
	fc.send(true, []byte("after"))
	waitFor(t, "message after one left", func() bool { return slices.Contains(l2.all(), "str:after") })
	if slices.Contains(l1.all(), "str:after") {
		t.Fatal("a cancelled subscription still receives")
	}

	// The publication ends: the stream closes on both pods.
	close(fc.ended)
	select {
	case <-ch1.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("channel not done after the publication ended")
	}
	waitFor(t, "channel relay gone on both pods", func() bool {
		return b.client.Channels() == 0 && a.srv.ChannelStreams() == 0 && fc.tapCount() == 0
	})
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestChannelRelayEndsWhenSourcePodCloses(t *testing.T) {
	a, b := newPod(t), newPod(t)
	fc := a.publishChannel("chat")
	ch, err := b.client.Channel(context.Background(), a.addr(), "app", "sid", "chat")
	if err != nil {
		t.Fatal(err)
	}
	ch.Subscribe(func(bool, []byte) {}, nil)
	waitFor(t, "tap on the source pod", func() bool { return fc.tapCount() == 1 })
	a.srv.Close()
	select {
	case <-ch.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("channel not done after the source pod closed")
	}
	waitFor(t, "relay gone", func() bool { return b.client.Channels() == 0 && fc.tapCount() == 0 })
	if _, err := b.client.Channel(context.Background(), a.addr(), "app", "sid", "missing"); err == nil {
		t.Fatal("channel from a closed pod opened")
	}
}

func TestChannelRelayOfUnknownChannelIsNotFound(t *testing.T) {
	a, b := newPod(t), newPod(t)
	a.publishChannel("chat")
	if _, err := b.client.Channel(context.Background(), a.addr(), "app", "sid", "nope"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if _, err := b.client.Channel(context.Background(), a.addr(), "app", "other", "chat"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("other session: err = %v, want ErrNotFound", err)
	}
}

func TestUnusedChannelRelayIsClosedBySweep(t *testing.T) {
	a, b := newPod(t), newPod(t)
	fc := a.publishChannel("chat")
	ch, err := b.client.Channel(context.Background(), a.addr(), "app", "sid", "chat")
	if err != nil {
		t.Fatal(err)
	}
	sub := ch.Subscribe(func(bool, []byte) {}, nil)
	// Silence is normal for a DataChannel: a subscribed channel survives
	// any time without messages.
	b.now.Add(int64(time.Hour))
	b.client.Sweep()
	if b.client.Channels() != 1 {
		t.Fatal("a subscribed, silent channel relay was closed")
	}
	sub.Cancel()
	b.client.Sweep()
	if b.client.Channels() != 1 {
		t.Fatal("closed at once when its last subscriber left (a re-subscribe should reuse it)")
	}
	b.now.Add(int64(relay.DefaultUnusedGrace + time.Second))
	b.client.Sweep()
	select {
	case <-ch.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("unused channel relay still open after the grace")
	}
	waitFor(t, "relay gone on both pods", func() bool { return b.client.Channels() == 0 && fc.tapCount() == 0 })
}

func TestChannelRelayCarriesTheReplyGrantAndRepliesBack(t *testing.T) {
	a, b := newPod(t), newPod(t)
	fc := a.publishChannel("chat")
	ch, err := b.client.Channel(context.Background(), a.addr(), "app", "sid", "chat")
	if err != nil {
		t.Fatal(err)
	}
	var lost1, lost2 atomic.Int64
	sub1 := ch.Subscribe(func(bool, []byte) {}, func() { lost1.Add(1) })
	sub2 := ch.Subscribe(func(bool, []byte) {}, func() { lost2.Add(1) })
	waitFor(t, "tap on the source pod", func() bool { return fc.tapCount() == 1 })

	// Without the grant, replies are not sent.
	sub1.Reply(true, []byte("too early"))
	sub1.Grant(true)
	waitFor(t, "the stream holds the grant on the source pod", func() bool { h, _ := fc.state(); return h == 1 })
	sub1.Reply(true, []byte("hello publisher"))
	big := strings.Repeat("r", 40_000) // fragmented
	sub1.Reply(false, []byte(big))
	sub2.Reply(true, []byte("not the holder"))
	waitFor(t, "replies at the publisher", func() bool { _, r := fc.state(); return len(r) >= 2 })
	if _, r := fc.state(); !slices.Equal(r, []string{"true:hello publisher", "false:" + big}) {
		t.Fatalf("publisher got %d replies, want exactly the holder's two in order", len(r))
	}

	// Another subscription on B takes the grant: the first one loses it.
	sub2.Grant(true)
	if lost1.Load() != 1 {
		t.Fatalf("first holder told %d times that it lost the grant, want 1", lost1.Load())
	}
	sub1.Reply(true, []byte("after losing it"))
	sub2.Reply(true, []byte("from the new holder"))
	waitFor(t, "new holder's reply", func() bool { _, r := fc.state(); return len(r) >= 3 })

	// A subscriber on the source pod takes it: B's holder is told.
	fc.grant(-1, true)
	waitFor(t, "B's holder told it lost the grant", func() bool { return lost2.Load() == 1 })
	sub2.Reply(true, []byte("after the source took it"))
	time.Sleep(100 * time.Millisecond)
	if _, r := fc.state(); len(r) != 3 || r[2] != "true:from the new holder" {
		t.Fatalf("replies %q: a subscriber without the grant reached the publisher", r)
	}

	// Taking it back and leaving gives it back on the source pod.
	sub2.Grant(true)
	waitFor(t, "grant back on the stream", func() bool { h, _ := fc.state(); return h == 1 })
	sub2.Cancel()
	waitFor(t, "grant released when its holder left", func() bool { h, _ := fc.state(); return h == 0 })
}
