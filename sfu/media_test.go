package sfu_test

import (
	"net/http"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// publish pushes audio and video with a client offer and returns the peer,
// session ID and the two track names (mids "0" and "1").
func publish(t *testing.T, e *env, app, secret, prefix string) (*peer, string) {
	t.Helper()
	pub := newPeer(t)
	pub.addTrack(webrtc.RTPCodecTypeAudio, prefix+"-audio", webrtc.RTPTransceiverDirectionSendonly)
	pub.addTrack(webrtc.RTPCodecTypeVideo, prefix+"-video", webrtc.RTPTransceiverDirectionSendonly)
	sid := e.newSession(app, secret)
	resp := e.tracksNew(app, secret, sid, session.TracksRequest{
		SessionDescription: pub.offer(),
		Tracks: []session.TrackObject{
			{Location: "local", Mid: "0", TrackName: prefix + "-audio"},
			{Location: "local", Mid: "1", TrackName: prefix + "-video"},
		},
	})
	if resp.RequiresImmediateRenegotiation {
		t.Fatalf("push answer must not require renegotiation")
	}
	for i, tr := range resp.Tracks {
		if tr.ErrorCode != "" || tr.Mid != []string{"0", "1"}[i] {
			t.Fatalf("push result %d: %+v", i, tr)
		}
	}
	pub.setAnswer(resp.SessionDescription)
	pub.waitConnected()
	return pub, sid
}

// pull subscribes a fresh session to the publisher's tracks with an SFU offer.
func pull(t *testing.T, e *env, app, secret, pubSID, prefix string) (*peer, string) {
	t.Helper()
	sub := newPeer(t)
	sid := e.newSession(app, secret)
	resp := e.tracksNew(app, secret, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: prefix + "-audio"},
		{Location: "remote", SessionID: pubSID, TrackName: prefix + "-video"},
	}})
	if !resp.RequiresImmediateRenegotiation || resp.SessionDescription == nil || resp.SessionDescription.Type != "offer" {
		t.Fatalf("pull must return an SFU offer: %+v", resp)
	}
	for i, tr := range resp.Tracks {
		if tr.ErrorCode != "" || tr.Mid != []string{"0", "1"}[i] || tr.SessionID != pubSID {
			t.Fatalf("pull result %d: %+v", i, tr)
		}
	}
	answer := sub.answer(resp.SessionDescription)
	var out map[string]any
	st, raw := e.call("PUT", apiPath(app, sid, "/renegotiate"), secret, map[string]any{"sessionDescription": answer}, &out)
	if st != http.StatusOK || len(out) != 0 {
		t.Fatalf("renegotiate: %d %s", st, raw)
	}
	sub.waitConnected()
	return sub, sid
}

func TestPushThenPullDeliversMedia(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sub, _ := pull(t, e, appA, secretA, pubSID, "cam")
	sub.waitMedia("0", "cam-audio", 20)
	sub.waitMedia("1", "cam-video", 20)
}
