package sfu_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// firstPacket is what a subscriber saw first on a track, and when.
type firstPacket struct {
	mu          sync.Mutex
	connectedAt time.Time
	at          time.Time
	pkt         *rtp.Packet
}

func (f *firstPacket) get() (connectedAt, at time.Time, pkt *rtp.Packet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connectedAt, f.at, f.pkt
}

// TestLateSubscriberFirstFrameIsAKeyframe: a publisher sends one keyframe at
// its start and afterwards only on PLI. A subscriber that joins a second
// later, and never sends a PLI or FIR of its own (this Pion peer has no PLI
// generator and the test writes no RTCP), must receive a keyframe as its
// first frame, soon after its transport connects: the SFU must neither spend
// the keyframe before the subscriber can receive it nor wait for the
// subscriber to ask.
func TestLateSubscriberFirstFrameIsAKeyframe(t *testing.T) {
	e := newEnv(t, envOpt{})
	lateSubscriberGetsKeyframe(t, e, e)
}

// TestLateSubscriberOnAnotherPodFirstFrameIsAKeyframe is the same through a
// relay: the subscriber's pod opens the relay stream when it pulls, before
// the subscriber is connected.
func TestLateSubscriberOnAnotherPodFirstFrameIsAKeyframe(t *testing.T) {
	pods := newFleet(t, 2, false)
	lateSubscriberGetsKeyframe(t, pods[0], pods[1])
}

// lateSubscriberGetsKeyframe publishes on e, subscribes a second later on
// subE and checks the subscriber's first packet.
func lateSubscriberGetsKeyframe(t *testing.T, e, subE *env) {
	t.Helper()
	pub := newPeer(t)
	_, senders := pub.addTrack(webrtc.RTPCodecTypeVideo, "late-video", webrtc.RTPTransceiverDirectionSendonly)
	senders[0].keyOnly.Store(false)
	senders[0].keyNext.Store(true)
	pubSID := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, pubSID, session.TracksRequest{
		SessionDescription: pub.offer(),
		Tracks:             []session.TrackObject{{Location: "local", Mid: "0", TrackName: "late-video"}},
	})
	if len(resp.Tracks) != 1 || resp.Tracks[0].ErrorCode != "" {
		t.Fatalf("push: %+v", resp.Tracks)
	}
	pub.setAnswer(resp.SessionDescription)
	pub.waitConnected()
	// Let the track flow well past the keyframe debounce, so only deltas
	// are on the wire when the subscriber joins.
	time.Sleep(1500 * time.Millisecond)
	plisBefore := pub.plis.Load()

	sub := newPeer(t)
	first := &firstPacket{}
	sub.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			first.mu.Lock()
			if first.connectedAt.IsZero() {
				first.connectedAt = time.Now()
			}
			first.mu.Unlock()
		}
	})
	sub.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sub.wg.Add(1)
		go func() {
			defer sub.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				first.mu.Lock()
				if first.pkt == nil {
					first.pkt, first.at = pkt, time.Now()
				}
				first.mu.Unlock()
			}
		}()
	})
	subSID := subE.newSession(appA, secretA)
	pull := subE.tracksNew(appA, secretA, subSID, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "late-video"},
	}})
	if len(pull.Tracks) != 1 || pull.Tracks[0].ErrorCode != "" || pull.SessionDescription == nil {
		t.Fatalf("pull: %+v", pull)
	}
	answer := sub.answer(pull.SessionDescription)
	if st, raw := subE.call("PUT", apiPath(appA, subSID, "/renegotiate"), secretA, map[string]any{"sessionDescription": answer}, nil); st != http.StatusOK {
		t.Fatalf("renegotiate: %d %s", st, raw)
	}
	sub.waitConnected()
	waitFor(t, 10*time.Second, "the subscriber's first video packet", func() bool {
		c, _, pkt := first.get()
		return pkt != nil && !c.IsZero()
	})
	connectedAt, at, pkt := first.get()
	tag, ok := checkPayload(pkt.Payload)
	if !ok || tag != "late-video" {
		t.Fatalf("first packet is not an intact late-video packet (tag %q)", tag)
	}
	if pkt.Payload[1]&0x01 != 0 {
		t.Fatalf("first frame the subscriber received is a delta frame (sequence %d): it cannot decode until it asks for a keyframe itself", pkt.SequenceNumber)
	}
	if d := at.Sub(connectedAt); d > time.Second {
		t.Fatalf("first keyframe arrived %v after the subscriber connected, want within 1s", d)
	}
	t.Logf("first keyframe %v after connecting; publisher got %d PLI", at.Sub(connectedAt).Round(time.Millisecond), pub.plis.Load()-plisBefore)
}
