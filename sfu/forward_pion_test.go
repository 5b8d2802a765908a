package sfu_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

// pionFanOut wires one forward.Track to n subscriber PeerConnections
// through the SFU's real Pion transport (interceptors, SRTP, UDP mux).
// The subscribers do not read, so the process's allocations are the SFU's.
func pionFanOut(tb testing.TB, n int) *feeder {
	tb.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tr, err := transport.New(transport.Config{Conn: conn, AdvertiseIPs: []string{"127.0.0.1"}, Logger: testLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	src := forward.NewTrack(forward.TrackConfig{ID: "bench", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	idx := src.EnsureLayer("")
	var closers []func()
	for i := 0; i < n; i++ {
		pc, err := tr.NewPeerConnection(false)
		if err != nil {
			tb.Fatal(err)
		}
		dt := forward.NewDownTrack("v", "s", webrtc.RTPCodecTypeVideo, vp8)
		x, err := pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			tb.Fatal(err)
		}
		go dt.ServeRTCP(x.Sender())
		if err := dt.SetSource(src); err != nil {
			tb.Fatal(err)
		}
		sub := bareSubscriber(tb)
		o, _ := pc.CreateOffer(nil)
		g := webrtc.GatheringCompletePromise(pc)
		_ = pc.SetLocalDescription(o)
		<-g
		if err := sub.SetRemoteDescription(*pc.LocalDescription()); err != nil {
			tb.Fatal(err)
		}
		a, _ := sub.CreateAnswer(nil)
		g2 := webrtc.GatheringCompletePromise(sub)
		_ = sub.SetLocalDescription(a)
		<-g2
		if err := pc.SetRemoteDescription(*sub.LocalDescription()); err != nil {
			tb.Fatal(err)
		}
		connected := make(chan struct{})
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				close(connected)
			}
		})
		if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			<-connected
		}
		closers = append(closers, func() { _ = pc.Close(); _ = sub.Close() })
	}
	tb.Cleanup(func() {
		for _, c := range closers {
			c()
		}
		_ = tr.Close()
	})
	payload := make([]byte, 1100)
	payload[0] = 0x10 // VP8 keyframe descriptor
	pkts := make([][]byte, 4096)
	for i := range pkts {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 5, PayloadType: 96},
			Payload: payload}).Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		pkts[i] = b
	}
	return &feeder{src: src, idx: idx, pkts: pkts}
}

// feeder ingests its packets in a loop with ever-increasing sequence numbers
// and timestamps (subscribers would drop repeats as SRTP replays).
type feeder struct {
	src  *forward.Track
	idx  int
	pkts [][]byte
	seq  uint16
	ts   uint32
}

func (f *feeder) next() {
	f.seq++
	f.ts += 3000
	p := f.pkts[int(f.seq)%len(f.pkts)]
	binary.BigEndian.PutUint16(p[2:], f.seq)
	binary.BigEndian.PutUint32(p[4:], f.ts)
	f.src.Ingest(f.idx, p)
}

func bareSubscriber(tb testing.TB) *webrtc.PeerConnection {
	m, err := transport.MediaEngine()
	if err != nil {
		tb.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	return pc
}

// BenchmarkForwardThroughPion: one published packet to N subscribers with
// SRTP and sendto; ns/forwarded is the SFU's cost per forwarded packet on
// this machine (loopback delivery included in sendto).
func BenchmarkForwardThroughPion(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			f := pionFanOut(b, n)
			for i := 0; i < len(f.pkts); i++ {
				f.next()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.next()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/forwarded")
		})
	}
}
