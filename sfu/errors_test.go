package sfu_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

func TestUnauthorizedLooksTheSameForUnknownAppAndBadSecret(t *testing.T) {
	e := newEnv(t, envOpt{})
	want := `{"errorCode":"unauthorized","errorDescription":"Authentication failed: the app ID and Bearer secret do not match"}` + "\n"
	cases := map[string][2]string{
		"unknown app":             {"00000000000000000000000000000000", secretA},
		"bad secret":              {appA, "wrong"},
		"no secret":               {appA, ""},
		"another app's secret":    {appA, secretB},
		"path traversal as appId": {"..%2f..%2fetc", secretA},
	}
	for name, c := range cases {
		st, raw := e.call("POST", "/v1/apps/"+c[0]+"/sessions/new", c[1], nil, nil)
		if st != http.StatusUnauthorized || string(raw) != want {
			t.Errorf("%s: %d %s", name, st, raw)
		}
	}
	sid := e.newSession(appA, secretA)
	if st, raw := e.call("GET", apiPath(appA, sid, ""), secretB, nil, nil); st != 401 || string(raw) != want {
		t.Errorf("session call with another app's secret: %d %s", st, raw)
	}
}

func TestAppsCannotSeeEachOthersTracks(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "private")
	sid := e.newSession(appB, secretB)
	r := e.tracksNew(appB, secretB, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "private-audio"},
	}})
	want := session.TrackResult{SessionID: pubSID, TrackName: "private-audio", Mid: "", ErrorCode: "not_found_track_error",
		ErrorDescription: "Track not found on remote peer. Make sure the publisher peer is connected and sending packets for this track"}
	if r.Tracks[0] != want || r.SessionDescription != nil || r.RequiresImmediateRenegotiation {
		t.Fatalf("cross-app pull: %+v", r)
	}
	// The publisher's session itself is invisible through app B.
	if st, _ := e.call("GET", apiPath(appB, pubSID, ""), secretB, nil, nil); st != http.StatusGone {
		t.Fatalf("another app's session: %d", st)
	}
}

func TestDecodingErrors(t *testing.T) {
	e := newEnv(t, envOpt{})
	sid := e.newSession(appA, secretA)
	cases := []struct {
		name, body string
	}{
		{"not JSON", "{"},
		{"wrong type", `{"tracks":"x"}`},
		{"bad location", `{"tracks":[{"location":"nowhere","trackName":"a"}]}`},
		{"remote without sessionId", `{"tracks":[{"location":"remote","trackName":"a"}]}`},
		{"empty body", ""},
	}
	for _, c := range cases {
		st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, c.body, nil)
		if st != http.StatusBadRequest || !strings.HasPrefix(string(raw), `{"errorCode":"decoding_error","errorDescription":"JSON body validation error`) {
			t.Errorf("%s: %d %s", c.name, st, raw)
		}
	}
	st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA,
		`{"tracks":[{"location":"remote","sessionId":"x","trackName":"a"},{"location":"local","trackName":"b","mid":"0"}]}`, nil)
	if st != http.StatusNotAcceptable || !strings.Contains(string(raw), `"errorCode":"invalid_params"`) {
		t.Errorf("mixed locations: %d %s", st, raw)
	}
}

func TestInvalidSessionDescriptions(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "cam")
	sid := e.newSession(appA, secretA)
	expect := func(what string, st int, raw []byte) {
		t.Helper()
		if st != http.StatusNotAcceptable || !strings.Contains(string(raw), `"errorCode":"invalid_session_description"`) {
			t.Errorf("%s: %d %s", what, st, raw)
		}
	}
	st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, map[string]any{
		"sessionDescription": map[string]string{"type": "offer", "sdp": "this is not sdp"},
		"tracks":             []map[string]string{{"location": "local", "mid": "0", "trackName": "x"}}}, nil)
	expect("garbage SDP", st, raw)
	st, raw = e.call("PUT", apiPath(appA, sid, "/renegotiate"), secretA, map[string]any{
		"sessionDescription": map[string]string{"type": "answer", "sdp": "v=0\r\n"}}, nil)
	expect("answer with no offer pending", st, raw)

	// A second mutation while an SFU offer waits for its answer is refused.
	pull := session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: pubSID, TrackName: "cam-audio"}}}
	first := e.tracksNew(appA, secretA, sid, pull)
	if !first.RequiresImmediateRenegotiation {
		t.Fatalf("first pull: %+v", first)
	}
	pull.Tracks[0].TrackName = "cam-video"
	st, raw = e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, pull, nil)
	expect("overlapping tracks/new", st, raw)
	// The pending exchange still completes.
	p := newPeer(t)
	e.renegotiate(appA, secretA, sid, p.answer(first.SessionDescription))
	p.waitMedia("0", "cam-audio", 5)
}

func TestUnknownSessionIsGone(t *testing.T) {
	e := newEnv(t, envOpt{})
	if st, raw := e.call("DELETE", "/v1/apps/"+appA+"/sessions/x", secretA, nil, nil); st != 404 || !strings.HasPrefix(string(raw), `{"errorCode":"not_found"`) {
		t.Fatalf("unknown endpoint: %d %s", st, raw)
	}
	st, raw := e.call("GET", apiPath(appA, "ffffffffffffffffffffffffffffffff", ""), secretA, nil, nil)
	if st != http.StatusGone || !strings.Contains(string(raw), `"errorCode":"session_error"`) {
		t.Fatalf("%d %s", st, raw)
	}
}

func TestHTTPConventions(t *testing.T) {
	e := newEnv(t, envOpt{})
	t.Run("CORS preflight", func(t *testing.T) {
		req, _ := http.NewRequest("OPTIONS", e.http.URL+"/v1/apps/"+appA+"/sessions/new", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "authorization") ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "PUT") || h.Get("Vary") != "Origin" {
			t.Fatalf("preflight: %d %v", resp.StatusCode, h)
		}
	})
	t.Run("JSON in a text/plain body, Vary on answers, 201", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.http.URL+"/v1/apps/"+appA+"/sessions/new?thirdparty=false&correlationId=abc&streamDebug&foo=bar",
			bytes.NewBufferString(`{}`))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		req.Header.Set("Authorization", "Bearer "+secretA)
		req.Header.Set("Origin", "https://app.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || resp.Header.Get("Vary") != "Origin" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.HasPrefix(string(raw), `{"sessionId":"`) {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, raw)
		}
	})
	t.Run("/apps alias without /v1", func(t *testing.T) {
		var out struct{ SessionID string }
		st, raw := e.call("POST", "/apps/"+appA+"/sessions/new", secretA, nil, &out)
		if st != 201 {
			t.Fatalf("%d %s", st, raw)
		}
		if st, raw := e.call("GET", "/apps/"+appA+"/sessions/"+out.SessionID, secretA, nil, nil); st != 200 {
			t.Fatalf("%d %s", st, raw)
		}
	})
	t.Run("renegotiate answers {}", func(t *testing.T) {
		// covered by every pull; here the exact body
		_, pubSID := publish(t, e, appA, secretA, "r")
		sid := e.newSession(appA, secretA)
		r := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: pubSID, TrackName: "r-audio"}}})
		p := newPeer(t)
		st, raw := e.call("PUT", apiPath(appA, sid, "/renegotiate"), secretA, map[string]any{"sessionDescription": p.answer(r.SessionDescription)}, nil)
		if st != 200 || string(raw) != "{}\n" {
			t.Fatalf("%d %q", st, raw)
		}
	})
}

// The deprecated flow: sessions/new carrying an offer gets an answer.
func TestSessionsNewWithOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	p := newPeer(t)
	if _, err := p.pc.CreateDataChannel("server-events", nil); err != nil {
		t.Fatal(err)
	}
	var out struct {
		SessionID          string
		SessionDescription *session.SessionDescription
	}
	st, raw := e.call("POST", "/v1/apps/"+appA+"/sessions/new", secretA, map[string]any{"sessionDescription": p.offer()}, &out)
	if st != 201 || out.SessionDescription == nil || !strings.Contains(out.SessionDescription.SDP, "m=application") {
		t.Fatalf("%d %s", st, raw)
	}
	p.setAnswer(out.SessionDescription)
	p.waitConnected()
	waitFor(t, 5e9, "server side connected", func() bool { return e.srv.SessionConnected(appA, out.SessionID) })
	_ = webrtc.SDPTypeAnswer
}

// Hostile SDP never crashes the server or yields a 5xx (checklist SDP-01/02).
func TestHostileSDPIsRefusedWith4xx(t *testing.T) {
	e := newEnv(t, envOpt{})
	valid := newPeer(t)
	valid.addTrack(webrtc.RTPCodecTypeAudio, "v", webrtc.RTPTransceiverDirectionSendonly)
	good := valid.offer().SDP
	hostile := map[string]string{
		"empty lines":           "\r\n\r\n",
		"no fingerprint":        strings.ReplaceAll(good, "a=fingerprint:", "a=x-fingerprint:"),
		"no ice credentials":    strings.ReplaceAll(strings.ReplaceAll(good, "a=ice-ufrag:", "a=x:"), "a=ice-pwd:", "a=y:"),
		"many m-sections":       good + strings.Repeat("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:x\r\n", 300),
		"many candidates":       good + strings.Repeat("a=candidate:1 1 udp 1 169.254.169.254 9 typ host\r\n", 300),
		"truncated":             good[:len(good)/3],
		"binary":                "v=0\r\n\x00\xff\xfe m=\x01",
		"huge attribute":        good + "a=" + strings.Repeat("z", 100000) + "\r\n",
		"bad rtpmap":            strings.Replace(good, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/notanumber/x", 1),
		"duplicate mids":        strings.Replace(good, "a=mid:0", "a=mid:0\r\na=mid:0", 1),
		"setup active in offer": strings.ReplaceAll(good, "a=setup:actpass", "a=setup:active"),
		"port 0 everything":     strings.ReplaceAll(good, "m=audio 9 ", "m=audio 0 "),
	}
	for name, sdp := range hostile {
		sid := e.newSession(appA, secretA)
		st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, map[string]any{
			"sessionDescription": map[string]string{"type": "offer", "sdp": sdp},
			"tracks":             []map[string]string{{"location": "local", "mid": "0", "trackName": "x"}}}, nil)
		if st >= 500 {
			t.Errorf("%s: %d %.200s", name, st, raw)
		}
		st, raw = e.call("POST", "/v1/apps/"+appA+"/sessions/new", secretA, map[string]any{
			"sessionDescription": map[string]string{"type": "offer", "sdp": sdp}}, nil)
		if st >= 500 {
			t.Errorf("sessions/new %s: %d %.200s", name, st, raw)
		}
	}
	// Still serving.
	publish(t, e, appA, secretA, "after")
}

func TestRepeatedLocalTrackAndEmptyClose(t *testing.T) {
	e := newEnv(t, envOpt{})
	p, sid := publish(t, e, appA, secretA, "dup")
	p.addTrack(webrtc.RTPCodecTypeAudio, "again", webrtc.RTPTransceiverDirectionSendonly)
	offer := p.offer()
	r := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: offer, Tracks: []session.TrackObject{
		{Location: "local", Mid: "2", TrackName: "dup-audio"},
	}})
	if r.Tracks[0].ErrorCode != "repeated_local_track_error" || r.Tracks[0].Mid != "2" || r.SessionDescription == nil {
		t.Fatalf("second publication with the same name: %+v", r.Tracks)
	}
	p.setAnswer(r.SessionDescription)
	st, raw := e.call("PUT", apiPath(appA, sid, "/tracks/close"), secretA, `{"tracks":[],"force":true}`, nil)
	if st != http.StatusNotAcceptable || !strings.Contains(string(raw), `"errorCode":"invalid_params"`) {
		t.Fatalf("close with no tracks: %d %s", st, raw)
	}
	// The original publication still flows.
	sub, _ := pull(t, e, appA, secretA, sid, "dup")
	sub.waitMedia("0", "dup-audio", 5)
}
