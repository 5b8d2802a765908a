package sfu_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

func TestPullIntoClientOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sub := newPeer(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := sub.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{
		SessionDescription: sub.offer(),
		Tracks: []session.TrackObject{
			{Location: "remote", SessionID: pubSID, TrackName: "cam-video", Kind: "video"},
			{Location: "remote", SessionID: pubSID, TrackName: "cam-audio", Kind: "audio"},
		},
	})
	if resp.RequiresImmediateRenegotiation {
		t.Fatal("pull into a client offer must be answered at once")
	}
	if resp.Tracks[0].Mid != "1" || resp.Tracks[1].Mid != "0" || resp.Tracks[0].ErrorCode != "" {
		t.Fatalf("tracks must land on the offered m-lines of their kind: %+v", resp.Tracks)
	}
	sub.setAnswer(resp.SessionDescription)
	sub.waitConnected()
	sub.waitMedia("0", "cam-audio", 20)
	sub.waitMedia("1", "cam-video", 20)
}

func TestAutoDiscoverPublishesEveryOfferedTrack(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub := newPeer(t)
	pub.addTrack(webrtc.RTPCodecTypeAudio, "mic", webrtc.RTPTransceiverDirectionSendonly)
	pub.addTrack(webrtc.RTPCodecTypeVideo, "cam", webrtc.RTPTransceiverDirectionSendonly)
	pubSID := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, pubSID, session.TracksRequest{AutoDiscover: true, SessionDescription: pub.offer()})
	if len(resp.Tracks) != 2 {
		t.Fatalf("want 2 discovered tracks: %+v", resp.Tracks)
	}
	kinds := map[string]string{}
	for _, tr := range resp.Tracks {
		if len(tr.TrackName) != 32 || tr.ErrorCode != "" {
			t.Fatalf("discovered track needs a random name: %+v", tr)
		}
		kinds[tr.Mid] = tr.Kind
	}
	if kinds["0"] != "audio" || kinds["1"] != "video" {
		t.Fatalf("kinds by mid: %v", kinds)
	}
	pub.setAnswer(resp.SessionDescription)
	pub.waitConnected()

	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	pr := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: resp.Tracks[0].TrackName},
		{Location: "remote", SessionID: pubSID, TrackName: resp.Tracks[1].TrackName},
	}})
	e.renegotiate(appA, secretA, sid, sub.answer(pr.SessionDescription))
	sub.waitMedia("0", "mic", 10)
	sub.waitMedia("1", "cam", 10)
}

// partytracks uses one PeerConnection: it publishes, then pulls its own
// tracks back on the same session.
func TestSessionPullsItsOwnTracks(t *testing.T) {
	e := newEnv(t, envOpt{})
	p, sid := publish(t, e, appA, secretA, "self")
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: sid, TrackName: "self-audio"},
		{Location: "remote", SessionID: sid, TrackName: "self-video"},
	}})
	if resp.Tracks[0].Mid != "2" || resp.Tracks[1].Mid != "3" {
		t.Fatalf("new mids must follow the existing ones: %+v", resp.Tracks)
	}
	if got := midsOf(resp.SessionDescription.SDP); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("re-offer must keep existing m-sections in order: %v", got)
	}
	e.renegotiate(appA, secretA, sid, p.answer(resp.SessionDescription))
	p.waitMedia("2", "self-audio", 10)
	p.waitMedia("3", "self-video", 10)
}

func TestMidsAllocatedInRequestOrderAndKeptInReoffers(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	r1 := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "cam-video"},
	}})
	if r1.Tracks[0].Mid != "0" {
		t.Fatalf("first mid: %+v", r1.Tracks)
	}
	if !strings.Contains(r1.SessionDescription.SDP, "a=ice-lite") || !strings.Contains(r1.SessionDescription.SDP, "a=setup:actpass") {
		t.Fatal("SFU offer must be ICE-lite with setup:actpass")
	}
	e.renegotiate(appA, secretA, sid, sub.answer(r1.SessionDescription))
	sub.waitMedia("0", "cam-video", 5)
	r2 := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "cam-audio"},
	}})
	if r2.Tracks[0].Mid != "1" || !slices.Equal(midsOf(r2.SessionDescription.SDP), []string{"0", "1"}) {
		t.Fatalf("second pull: %+v mids %v", r2.Tracks, midsOf(r2.SessionDescription.SDP))
	}
	e.renegotiate(appA, secretA, sid, sub.answer(r2.SessionDescription))
	sub.waitMedia("1", "cam-audio", 10)
	before := sub.count("0", "cam-video")
	sub.waitMedia("0", "cam-video", before+10)
}

// The OpenAI relay pattern: a thirdparty (full ICE) session pushes with an
// SFU offer and a sendrecv transceiver, then a "#name" pull feeds another
// session's track into that transceiver.
func TestPushWithSFUOfferBidirectionalAndHashMidPull(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, userSID := publish(t, e, appA, secretA, "user")

	// The third party is an ICE-lite server (like OpenAI's): the SFU must
	// run full ICE and send the connectivity checks itself.
	ai := newPeerWith(t, func(se *webrtc.SettingEngine) { se.SetLite(true) })
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if st, raw := e.call("POST", "/v1/apps/"+appA+"/sessions/new?thirdparty=true&correlationId=m1", secretA, nil, &created); st != 201 {
		t.Fatalf("sessions/new: %d %s", st, raw)
	}
	aiSID := created.SessionID
	resp := e.tracksNew(appA, secretA, aiSID, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "local", TrackName: "ai-voice", Kind: "audio", BidirectionalMediaStream: true},
	}})
	if !resp.RequiresImmediateRenegotiation || resp.Tracks[0].Mid != "0" || resp.Tracks[0].TrackName != "ai-voice" {
		t.Fatalf("push with SFU offer: %+v", resp)
	}
	sdp := resp.SessionDescription.SDP
	if strings.Contains(sdp, "a=ice-lite") || !strings.Contains(sdp, "a=sendrecv") {
		t.Fatalf("thirdparty offer must be full ICE and sendrecv:\n%s", sdp)
	}
	ai.applyOffer(resp.SessionDescription)
	ai.sendOnOffered(webrtc.RTPCodecTypeAudio, "ai-voice")
	e.renegotiate(appA, secretA, aiSID, ai.finishAnswer())
	ai.waitConnected()

	// The AI's voice is a publication others can pull.
	listener := newPeer(t)
	lsid := e.newSession(appA, secretA)
	lr := e.tracksNew(appA, secretA, lsid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: aiSID, TrackName: "ai-voice"},
	}})
	e.renegotiate(appA, secretA, lsid, listener.answer(lr.SessionDescription))
	listener.waitMedia("0", "ai-voice", 10)

	// The user's microphone goes to the AI on the same transceiver.
	hr := e.tracksNew(appA, secretA, aiSID, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: userSID, TrackName: "user-audio", Mid: "#ai-voice"},
	}})
	if hr.RequiresImmediateRenegotiation || hr.SessionDescription != nil || hr.Tracks[0].Mid != "0" || hr.Tracks[0].ErrorCode != "" {
		t.Fatalf("#name pull needs no SDP and returns the real mid: %+v", hr)
	}
	ai.waitMedia("0", "user-audio", 10)
}

// The openai relay A pattern: the client offers a sendrecv audio m-line and
// an m=application section; the answer keeps audio sendrecv.
func TestPushBidirectionalWithClientOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, otherSID := publish(t, e, appA, secretA, "other")
	p := newPeer(t)
	p.addTrack(webrtc.RTPCodecTypeAudio, "user-mic", webrtc.RTPTransceiverDirectionSendrecv)
	if _, err := p.pc.CreateDataChannel("response", nil); err != nil {
		t.Fatal(err)
	}
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: p.offer(), Tracks: []session.TrackObject{
		{Location: "local", Mid: "0", TrackName: "user-mic", Kind: "audio", BidirectionalMediaStream: true},
	}})
	if resp.Tracks[0].ErrorCode != "" || resp.Tracks[0].Mid != "0" {
		t.Fatalf("push: %+v", resp.Tracks)
	}
	ans := resp.SessionDescription.SDP
	if !strings.Contains(ans, "m=application") || !strings.Contains(ans, "a=sendrecv") {
		t.Fatalf("answer must keep audio sendrecv and answer m=application:\n%s", ans)
	}
	p.setAnswer(resp.SessionDescription)
	p.waitConnected()
	hr := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: otherSID, TrackName: "other-audio", Mid: "#user-mic"},
	}})
	if hr.Tracks[0].Mid != "0" || hr.Tracks[0].ErrorCode != "" {
		t.Fatalf("#user-mic pull: %+v", hr.Tracks)
	}
	p.waitMedia("0", "other-audio", 10)
}

func TestCloseTracks(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID := publish(t, e, appA, secretA, "cam")
	sub, subSID := pull(t, e, appA, secretA, pubSID, "cam")
	sub.waitMedia("0", "cam-audio", 5)
	sub.waitMedia("1", "cam-video", 5)

	t.Run("force closes a subscription without SDP", func(t *testing.T) {
		var out session.TracksResponse
		st, raw := e.call("PUT", apiPath(appA, subSID, "/tracks/close"), secretA,
			map[string]any{"tracks": []map[string]string{{"mid": "0"}}, "force": true}, &out)
		if st != 200 || out.SessionDescription != nil || out.RequiresImmediateRenegotiation || out.Tracks[0].Mid != "0" || out.Tracks[0].ErrorCode != "" {
			t.Fatalf("close: %d %s", st, raw)
		}
		time.Sleep(200 * time.Millisecond)
		n := sub.count("0", "cam-audio")
		sub.waitMedia("1", "cam-video", sub.count("1", "cam-video")+10)
		if got := sub.count("0", "cam-audio"); got != n {
			t.Fatalf("closed track still forwarded: %d -> %d", n, got)
		}
		if s := trackStatus(e.state(appA, secretA, subSID), "remote", "0"); s != "inactive" {
			t.Fatalf("closed subscription status %q", s)
		}
	})

	t.Run("unknown or closed mid is a per-item close_track_error", func(t *testing.T) {
		var out session.TracksResponse
		st, _ := e.call("PUT", apiPath(appA, subSID, "/tracks/close"), secretA,
			map[string]any{"tracks": []map[string]string{{"mid": "0"}, {"mid": "9"}}, "force": true}, &out)
		if st != 200 || len(out.Tracks) != 2 {
			t.Fatalf("status %d %+v", st, out)
		}
		for _, tr := range out.Tracks {
			if tr.ErrorCode != "close_track_error" || tr.ErrorDescription != "Track doesn't exist or was already closed" {
				t.Fatalf("item: %+v", tr)
			}
		}
	})

	t.Run("subscriber closes a pulled track with an offer", func(t *testing.T) {
		var video *webrtc.RTPTransceiver
		for _, tr := range sub.pc.GetTransceivers() {
			if tr.Mid() == "1" {
				video = tr
			}
		}
		if err := video.Stop(); err != nil {
			t.Fatal(err)
		}
		offer := sub.offer()
		offer.SDP = strings.Replace(offer.SDP, "m=video 9 ", "m=video 0 ", 1)
		var out session.TracksResponse
		st, raw := e.call("PUT", apiPath(appA, subSID, "/tracks/close"), secretA,
			map[string]any{"tracks": []map[string]string{{"mid": "1"}}, "force": false, "sessionDescription": offer}, &out)
		if st != 200 || out.SessionDescription == nil || out.Tracks[0].ErrorCode != "" || !strings.Contains(out.SessionDescription.SDP, "m=video 0 ") {
			t.Fatalf("close: %d %s", st, raw)
		}
		sub.setAnswer(out.SessionDescription)
		if s := trackStatus(e.state(appA, secretA, subSID), "remote", "1"); s != "inactive" {
			t.Fatalf("closed subscription status %q", s)
		}
		if s := trackStatus(e.state(appA, secretA, pubSID), "local", "1"); s != "active" {
			t.Fatalf("the publication must keep flowing for others: %q", s)
		}
	})

	t.Run("publisher closes with an offer and gets an answer rejecting the m-section", func(t *testing.T) {
		sub2, sub2SID := pull(t, e, appA, secretA, pubSID, "cam")
		sub2.waitMedia("1", "cam-video", 5)
		var video *webrtc.RTPTransceiver
		for _, tr := range pub.pc.GetTransceivers() {
			if tr.Mid() == "1" {
				video = tr
			}
		}
		if err := video.Stop(); err != nil {
			t.Fatal(err)
		}
		// Browsers offer a stopped transceiver with port 0 outside BUNDLE;
		// Pion writes it inactive, so shape the offer the browser way.
		offer := pub.offer()
		offer.SDP = strings.Replace(offer.SDP, "m=video 9 ", "m=video 0 ", 1)
		offer.SDP = strings.Replace(offer.SDP, "a=group:BUNDLE 0 1", "a=group:BUNDLE 0", 1)
		var out session.TracksResponse
		st, raw := e.call("PUT", apiPath(appA, pubSID, "/tracks/close"), secretA,
			map[string]any{"tracks": []map[string]string{{"mid": "1"}}, "force": false, "sessionDescription": offer}, &out)
		if st != 200 || out.SessionDescription == nil || out.SessionDescription.Type != "answer" || out.Tracks[0].ErrorCode != "" {
			t.Fatalf("close: %d %s", st, raw)
		}
		if !strings.Contains(out.SessionDescription.SDP, "m=video 0 ") {
			t.Fatalf("answer must reject the stopped m-section:\n%s", out.SessionDescription.SDP)
		}
		pub.setAnswer(out.SessionDescription)
		if s := trackStatus(e.state(appA, secretA, pubSID), "local", "1"); s != "inactive" {
			t.Fatalf("closed publication status %q", s)
		}
		if s := trackStatus(e.state(appA, secretA, sub2SID), "remote", "1"); s != "inactive" {
			t.Fatalf("subscription of a closed publication: status %q", s)
		}
		if s := trackStatus(e.state(appA, secretA, sub2SID), "remote", "0"); s != "active" {
			t.Fatalf("the other track of the publisher must stay: status %q", s)
		}
		n := sub2.count("1", "cam-video")
		sub2.waitMedia("0", "cam-audio", sub2.count("0", "cam-audio")+10)
		if got := sub2.count("1", "cam-video"); got > n+1 {
			t.Fatalf("closed publication still forwarded: %d -> %d", n, got)
		}
		pr := e.tracksNew(appA, secretA, subSID, session.TracksRequest{Tracks: []session.TrackObject{
			{Location: "remote", SessionID: pubSID, TrackName: "cam-video"},
		}})
		if pr.Tracks[0].ErrorCode != "not_found_track_error" || pr.Tracks[0].Mid != "" {
			t.Fatalf("pull of a closed track: %+v", pr.Tracks[0])
		}
	})
}

func TestGetSessionState(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sub, subSID := pull(t, e, appA, secretA, pubSID, "cam")
	sub.waitMedia("1", "cam-video", 5)
	waitFor(t, 5*time.Second, "active tracks", func() bool {
		st := e.state(appA, secretA, subSID)
		return trackStatus(st, "remote", "0") == "active" && trackStatus(st, "remote", "1") == "active"
	})
	st := e.state(appA, secretA, pubSID)
	want := []session.TrackState{
		{Location: "local", Mid: "0", TrackName: "cam-audio", Status: "active"},
		{Location: "local", Mid: "1", TrackName: "cam-video", Status: "active"},
	}
	if !slices.Equal(st.Tracks, want) || st.DataChannels == nil {
		t.Fatalf("publisher state %+v", st)
	}
	sst := e.state(appA, secretA, subSID)
	if sst.Tracks[0].SessionID != pubSID || sst.Tracks[0].TrackName != "cam-audio" {
		t.Fatalf("subscriber state %+v", sst)
	}
	fresh := e.newSession(appA, secretA)
	var raw map[string]any
	code, body := e.call("GET", apiPath(appA, fresh, ""), secretA, nil, &raw)
	if code != http.StatusOK || string(body) != "{\"tracks\":[],\"dataChannels\":[]}\n" {
		t.Fatalf("fresh session: %d %s", code, body)
	}
}

// renegotiate also takes an endpoint offer (e.g. an ICE restart) and
// answers it; media keeps flowing.
func TestRenegotiateAnswersAClientOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sub, sid := pull(t, e, appA, secretA, pubSID, "cam")
	sub.waitMedia("1", "cam-video", 5)
	o, err := sub.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(sub.pc)
	if err := sub.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	var out struct {
		SessionDescription *session.SessionDescription `json:"sessionDescription"`
	}
	st, raw := e.call("PUT", apiPath(appA, sid, "/renegotiate"), secretA,
		map[string]any{"sessionDescription": session.SessionDescription{Type: "offer", SDP: sub.pc.LocalDescription().SDP}}, &out)
	if st != 200 || out.SessionDescription == nil || out.SessionDescription.Type != "answer" {
		t.Fatalf("renegotiate with an offer: %d %s", st, raw)
	}
	sub.setAnswer(out.SessionDescription)
	sub.waitMedia("1", "cam-video", sub.count("1", "cam-video")+20)
}
