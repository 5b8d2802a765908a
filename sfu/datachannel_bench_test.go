package sfu_test

import (
	"encoding/binary"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// BenchmarkDataChannelFanOut: one publisher channel, 10 subscribers, all
// Pion endpoints on loopback. Each op is one 200-byte binary message that
// carries its send time; the benchmark reports the delivery latency to the
// subscribers (p50/p99 over every delivery) and the messages delivered per
// second. Messages are paced (one in flight per 200 µs) so the figure is
// latency, not queueing.
func BenchmarkDataChannelFanOut(b *testing.B) {
	const subs = 10
	e := newEnv(b, envOpt{})
	pub, pubSID := dcSession(b, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "bench"})
	pubDC, _ := negotiated(b, pub, "bench", ids[0], nil)

	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N*subs)
	var wg sync.WaitGroup
	for i := 0; i < subs; i++ {
		p, sid := dcSession(b, e, appA, secretA)
		sids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "bench"})
		dc, _ := negotiated(b, p, "bench", sids[0], nil)
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if len(m.Data) < 8 {
				return
			}
			d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data))))
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			wg.Done()
		})
	}
	msg := make([]byte, 200)
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wg.Add(subs)
		binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
		if err := pubDC.Send(msg); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d deliveries within 30 s", len(lat), b.N*subs)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
}
