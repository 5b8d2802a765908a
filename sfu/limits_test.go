package sfu_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

func TestMoreThan64TracksInOneCallIsRefused(t *testing.T) {
	e := newEnv(t, envOpt{})
	sid := e.newSession(appA, secretA)
	var tracks []session.TrackObject
	for i := 0; i < 65; i++ {
		tracks = append(tracks, session.TrackObject{Location: "remote", SessionID: sid, TrackName: fmt.Sprint("t", i)})
	}
	st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, session.TracksRequest{Tracks: tracks}, nil)
	want := `{"errorCode":"invalid_params","errorDescription":"Expecting at most 64 tracks in one call, got 65"}` + "\n"
	if st != http.StatusNotAcceptable || string(raw) != want {
		t.Fatalf("got %d %s", st, raw)
	}
	// 64 is allowed: every item fails on its own (no such publication).
	var out session.TracksResponse
	st, raw = e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, session.TracksRequest{Tracks: tracks[:64]}, &out)
	if st != http.StatusOK || len(out.Tracks) != 64 || out.Tracks[63].ErrorCode != "not_found_track_error" || out.Tracks[63].Mid != "" {
		t.Fatalf("64 tracks: %d %.300s", st, raw)
	}
}

func TestSessionCallRateLimit(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	sid := e.newSession(appA, secretA)
	for i := 0; i < 50; i++ {
		if st, raw := e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != 200 {
			t.Fatalf("call %d: %d %s", i, st, raw)
		}
	}
	req, _ := http.NewRequest("GET", e.http.URL+apiPath(appA, sid, ""), nil)
	req.Header.Set("Authorization", "Bearer "+secretA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		body["success"] != false || body["error"] != "Command rate limited" || body["errorCode"] != "rate_limited" ||
		!strings.Contains(body["errorDescription"].(string), "50 calls per second") {
		t.Fatalf("51st call: %d %v retry-after %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	// Cleanup calls are exempt.
	var out session.TracksResponse
	st, raw := e.call("PUT", apiPath(appA, sid, "/tracks/close"), secretA, map[string]any{"tracks": []map[string]string{{"mid": "0"}}, "force": true}, &out)
	if st != 200 || out.Tracks[0].ErrorCode != "close_track_error" {
		t.Fatalf("close while limited: %d %s", st, raw)
	}
	// Other sessions are not affected.
	other := e.newSession(appA, secretA)
	if st, _ := e.call("GET", apiPath(appA, other, ""), secretA, nil, nil); st != 200 {
		t.Fatalf("other session limited: %d", st)
	}
	e.clock.Advance(time.Second)
	if st, raw := e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != 200 {
		t.Fatalf("next second: %d %s", st, raw)
	}
}

// An operation that needs a connected transport waits up to 5 s, then 425.
func TestOperationsWaitForConnectionThen425(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	_, pubSID := publish(t, e, appA, secretA, "cam")

	p := newPeer(t)
	p.addTrack(webrtc.RTPCodecTypeAudio, "late", webrtc.RTPTransceiverDirectionSendonly)
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: p.offer(),
		Tracks: []session.TrackObject{{Location: "local", Mid: "0", TrackName: "late"}}})

	pullReq := session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: pubSID, TrackName: "cam-audio"}}}
	type result struct {
		st  int
		raw []byte
	}
	do := func() chan result {
		ch := make(chan result, 1)
		go func() {
			st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, pullReq, nil)
			ch <- result{st, raw}
		}()
		return ch
	}
	// The client never applied the answer: the call blocks, then 425.
	ch := do()
	waitFor(t, 5*time.Second, "call waiting on the clock", func() bool { return e.clock.Waiters() > 0 })
	select {
	case r := <-ch:
		t.Fatalf("returned before the connect wait: %d %s", r.st, r.raw)
	case <-time.After(100 * time.Millisecond):
	}
	e.clock.Advance(5 * time.Second)
	r := <-ch
	want := `{"errorCode":"session_error","errorDescription":"PeerConnection is not connected; operations wait up to the connect timeout"}` + "\n"
	if r.st != http.StatusTooEarly || string(r.raw) != want {
		t.Fatalf("got %d %s", r.st, r.raw)
	}

	// A call blocked while the client connects completes once it does.
	ch = do()
	waitFor(t, 5*time.Second, "call waiting on the clock", func() bool { return e.clock.Waiters() > 0 })
	p.setAnswer(resp.SessionDescription)
	r = <-ch
	if r.st != http.StatusOK {
		t.Fatalf("after connecting: %d %s", r.st, r.raw)
	}
}

// A track without inbound packets for 30 s is collected for every session
// that uses it; a track still sending is kept.
func TestIdleTrackIsCollectedEverywhere(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	idle := newPeer(t)
	_, idleSenders := idle.addTrack(webrtc.RTPCodecTypeVideo, "idle", webrtc.RTPTransceiverDirectionSendonly)
	_, liveSenders := idle.addTrack(webrtc.RTPCodecTypeVideo, "live", webrtc.RTPTransceiverDirectionSendonly)
	pubSID := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, pubSID, session.TracksRequest{SessionDescription: idle.offer(), Tracks: []session.TrackObject{
		{Location: "local", Mid: "0", TrackName: "idle"}, {Location: "local", Mid: "1", TrackName: "live"},
	}})
	idle.setAnswer(resp.SessionDescription)
	sub := newPeer(t)
	sid := e.newSession(appA, secretA)
	pr := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: "idle"}, {Location: "remote", SessionID: pubSID, TrackName: "live"},
	}})
	e.renegotiate(appA, secretA, sid, sub.answer(pr.SessionDescription))
	sub.waitMedia("0", "idle", 5)
	sub.waitMedia("1", "live", 5)

	idleSenders[0].paused.Store(true)
	time.Sleep(100 * time.Millisecond)
	e.clock.Advance(29 * time.Second)
	sent := liveSenders[0].sent.Load()
	waitFor(t, 5*time.Second, "live packets after the jump", func() bool { return liveSenders[0].sent.Load() > sent+3 })
	e.srv.Sweep()
	if s := trackStatus(e.state(appA, secretA, pubSID), "local", "0"); s != "active" {
		t.Fatalf("collected before 30 s: %q", s)
	}
	e.clock.Advance(2 * time.Second)
	sent = liveSenders[0].sent.Load()
	waitFor(t, 5*time.Second, "live packets after the jump", func() bool { return liveSenders[0].sent.Load() > sent+3 })
	e.srv.Sweep()

	ps, ss := e.state(appA, secretA, pubSID), e.state(appA, secretA, sid)
	if trackStatus(ps, "local", "0") != "inactive" || trackStatus(ss, "remote", "0") != "inactive" {
		t.Fatalf("idle track not collected: publisher %+v subscriber %+v", ps, ss)
	}
	if trackStatus(ps, "local", "1") != "active" || trackStatus(ss, "remote", "1") != "active" {
		t.Fatalf("live track collected: publisher %+v subscriber %+v", ps, ss)
	}
	again := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: pubSID, TrackName: "idle"}}})
	if again.Tracks[0].ErrorCode != "not_found_track_error" {
		t.Fatalf("pull of a collected track: %+v", again.Tracks)
	}
	sub.waitMedia("1", "live", sub.count("1", "live")+5)
}

// A session that lost connectivity stays usable for 30 s, then 410.
func TestSessionExpiresAfterReconnectWindow(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	pub, sid := publish(t, e, appA, secretA, "gone")
	unused := e.newSession(appA, secretA)
	waitFor(t, 15*time.Second, "server side connected", func() bool { return e.srv.SessionConnected(appA, sid) })
	pub.close()
	waitFor(t, 15*time.Second, "server to see the connection drop", func() bool { return !e.srv.SessionConnected(appA, sid) })
	e.clock.Advance(29 * time.Second)
	e.srv.Sweep()
	if st, raw := e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != 200 {
		t.Fatalf("within the window: %d %s", st, raw)
	}
	e.clock.Advance(2 * time.Second)
	e.srv.Sweep()
	want := `{"errorCode":"session_error","errorDescription":"Session is gone or expired; create a new session"}` + "\n"
	for _, id := range []string{sid, unused} {
		st, raw := e.call("GET", apiPath(appA, id, ""), secretA, nil, nil)
		if st != http.StatusGone || string(raw) != want {
			t.Fatalf("after the window: %d %s", st, raw)
		}
	}
	other := e.newSession(appA, secretA)
	r := e.tracksNew(appA, secretA, other, session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: sid, TrackName: "gone-audio"}}})
	if r.Tracks[0].ErrorCode != "not_found_track_error" {
		t.Fatalf("track of an expired session: %+v", r.Tracks)
	}
}

func TestOversizedBodyAndSDPAre413(t *testing.T) {
	e := newEnv(t, envOpt{maxBody: 64 << 10, maxSDP: 16 << 10})
	sid := e.newSession(appA, secretA)
	big := `{"tracks":[],"pad":"` + strings.Repeat("x", 70<<10) + `"}`
	st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, big, nil)
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"errorCode":"payload_too_large"`) {
		t.Fatalf("big body: %d %s", st, raw)
	}
	sdp := "v=0\r\n" + strings.Repeat("a=x-pad:"+strings.Repeat("y", 100)+"\r\n", 200)
	for _, path := range []string{"/tracks/new", "/renegotiate"} {
		st, raw = e.call(map[string]string{"/tracks/new": "POST", "/renegotiate": "PUT"}[path], apiPath(appA, sid, path), secretA,
			map[string]any{"sessionDescription": map[string]string{"type": "offer", "sdp": sdp}}, nil)
		if st != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"errorCode":"payload_too_large"`) {
			t.Fatalf("big SDP on %s: %d %s", path, st, raw)
		}
	}
}

func TestAppLimitsComeFromConfig(t *testing.T) {
	e := newEnv(t, envOpt{cfg: testConfig(func(a *config.App) {
		a.Sessions.MaxTracksPerCall = 2
		a.Sessions.CallsPerSecond = 3
		a.Sessions.MaxSessions = 2
	})})
	sid := e.newSession(appA, secretA)
	three := []session.TrackObject{{Location: "remote", SessionID: sid, TrackName: "a"}, {Location: "remote", SessionID: sid, TrackName: "b"}, {Location: "remote", SessionID: sid, TrackName: "c"}}
	if st, raw := e.call("POST", apiPath(appA, sid, "/tracks/new"), secretA, session.TracksRequest{Tracks: three}, nil); st != 406 || !strings.Contains(string(raw), "at most 2 tracks") {
		t.Fatalf("max tracks 2: %d %s", st, raw)
	}
	e.newSession(appA, secretA)
	st, raw := e.call("POST", "/v1/apps/"+appA+"/sessions/new", secretA, nil, nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"errorCode":"temporarily_unavailable_error"`) {
		t.Fatalf("max sessions 2: %d %s", st, raw)
	}
	// app B has the defaults.
	e.newSession(appB, secretB)
	e.newSession(appB, secretB)
	e.newSession(appB, secretB)
}

// Session churn (checklist LOAD-01): sessions that connect and leave, and
// sessions that never complete ICE, are reaped and leave no goroutine behind.
func TestSessionChurnReturnsToBaseline(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	settle := func() int {
		n := runtime.NumGoroutine()
		for i := 0; i < 50; i++ {
			time.Sleep(50 * time.Millisecond)
			if m := runtime.NumGoroutine(); m == n {
				return n
			} else {
				n = m
			}
		}
		return n
	}
	base := settle()
	for round := 0; round < 3; round++ {
		var peers []*peer
		for i := 0; i < 3; i++ {
			prefix := fmt.Sprint("c", round, i)
			pub, sid := publish(t, e, appA, secretA, prefix)
			sub, _ := pull(t, e, appA, secretA, sid, prefix)
			sub.waitMedia("1", prefix+"-video", 3)
			peers = append(peers, pub, sub)
		}
		// A session whose client never answers: no ICE ever completes.
		stuck := newPeer(t)
		stuck.addTrack(webrtc.RTPCodecTypeAudio, "stuck", webrtc.RTPTransceiverDirectionSendonly)
		ssid := e.newSession(appA, secretA)
		e.tracksNew(appA, secretA, ssid, session.TracksRequest{SessionDescription: stuck.offer(),
			Tracks: []session.TrackObject{{Location: "local", Mid: "0", TrackName: "stuck"}}})
		peers = append(peers, stuck)
		for _, p := range peers {
			p.close()
		}
		waitFor(t, 15*time.Second, "sessions to lose connectivity", func() bool {
			st := e.srv.Stats()[appA]
			return st.Sessions == 0 || !anyConnected(e)
		})
		e.clock.Advance(31 * time.Second)
		e.srv.Sweep()
		if n := e.srv.Stats()[appA].Sessions; n != 0 {
			t.Fatalf("round %d: %d sessions left after the reconnect window", round, n)
		}
	}
	if after := settle(); after > base+5 {
		t.Fatalf("goroutines: %d before churn, %d after", base, after)
	}
}

func anyConnected(e *env) bool {
	for _, id := range e.srv.SessionIDs(appA) {
		if e.srv.SessionConnected(appA, id) {
			return true
		}
	}
	return false
}
