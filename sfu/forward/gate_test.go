package forward

import (
	"io"
	"testing"

	"github.com/pion/interceptor"

	"github.com/pion/webrtc/v4"
)

// TestGatedDownTrackStartsOnAKeyframeSentAfterTheGateOpens: keyframes that
// arrive before the subscriber's transport is up are not forwarded (they
// would be dropped), no keyframe is asked for in vain, and once the gate
// opens the first delta asks for a keyframe and forwarding starts on it.
func TestGatedDownTrackStartsOnAKeyframeSentAfterTheGateOpens(t *testing.T) {
	var asked []uint32
	tr := NewTrack(TrackConfig{ID: "pub", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8,
		RequestKeyframe: func(ssrc uint32) { asked = append(asked, ssrc) }})
	if err := tr.AddLayer("", 5, eofReader{}); err != nil {
		t.Fatal(err)
	}
	gate := &Gate{}
	w := &captureWriter{keep: true}
	d := NewDownTrack("t", "s", webrtc.RTPCodecTypeVideo, vp8)
	d.SetGate(gate)
	if _, err := d.Bind(&fakeCtx{ssrc: 77, w: w, codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: vp8, PayloadType: 120}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSource(tr); err != nil {
		t.Fatal(err)
	}
	tr.Ingest(0, packet(t, 5, 1, 100, true, 1))
	tr.Ingest(0, packet(t, 5, 2, 200, false, 2))
	if w.n != 0 {
		t.Fatalf("%d packets written while the transport was down", w.n)
	}
	if len(asked) != 0 {
		t.Fatalf("keyframe asked for while the transport was down: %v", asked)
	}

	gate.SetOpen(true)
	tr.Ingest(0, packet(t, 5, 3, 300, false, 3))
	if w.n != 0 {
		t.Fatalf("a delta frame was forwarded as the first packet")
	}
	if len(asked) != 1 || asked[0] != 5 {
		t.Fatalf("keyframe requests after the gate opened: %v, want one for ssrc 5", asked)
	}
	tr.Ingest(0, packet(t, 5, 4, 400, true, 4))
	tr.Ingest(0, packet(t, 5, 5, 500, false, 5))
	if w.n != 2 || w.payload[0][2] != 4 || w.payload[1][2] != 5 {
		t.Fatalf("forwarded %d packets, want the keyframe (body 4) then the delta (body 5)", w.n)
	}

	// A reconnect (ICE restart) starts over from a keyframe again, even if
	// no packet flowed while the transport was down.
	gate.SetOpen(false)
	gate.SetOpen(true)
	tr.Ingest(0, packet(t, 5, 6, 600, false, 6))
	if w.n != 2 {
		t.Fatalf("a delta frame was forwarded right after reconnecting")
	}
	tr.Ingest(0, packet(t, 5, 7, 700, true, 7))
	if w.n != 3 || w.payload[2][2] != 7 || w.headers[2].SequenceNumber != w.headers[1].SequenceNumber+1 {
		t.Fatalf("after reconnecting: %d packets, want the keyframe continuing the sequence", w.n)
	}
}

// eofReader ends a layer's read loop at once; the test feeds Ingest itself.
type eofReader struct{}

func (eofReader) Read([]byte) (int, interceptor.Attributes, error) { return 0, nil, io.EOF }
