package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

// Synthetic VP8 media: each frame is a burst of packets; the first packet
// of a frame starts VP8 partition 0 and tells key from delta frames (all the
// SFU looks at). Every payload carries a magic, a counter and the send time
// on the process's monotonic clock, so one process can measure loss and
// one-way latency of every packet.
const (
	payloadMagic = 0x53574242 // "SWBB"
	payloadHdr   = 2 + 4 + 4 + 8
)

// epoch is the origin of the send timestamps (monotonic).
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// newAPI returns a Pion API for load-generator peers: the SFU's codecs,
// loopback host candidates only, no interceptors (no reports, no NACK): the
// cheapest peer that still does ICE, DTLS and SRTP.
func newAPI() (*webrtc.API, error) {
	m, err := transport.MediaEngine()
	if err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)), nil
}

// publisher writes frames of synthetic VP8 at a fixed bit rate.
type publisher struct {
	track   *webrtc.TrackLocalStaticRTP
	sent    atomic.Uint32 // counter of the next packet
	keyNext atomic.Bool
	plis    atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newPublisherTrack() (*publisher, error) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "bench")
	if err != nil {
		return nil, err
	}
	p := &publisher{track: tr, stop: make(chan struct{})}
	p.keyNext.Store(true)
	return p, nil
}

// readRTCP turns PLIs and FIRs from the sender into a keyframe. It ends
// when the peer connection closes.
func (p *publisher) readRTCP(s *webrtc.RTPSender) {
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := s.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.plis.Add(1)
					p.keyNext.Store(true)
				}
			}
		}
	}()
}

// start sends fps frames per second of perFrame packets of size payload
// bytes; a keyframe every keyEvery frames or after a PLI.
func (p *publisher) start(fps, perFrame, size, keyEvery int) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(fps))
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: make([]byte, size)}
		var seq uint16
		var ts uint32
		for frame := 0; ; frame++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			key := p.keyNext.Swap(false) || frame%keyEvery == 0
			ts += uint32(90000 / fps)
			for i := 0; i < perFrame; i++ {
				b := pkt.Payload
				b[0], b[1] = 0x00, 0x01
				if i == 0 {
					b[0] = 0x10 // S: start of partition 0
					if key {
						b[1] = 0x00 // VP8 P bit clear: keyframe
					}
				}
				c := p.sent.Load()
				binary.BigEndian.PutUint32(b[2:], payloadMagic)
				binary.BigEndian.PutUint32(b[6:], c)
				binary.BigEndian.PutUint64(b[10:], uint64(sinceEpoch()))
				seq++
				pkt.SequenceNumber, pkt.Timestamp, pkt.Marker = seq, ts, i == perFrame-1
				// A write error means a binding failed; the packet still
				// counts as sent (loss is what the subscribers did not get).
				_ = p.track.WriteRTP(pkt)
				p.sent.Store(c + 1)
			}
		}
	}()
}

func (p *publisher) close() {
	close(p.stop)
	p.wg.Wait()
}

// histogram buckets of 10 µs up to 200 ms.
const (
	bucketWidth = 10 * time.Microsecond
	nBuckets    = 20000
)

// meter counts, per measurement window, the packets received whose counter
// lies in [lo, hi) and their one-way latency.
type meter struct {
	lo, hi atomic.Int64
	got    atomic.Int64
	bad    atomic.Int64
	hist   histogram // every packet
	first  histogram // first packet of each frame (the anchors' method)
}

type histogram [nBuckets + 1]atomic.Int64

func (h *histogram) reset() {
	for i := range h {
		h[i].Store(0)
	}
}

func (h *histogram) add(lat time.Duration) {
	i := int(lat / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i > nBuckets {
		i = nBuckets
	}
	h[i].Add(1)
}

// quantile of the latencies (upper edge of the bucket).
func (h *histogram) quantile(q float64) time.Duration {
	var total int64
	counts := make([]int64, len(h))
	for i := range h {
		counts[i] = h[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var acc int64
	for i, c := range counts {
		acc += c
		if acc >= want {
			return time.Duration(i+1) * bucketWidth
		}
	}
	return nBuckets * bucketWidth
}

func newMeter() *meter {
	m := &meter{}
	m.lo.Store(math.MaxInt64)
	m.hi.Store(math.MaxInt64)
	return m
}

// open starts a window at counter lo (until close).
func (m *meter) open(lo uint32) {
	m.got.Store(0)
	m.bad.Store(0)
	m.hist.reset()
	m.first.reset()
	m.hi.Store(math.MaxInt64)
	m.lo.Store(int64(lo))
}

func (m *meter) close(hi uint32) { m.hi.Store(int64(hi)) }

func (m *meter) record(c uint32, lat time.Duration, first bool) {
	if int64(c) < m.lo.Load() || int64(c) >= m.hi.Load() {
		return
	}
	m.got.Add(1)
	m.hist.add(lat)
	if first {
		m.first.add(lat)
	}
}

// receive reads one remote track until it ends, feeding m; last is set to
// the newest counter seen (to know a subscriber is live).
func receive(tr *webrtc.TrackRemote, m *meter, last *atomic.Int64) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := sinceEpoch()
		b := buf[:n]
		if len(b) < 12 {
			m.bad.Add(1)
			continue
		}
		off := 12 + 4*int(b[0]&0x0f)
		if b[0]&0x10 != 0 && len(b) >= off+4 {
			off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
		}
		if len(b) < off+payloadHdr || binary.BigEndian.Uint32(b[off+2:]) != payloadMagic {
			m.bad.Add(1)
			continue
		}
		c := binary.BigEndian.Uint32(b[off+6:])
		sent := int64(binary.BigEndian.Uint64(b[off+10:]))
		last.Store(int64(c))
		m.record(c, time.Duration(now-sent), b[off]&0x10 != 0)
	}
}

// waitConnected waits for pc to reach connected.
func waitConnected(pc *webrtc.PeerConnection, d time.Duration) error {
	deadline := time.Now().Add(d)
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		switch pc.ConnectionState() {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("peer connection %s", pc.ConnectionState())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not connected after %v (state %s)", d, pc.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// localDescription sets d as local description and waits for gathering.
func localDescription(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return webrtc.SessionDescription{}, err
	}
	<-gathered
	return *pc.LocalDescription(), nil
}

// durations summarises samples.
type durations []time.Duration

func (d durations) q(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
