package sfu_test

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// publishSimulcast pushes one video track in three layers a, b, c whose
// packets are tagged "sim"+rid; keyframes are sent only on PLI.
func publishSimulcast(t *testing.T, e *env) (*peer, string, []*sender) {
	t.Helper()
	pub := newPeer(t)
	_, senders := pub.addTrack(webrtc.RTPCodecTypeVideo, "sim", webrtc.RTPTransceiverDirectionSendonly, "a", "b", "c")
	for _, s := range senders {
		s.keyOnly.Store(false)
		s.keyNext.Store(true)
	}
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: pub.offer(),
		Tracks: []session.TrackObject{{Location: "local", Mid: "0", TrackName: "sim"}}})
	if resp.Tracks[0].ErrorCode != "" {
		t.Fatalf("push simulcast: %+v", resp.Tracks)
	}
	if debugSDP {
		t.Logf("offer:\n%s\nanswer:\n%s", pub.pc.LocalDescription().SDP, resp.SessionDescription.SDP)
	}
	pub.setAnswer(resp.SessionDescription)
	pub.waitConnected()
	return pub, sid, senders
}

var debugSDP = false

// recent counts packets of tag received on mid during d.
func recent(p *peer, mid, tag string, d time.Duration) int64 {
	before := p.count(mid, tag)
	time.Sleep(d)
	return p.count(mid, tag) - before
}

func TestSimulcastForwardsPreferredLayerAndSwitchesOnUpdate(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID, senders := publishSimulcast(t, e)

	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "sim", Simulcast: &session.Simulcast{PreferredRid: "b"}},
	}})
	e.renegotiate(appA, secretA, sid, sub.answer(resp.SessionDescription))
	sub.waitMedia("0", "simb", 10)
	if n := recent(sub, "0", "sima", 300*time.Millisecond) + recent(sub, "0", "simc", 0); n != 0 {
		t.Fatalf("only the preferred layer may be forwarded, got %d other packets", n)
	}

	plis := pub.plis.Load()
	var out session.TracksResponse
	st, raw := e.call("PUT", apiPath(appA, sid, "/tracks/update"), secretA, map[string]any{"tracks": []map[string]any{{
		"location": "remote", "mid": "0", "sessionId": pubSID, "trackName": "sim",
		"simulcast": map[string]string{"preferredRid": "a", "priorityOrdering": "asciibetical", "ridNotAvailable": "asciibetical"},
	}}}, &out)
	if st != 200 || out.RequiresImmediateRenegotiation || out.Tracks[0].ErrorCode != "" || out.Tracks[0].Mid != "0" {
		t.Fatalf("update: %d %s", st, raw)
	}
	sub.waitMedia("0", "sima", 10)
	if pub.plis.Load() <= plis {
		t.Fatal("a layer switch must request a keyframe from the publisher")
	}
	time.Sleep(100 * time.Millisecond)
	if n := recent(sub, "0", "simb", 300*time.Millisecond); n != 0 {
		t.Fatalf("old layer still forwarded after the switch: %d packets", n)
	}

	// ridNotAvailable asciibetical: when "a" stops, the next layer "b" comes.
	senders[0].paused.Store(true)
	sub.waitMedia("0", "simb", sub.count("0", "simb")+10)

	// Updates that cannot apply are per-item update_track_error.
	st, _ = e.call("PUT", apiPath(appA, sid, "/tracks/update"), secretA, map[string]any{"tracks": []map[string]any{
		{"location": "remote", "mid": "0", "sessionId": pubSID, "trackName": "sim", "simulcast": map[string]string{"preferredRid": "zz"}},
		{"location": "remote", "mid": "7", "sessionId": pubSID, "trackName": "sim", "simulcast": map[string]string{"preferredRid": "a"}},
	}}, &out)
	if st != 200 || out.Tracks[0].ErrorCode != "update_track_error" || out.Tracks[1].ErrorCode != "update_track_error" {
		t.Fatalf("bad updates: %d %+v", st, out.Tracks)
	}
}

func TestSimulcastRidNotAvailableNoneWaitsForPreferredLayer(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID, senders := publishSimulcast(t, e)
	senders[2].paused.Store(true)
	time.Sleep(1200 * time.Millisecond) // layer c goes idle
	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "sim", Simulcast: &session.Simulcast{PreferredRid: "c", RidNotAvailable: "none"}},
	}})
	e.renegotiate(appA, secretA, sid, sub.answer(resp.SessionDescription))
	sub.waitConnected()
	time.Sleep(500 * time.Millisecond)
	if n := sub.count("0", "sima") + sub.count("0", "simb"); n != 0 {
		t.Fatalf("ridNotAvailable none must not fall back, got %d packets", n)
	}
	senders[2].keyNext.Store(true)
	senders[2].paused.Store(false)
	sub.waitMedia("0", "simc", 10)
}

func TestUpdateSwapsSourceWithoutRenegotiation(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, sidX := publish(t, e, appA, secretA, "x")
	_, sidY := publish(t, e, appA, secretA, "y")
	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: sidX, TrackName: "x-video"},
	}})
	e.renegotiate(appA, secretA, sid, sub.answer(resp.SessionDescription))
	sub.waitMedia("0", "x-video", 10)

	var out session.TracksResponse
	st, raw := e.call("PUT", apiPath(appA, sid, "/tracks/update"), secretA, map[string]any{"tracks": []map[string]any{
		{"location": "remote", "mid": "0", "sessionId": sidY, "trackName": "y-video"},
	}}, &out)
	if st != 200 || out.Tracks[0].ErrorCode != "" || out.Tracks[0].SessionID != sidY || out.SessionDescription != nil {
		t.Fatalf("swap: %d %s", st, raw)
	}
	sub.waitMedia("0", "y-video", 10)
	time.Sleep(100 * time.Millisecond)
	if n := recent(sub, "0", "x-video", 300*time.Millisecond); n != 0 {
		t.Fatalf("old source still forwarded: %d", n)
	}
	st2 := e.state(appA, secretA, sid)
	if st2.Tracks[0].SessionID != sidY || st2.Tracks[0].TrackName != "y-video" {
		t.Fatalf("state after swap: %+v", st2)
	}
	// Swapping to an audio source on a video transceiver is refused.
	st, _ = e.call("PUT", apiPath(appA, sid, "/tracks/update"), secretA, map[string]any{"tracks": []map[string]any{
		{"location": "remote", "mid": "0", "sessionId": sidY, "trackName": "y-audio"},
	}}, &out)
	if st != 200 || out.Tracks[0].ErrorCode != "update_track_error" {
		t.Fatalf("codec mismatch swap: %+v", out.Tracks)
	}
}
