package forward

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// The process-wide counter behind switchboard_forwarded_packets_total
// counts what subscribers were sent: each written packet once per down
// track, nothing for a packet a down track held back (waiting for a
// keyframe) or that no down track took. Tests in this package do not run
// in parallel, so the counter moves only by what this test ingests.
func TestForwardedPacketsCountsWhatSubscribersWereSent(t *testing.T) {
	tr := NewTrack(TrackConfig{ID: "count", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8})
	idx := tr.EnsureLayer("")
	var writers []*captureWriter
	for i := range 3 {
		w := &captureWriter{}
		writers = append(writers, w)
		if err := bound(t, w, uint32(2000+i)).SetSource(tr); err != nil {
			t.Fatal(err)
		}
	}
	before := ForwardedPackets()
	tr.Ingest(idx, packet(t, 1, 10, 100, false, 1)) // no keyframe yet: every down track waits
	if got := ForwardedPackets() - before; got != 0 {
		t.Fatalf("a held-back packet counted %d forwarded packets", got)
	}
	for seq := uint16(11); seq < 16; seq++ {
		tr.Ingest(idx, packet(t, 1, seq, uint32(seq)*100, seq == 11, byte(seq)))
	}
	written := 0
	for _, w := range writers {
		written += w.n
	}
	if written != 15 {
		t.Fatalf("subscribers got %d packets, want 5 each to 3 subscribers", written)
	}
	if got := ForwardedPackets() - before; got != uint64(written) {
		t.Fatalf("ForwardedPackets grew by %d, the subscribers' writers saw %d", got, written)
	}
	// A resend answering a NACK is a packet on the wire too.
	writers[0].n = 0
	d := (*tr.downs.Load())[0]
	d.mu.Lock()
	last := d.lastSeq
	d.mu.Unlock()
	mark := ForwardedPackets()
	d.resend(last)
	if writers[0].n != 1 || ForwardedPackets()-mark != 1 {
		t.Fatalf("resend: writer saw %d, counter grew by %d; want 1 and 1", writers[0].n, ForwardedPackets()-mark)
	}
}
