package sfu_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

const (
	appA    = "0123456789abcdef0123456789abcdef"
	secretA = "secret-of-app-a-0123456789abcdef0123456789"
	appB    = "fedcba9876543210fedcba9876543210"
	secretB = "secret-of-app-b-0123456789abcdef0123456789"
)

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testConfig(mut ...func(*config.App)) *config.Pod {
	a := config.App{ID: appA, Name: "default/a", SecretSHA256: hashHex(secretA)}
	b := config.App{ID: appB, Name: "default/b", SecretSHA256: hashHex(secretB)}
	for _, m := range mut {
		m(&a)
	}
	return &config.Pod{Version: "test", Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478}, Apps: []config.App{a, b}}
}

type env struct {
	t     testing.TB
	srv   *sfu.Server
	http  *httptest.Server
	clock *clock.Fake
}

type envOpt struct {
	cfg       *config.Pod
	fakeClock bool
	maxBody   int64
	maxSDP    int
	hooks     sfu.Hooks
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SFU_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	if o.cfg == nil {
		o.cfg = testConfig()
	}
	e := &env{t: t}
	opts := sfu.Options{Config: o.cfg, UDPAddr: "127.0.0.1:0", AdvertiseIPs: []string{"127.0.0.1"},
		Logger: testLogger(), MaxBodyBytes: o.maxBody, MaxSDPBytes: o.maxSDP, Hooks: o.hooks}
	if o.fakeClock {
		e.clock = clock.NewFake(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC))
		opts.Clock = e.clock
		opts.SweepEvery = -1
	}
	srv, err := sfu.New(opts)
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return e
}

// call does one API request and decodes the JSON answer into out (if non-nil).
func (e *env) call(method, path, secret string, body any, out any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func (e *env) newSession(app, secret string) string {
	e.t.Helper()
	var out struct {
		SessionID string `json:"sessionId"`
	}
	st, raw := e.call("POST", "/v1/apps/"+app+"/sessions/new", secret, nil, &out)
	if st != http.StatusCreated || len(out.SessionID) != 32 {
		e.t.Fatalf("sessions/new: %d %s", st, raw)
	}
	return out.SessionID
}

func (e *env) tracksNew(app, secret, sid string, req session.TracksRequest) session.TracksResponse {
	e.t.Helper()
	var out session.TracksResponse
	st, raw := e.call("POST", "/v1/apps/"+app+"/sessions/"+sid+"/tracks/new", secret, req, &out)
	if st != http.StatusOK {
		e.t.Fatalf("tracks/new: %d %s", st, raw)
	}
	return out
}

// peer is a Pion endpoint on loopback playing the browser's part.
type peer struct {
	t  testing.TB
	pc *webrtc.PeerConnection

	mu       sync.Mutex
	received map[string]*recvStats // by mid
	stop     chan struct{}
	wg       sync.WaitGroup
	plis     atomic.Int64
}

type recvStats struct {
	packets atomic.Int64
	bad     atomic.Int64
	tags    sync.Map // tag string -> count
	lastTag atomic.Value
	ssrc    uint32
	mime    string
}

func newPeer(t testing.TB) *peer { return newPeerWith(t, nil) }

// newPeerWith lets a test change the peer's settings (e.g. ICE-lite).
func newPeerWith(t testing.TB, tune func(*webrtc.SettingEngine)) *peer {
	t.Helper()
	m, err := transport.MediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if tune != nil {
		tune(&se)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, pc: pc, received: map[string]*recvStats{}, stop: make(chan struct{})}
	pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		mid := ""
		for _, x := range pc.GetTransceivers() {
			if x.Receiver() == r {
				mid = x.Mid()
			}
		}
		rs := p.stats(mid)
		rs.ssrc = uint32(tr.SSRC())
		rs.mime = tr.Codec().MimeType
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				tag, ok := checkPayload(pkt.Payload)
				if !ok {
					rs.bad.Add(1)
					continue
				}
				rs.packets.Add(1)
				rs.lastTag.Store(tag)
				v, _ := rs.tags.LoadOrStore(tag, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	})
	t.Cleanup(p.close)
	return p
}

func (p *peer) stats(mid string) *recvStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.received[mid]
	if rs == nil {
		rs = &recvStats{}
		p.received[mid] = rs
	}
	return rs
}

func (p *peer) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.pc.Close()
	p.wg.Wait()
}

// makePayload builds a payload that carries a tag and a counter and whose
// remaining bytes are derived from both, so corruption is detected. For VP8
// the first two bytes form a keyframe descriptor when key is true.
func makePayload(tag string, n uint32, key bool) []byte {
	b := make([]byte, 2, 200)
	b[0] = 0x10
	if key {
		b[1] = 0x00
	} else {
		b[1] = 0x01
	}
	b = append(b, byte(len(tag)))
	b = append(b, tag...)
	b = binary.BigEndian.AppendUint32(b, n)
	for i := 0; i < 150; i++ {
		b = append(b, byte(uint32(i)*7+n+uint32(len(tag))))
	}
	return b
}

func checkPayload(b []byte) (string, bool) {
	if len(b) < 3 {
		return "", false
	}
	l := int(b[2])
	if len(b) < 3+l+4+150 {
		return "", false
	}
	tag := string(b[3 : 3+l])
	n := binary.BigEndian.Uint32(b[3+l:])
	rest := b[3+l+4:]
	for i := 0; i < 150; i++ {
		if rest[i] != byte(uint32(i)*7+n+uint32(len(tag))) {
			return "", false
		}
	}
	return tag, true
}

// sender writes tagged packets on a local track until stopped.
type sender struct {
	track   *webrtc.TrackLocalStaticRTP
	tag     atomic.Value
	keyOnly atomic.Bool // every packet a keyframe
	keyNext atomic.Bool // next packet is a keyframe
	paused  atomic.Bool
	sent    atomic.Int64
	// rid senders write the mid and rid header extensions themselves, as
	// browsers do (Pion's sender does not add them).
	rid string
	rtp *webrtc.RTPTransceiver
}

func (p *peer) addTrack(kind webrtc.RTPCodecType, tag string, dir webrtc.RTPTransceiverDirection, rids ...string) (*webrtc.RTPTransceiver, []*sender) {
	p.t.Helper()
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if kind == webrtc.RTPCodecTypeAudio {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	mk := func(rid string) *sender {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, tag, "stream-"+tag, opts...)
		if err != nil {
			p.t.Fatal(err)
		}
		s := &sender{track: tr, rid: rid}
		s.tag.Store(tag + rid)
		s.keyOnly.Store(true)
		return s
	}
	var senders []*sender
	if len(rids) == 0 {
		senders = append(senders, mk(""))
	} else {
		for _, r := range rids {
			senders = append(senders, mk(r))
		}
	}
	t, err := p.pc.AddTransceiverFromTrack(senders[0].track, webrtc.RTPTransceiverInit{Direction: dir})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, s := range senders[1:] {
		if err := t.Sender().AddEncoding(s.track); err != nil {
			p.t.Fatal(err)
		}
	}
	for _, s := range senders {
		s.rtp = t
	}
	for _, s := range senders {
		p.wg.Add(1)
		go p.readRTCP(t, s, senders)
	}
	for _, s := range senders {
		p.startSending(s, kind)
	}
	return t, senders
}

// readRTCP reads one encoding's RTCP; a PLI makes every layer send a keyframe.
func (p *peer) readRTCP(t *webrtc.RTPTransceiver, s *sender, senders []*sender) {
	defer p.wg.Done()
	for {
		read := t.Sender().ReadRTCP
		if s.rid != "" {
			read = func() ([]rtcp.Packet, interceptor.Attributes, error) { return t.Sender().ReadSimulcastRTCP(s.rid) }
		}
		pkts, _, err := read()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			if _, ok := pk.(*rtcp.PictureLossIndication); ok {
				p.plis.Add(1)
				for _, s := range senders {
					s.keyNext.Store(true)
				}
			}
		}
	}
}

func (p *peer) startSending(s *sender, kind webrtc.RTPCodecType) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var n uint32
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			if s.paused.Load() {
				continue
			}
			n++
			key := s.keyOnly.Load() || s.keyNext.Swap(false) || kind == webrtc.RTPCodecTypeAudio
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: n * 960},
				Payload: makePayload(s.tag.Load().(string), n, key)}
			if s.rid != "" {
				for _, ext := range s.rtp.Sender().GetParameters().HeaderExtensions {
					switch ext.URI {
					case sdp.SDESMidURI:
						_ = pkt.Header.SetExtension(uint8(ext.ID), []byte(s.rtp.Mid()))
					case sdp.SDESRTPStreamIDURI:
						_ = pkt.Header.SetExtension(uint8(ext.ID), []byte(s.rid))
					}
				}
			}
			if err := s.track.WriteRTP(pkt); err == nil {
				s.sent.Add(1)
			}
		}
	}()
}

func (p *peer) offer() *session.SessionDescription {
	p.t.Helper()
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(o); err != nil {
		p.t.Fatal(err)
	}
	<-gathered
	return &session.SessionDescription{Type: "offer", SDP: p.pc.LocalDescription().SDP}
}

func (p *peer) setAnswer(sd *session.SessionDescription) {
	p.t.Helper()
	if sd == nil || sd.Type != "answer" {
		p.t.Fatalf("expected an answer, got %+v", sd)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.SDP}); err != nil {
		p.t.Fatalf("set answer: %v", err)
	}
}

// answer applies an SFU offer and returns the peer's answer.
func (p *peer) answer(sd *session.SessionDescription) *session.SessionDescription {
	p.t.Helper()
	if sd == nil || sd.Type != "offer" {
		p.t.Fatalf("expected an offer, got %+v", sd)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.SDP}); err != nil {
		p.t.Fatalf("set offer: %v", err)
	}
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(a); err != nil {
		p.t.Fatal(err)
	}
	<-gathered
	return &session.SessionDescription{Type: "answer", SDP: p.pc.LocalDescription().SDP}
}

func (p *peer) waitConnected() {
	p.t.Helper()
	waitFor(p.t, 15*time.Second, "peer connected", func() bool {
		return p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
}

// waitMedia waits until mid received at least n intact packets tagged tag.
func (p *peer) waitMedia(mid, tag string, n int64) {
	p.t.Helper()
	waitFor(p.t, 15*time.Second, fmt.Sprintf("%d packets tagged %q on mid %s", n, tag, mid), func() bool {
		return p.count(mid, tag) >= n
	})
	if bad := p.stats(mid).bad.Load(); bad > 0 {
		p.t.Fatalf("mid %s: %d corrupted payloads", mid, bad)
	}
}

func (p *peer) count(mid, tag string) int64 {
	v, ok := p.stats(mid).tags.Load(tag)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func apiPath(app, sid, rest string) string {
	return "/v1/apps/" + app + "/sessions/" + sid + rest
}

// sendOnOffered adds a sending track to the transceiver the SFU offered
// (after answer() applied the offer) and starts sending on it.
func (p *peer) sendOnOffered(kind webrtc.RTPCodecType, tag string) *sender {
	p.t.Helper()
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	if kind == webrtc.RTPCodecTypeVideo {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(codec, tag, "stream-"+tag)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.pc.AddTrack(tr); err != nil {
		p.t.Fatal(err)
	}
	s := &sender{track: tr}
	s.tag.Store(tag)
	s.keyOnly.Store(true)
	p.startSending(s, kind)
	return s
}

// applyOffer sets an SFU offer without answering yet.
func (p *peer) applyOffer(sd *session.SessionDescription) {
	p.t.Helper()
	if sd == nil || sd.Type != "offer" {
		p.t.Fatalf("expected an offer, got %+v", sd)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.SDP}); err != nil {
		p.t.Fatalf("set offer: %v", err)
	}
}

// finishAnswer creates and sets the answer to an applied offer.
func (p *peer) finishAnswer() *session.SessionDescription {
	p.t.Helper()
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(a); err != nil {
		p.t.Fatal(err)
	}
	<-gathered
	return &session.SessionDescription{Type: "answer", SDP: p.pc.LocalDescription().SDP}
}

func (e *env) renegotiate(app, secret, sid string, sd *session.SessionDescription) {
	e.t.Helper()
	var out map[string]any
	st, raw := e.call("PUT", apiPath(app, sid, "/renegotiate"), secret, map[string]any{"sessionDescription": sd}, &out)
	if st != http.StatusOK || len(out) != 0 {
		e.t.Fatalf("renegotiate: %d %s", st, raw)
	}
}

func (e *env) state(app, secret, sid string) session.State {
	e.t.Helper()
	var st session.State
	code, raw := e.call("GET", apiPath(app, sid, ""), secret, nil, &st)
	if code != http.StatusOK {
		e.t.Fatalf("GET session: %d %s", code, raw)
	}
	return st
}

func trackStatus(st session.State, location, mid string) string {
	for _, t := range st.Tracks {
		if t.Location == location && t.Mid == mid {
			return t.Status
		}
	}
	return "absent"
}

// midsOf lists the a=mid values of an SDP in order.
func midsOf(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "a=mid:"); ok {
			out = append(out, m)
		}
	}
	return out
}
