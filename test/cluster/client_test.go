//go:build cluster

package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// calls is a Calls API client for one app.
type calls struct {
	base, appID, secret string
	http                *http.Client
}

func (c *calls) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+"/v1/apps/"+c.appID+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, raw, err
}

func (c *calls) call(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	st, raw, err := c.do(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	if st != want {
		t.Fatalf("%s %s: %d %s (want %d)", method, path, st, raw, want)
	}
	return raw
}

func (c *calls) newSession(t *testing.T) string {
	t.Helper()
	var out struct {
		SessionID string `json:"sessionId"`
	}
	raw := c.call(t, "POST", "/sessions/new", nil, http.StatusCreated)
	if json.Unmarshal(raw, &out) != nil || len(out.SessionID) != 32 {
		t.Fatalf("sessions/new: %s", raw)
	}
	return out.SessionID
}

// ordinal is the pod a session lives on: its ID's last 4 hex characters
// (docs/fleet.md).
func ordinal(t *testing.T, sid string) int {
	t.Helper()
	n, err := strconv.ParseUint(sid[len(sid)-4:], 16, 16)
	if err != nil {
		t.Fatalf("session %s: no ordinal: %v", sid, err)
	}
	return int(n)
}

type sdpBody struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type tracksResp struct {
	SessionDescription *sdpBody `json:"sessionDescription"`
	Tracks             []struct {
		Mid              string `json:"mid"`
		TrackName        string `json:"trackName"`
		ErrorCode        string `json:"errorCode"`
		ErrorDescription string `json:"errorDescription"`
	} `json:"tracks"`
}

func (c *calls) tracks(t *testing.T, path string, body any) tracksResp {
	t.Helper()
	st, raw, err := c.do("POST", path, body)
	if err != nil {
		t.Fatal(err)
	}
	return checkTracks(t, path, st, raw)
}

// checkTracks decodes a tracks/new answer and fails on any error in it.
func checkTracks(t *testing.T, path string, st int, raw []byte) tracksResp {
	t.Helper()
	if st != http.StatusOK {
		t.Fatalf("POST %s: %d %s (want 200)", path, st, raw)
	}
	var r tracksResp
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: %v: %s", path, err, raw)
	}
	for _, tr := range r.Tracks {
		if tr.ErrorCode != "" {
			t.Fatalf("%s: track %s: %s %s", path, tr.TrackName, tr.ErrorCode, tr.ErrorDescription)
		}
	}
	return r
}

// newPeer is a Pion PeerConnection that gathers host candidates on the
// netns' own addresses (node and bridge), never loopback, IPv4 UDP only.
func newPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.To4() != nil && !ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func localSDP(t *testing.T, pc *webrtc.PeerConnection, d webrtc.SessionDescription) *sdpBody {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-done
	return &sdpBody{Type: pc.LocalDescription().Type.String(), SDP: pc.LocalDescription().SDP}
}

// Video frames: frameSize bytes each, sent as framePackets RTP packets with
// a one-byte VP8 payload descriptor (S set on the first), at frameRate. A
// frame's first byte is the VP8 frame tag (P bit clear on keyframes), the
// next four its number, the rest derive from the number, so the receiver
// can rebuild each frame from its packets and check every byte.
const (
	frameSize    = 2400
	framePackets = 3
	frameRate    = 30
	keyEvery     = 30
)

func frame(n uint32, key bool) []byte {
	b := make([]byte, frameSize)
	b[0] = 0x11 // show_frame, P=1: inter frame
	if key {
		b[0] = 0x10
	}
	binary.BigEndian.PutUint32(b[1:], n)
	for i := 5; i < len(b); i++ {
		b[i] = byte(uint32(i)*31 + n*7)
	}
	return b
}

// checkFrame returns the frame's number if every byte is what frame wrote.
func checkFrame(b []byte) (uint32, bool) {
	if len(b) != frameSize {
		return 0, false
	}
	n := binary.BigEndian.Uint32(b[1:])
	want := frame(n, b[0]&1 == 0)
	return n, bytes.Equal(b, want)
}

// publisher sends VP8 frames on one track until stopped; a PLI or FIR
// makes the next frame a keyframe.
type publisher struct {
	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticRTP
	keyNext atomic.Bool
	keyReqs atomic.Int64
	frames  atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newPublisher(t *testing.T) *publisher {
	t.Helper()
	p := &publisher{pc: newPeer(t), stop: make(chan struct{})}
	var err error
	p.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p.pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.keyReqs.Add(1)
					p.keyNext.Store(true)
				}
			}
		}
	}()
	return p
}

func (p *publisher) start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(time.Second / frameRate)
		defer tick.Stop()
		seq := uint16(0)
		for n := uint32(0); ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			key := n%keyEvery == 0 || p.keyNext.Swap(false)
			f := frame(n, key)
			per := len(f) / framePackets
			for i := 0; i < framePackets; i++ {
				desc := byte(0x00)
				if i == 0 {
					desc = 0x10 // S: start of partition 0
				}
				chunk := f[i*per : (i+1)*per]
				payload := append([]byte{desc}, chunk...)
				seq++
				_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq,
					Timestamp: n * (90000 / frameRate), Marker: i == framePackets-1}, Payload: payload})
			}
			p.frames.Add(1)
		}
	}()
}

func (p *publisher) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// subscriber rebuilds frames from the pulled track and checks each one.
type subscriber struct {
	name      string
	pc        *webrtc.PeerConnection
	good, bad atomic.Int64
	lastAt    atomic.Int64 // unix nanos of the last good frame
	lastN     atomic.Int64
}

func newSubscriber(t *testing.T, name string) *subscriber {
	t.Helper()
	s := &subscriber{name: name, pc: newPeer(t)}
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sb := samplebuilder.New(128, &codecs.VP8Packet{}, 90000)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(pkt)
			for smp := sb.Pop(); smp != nil; smp = sb.Pop() {
				if n, ok := checkFrame(smp.Data); ok {
					s.good.Add(1)
					s.lastN.Store(int64(n))
					s.lastAt.Store(time.Now().UnixNano())
				} else {
					s.bad.Add(1)
				}
			}
		}
	})
	return s
}

// since is how long ago the last good frame arrived.
func (s *subscriber) since() time.Duration {
	at := s.lastAt.Load()
	if at == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(time.Unix(0, at))
}
