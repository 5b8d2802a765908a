package sfu_test

import (
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// BenchmarkSessionSetup: sessions/new + tracks/new (push audio and video
// with an endpoint offer) over HTTP, sequentially; reports p50/p99 latency.
// No ICE completes, so sessions are left to the reconnect window.
func BenchmarkSessionSetup(b *testing.B) {
	e := newEnv(b, envOpt{})
	p := newPeer(b)
	p.addTrack(webrtc.RTPCodecTypeAudio, "a", webrtc.RTPTransceiverDirectionSendonly)
	p.addTrack(webrtc.RTPCodecTypeVideo, "v", webrtc.RTPTransceiverDirectionSendonly)
	offer := p.offer()
	req := session.TracksRequest{SessionDescription: offer, Tracks: []session.TrackObject{
		{Location: "local", Mid: "0", TrackName: "a"}, {Location: "local", Mid: "1", TrackName: "v"},
	}}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sid := e.newSession(appA, secretA)
		st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, req, nil)
		if st != http.StatusOK {
			b.Fatalf("tracks/new: %d %s", st, raw)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
