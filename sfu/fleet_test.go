package sfu_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

const fleetToken = "fleet-token-for-tests-0123456789"

// newFleet starts n SFU servers in this process, each with its own UDP
// port and HTTP listener on 127.0.0.1, that know each other from a static
// peer list. Pod i has ordinal i. Placement by load is off (no peer
// polling): these tests put each session on the pod they call, and
// sfu/placement_test.go tests placement.
func newFleet(t *testing.T, n int, fakeClock bool) []*env {
	t.Helper()
	return startFleet(t, n, fleetOptions{fakeClock: fakeClock, poll: -1})
}

// fleetOptions vary the pods startFleet starts.
type fleetOptions struct {
	// fakeClock gives every pod its own fake clock and no background sweep.
	fakeClock bool
	// poll is sfu.Options.PlacementPoll (negative: no peer polling).
	poll time.Duration
	// mut adjusts each pod's config.
	mut func(*config.Pod)
}

func startFleet(t *testing.T, n int, o fleetOptions) []*env {
	t.Helper()
	lns := make([]net.Listener, n)
	peers := make([]config.FleetPeer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers[i] = config.FleetPeer{Ordinal: i, Address: ln.Addr().String()}
	}
	envs := make([]*env, n)
	for i := range envs {
		cfg := testConfig()
		cfg.Fleet = &config.Fleet{Token: fleetToken, Peers: peers}
		if o.mut != nil {
			o.mut(cfg)
		}
		e := &env{t: t}
		opts := sfu.Options{Config: cfg, UDPAddr: "127.0.0.1:0", AdvertiseIPs: []string{"127.0.0.1"},
			Logger: testLogger(), PodOrdinal: i, PlacementPoll: o.poll}
		if o.fakeClock {
			e.clock = clock.NewFake(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC))
			opts.Clock = e.clock
			opts.SweepEvery = -1
		}
		srv, err := sfu.New(opts)
		if err != nil {
			t.Fatalf("sfu.New: %v", err)
		}
		e.srv = srv
		e.http = httptest.NewUnstartedServer(srv.Handler())
		_ = e.http.Listener.Close()
		e.http.Listener = lns[i]
		e.http.Start()
		t.Cleanup(func() {
			e.http.Close()
			if err := srv.Close(); err != nil {
				t.Errorf("close server %d: %v", i, err)
			}
		})
		envs[i] = e
	}
	return envs
}

func egressOf(e *env) (egress, ingress uint64) {
	u := e.srv.Usage()[appA]
	return u.EgressBytes, u.IngressBytes
}

func TestPullFromAnotherPodDeliversMedia(t *testing.T) {
	pods := newFleet(t, 3, false)
	a, b, c := pods[0], pods[1], pods[2]
	_, pubSID := publish(t, a, appA, secretA, "cam")
	if o, ok := fleet.Owner(pubSID); !ok || o != 0 {
		t.Fatalf("session %s created on pod 0 names pod %d (%v)", pubSID, o, ok)
	}
	subB, sidB := pull(t, b, appA, secretA, pubSID, "cam")
	subC, _ := pull(t, c, appA, secretA, pubSID, "cam")
	if o, _ := fleet.Owner(sidB); o != 1 {
		t.Fatalf("session created on pod 1 names pod %d", o)
	}
	for _, sub := range []*peer{subB, subC} {
		sub.waitMedia("0", "cam-audio", 30)
		sub.waitMedia("1", "cam-video", 30)
	}
	// A second subscriber on B shares B's relay streams.
	subB2, _ := pull(t, b, appA, secretA, pubSID, "cam")
	subB2.waitMedia("1", "cam-video", 20)
	if sending, _ := a.srv.RelayStreams(); sending != 4 {
		t.Errorf("pod A sends %d relay streams, want 4 (audio and video to B and to C)", sending)
	}
	if _, receiving := b.srv.RelayStreams(); receiving != 2 {
		t.Errorf("pod B receives %d relay streams for 2 subscribers, want 2 (one per track)", receiving)
	}
	// Relay traffic is internal: A has no local subscriber, so no egress;
	// B counts egress for its subscribers and no ingress.
	egA, inA := egressOf(a)
	egB, inB := egressOf(b)
	if egA != 0 || inA == 0 {
		t.Errorf("pod A: egress %d (want 0: relays are not egress), ingress %d (want > 0)", egA, inA)
	}
	if egB == 0 || inB != 0 {
		t.Errorf("pod B: egress %d (want > 0), ingress %d (want 0: relayed media is not ingress)", egB, inB)
	}
	// A subscriber on the publisher's own pod still works beside them.
	subA, _ := pull(t, a, appA, secretA, pubSID, "cam")
	subA.waitMedia("0", "cam-audio", 20)
	subA.waitMedia("1", "cam-video", 20)
	// GET session on B shows its pulls as active.
	st := b.state(appA, secretA, sidB)
	if got := trackStatus(st, "remote", "1"); got != session.StatusActive {
		t.Errorf("pull on B: status %q, want active (%+v)", got, st)
	}
}

// rawCall does one request and returns status, headers and raw body.
func rawCall(t *testing.T, base, method, path, secret, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, buf.Bytes()
}

func TestCallForSessionOnAnotherPodAnswersAsOwner(t *testing.T) {
	pods := newFleet(t, 2, false)
	a, b := pods[0], pods[1]
	_, pubSID := publish(t, a, appA, secretA, "cam")
	// Both tracks active first, so GET session cannot change between the
	// call to the owner and the call through the other pod.
	waitFor(t, 10*time.Second, "publisher's tracks active", func() bool {
		st := a.state(appA, secretA, pubSID)
		return trackStatus(st, "local", "0") == session.StatusActive && trackStatus(st, "local", "1") == session.StatusActive
	})
	pa := apiPath(appA, pubSID, "")
	goneOnA := fleet.NewSessionID(0) // well-formed, owned by A, never created
	cases := []struct {
		name, method, path, secret, body string
	}{
		{"get session", "GET", pa, secretA, ""},
		{"bad body", "PUT", apiPath(appA, pubSID, "/renegotiate"), secretA, "{not json"},
		{"no answer pending", "PUT", apiPath(appA, pubSID, "/renegotiate"), secretA, `{"sessionDescription":{"type":"answer","sdp":"v=0"}}`},
		{"wrong secret", "GET", pa, secretB, ""},
		{"other app", "GET", apiPath(appB, pubSID, ""), secretB, ""},
		{"unknown session", "GET", apiPath(appA, goneOnA, ""), secretA, ""},
		{"close unknown mid", "PUT", apiPath(appA, pubSID, "/tracks/close"), secretA, `{"tracks":[{"mid":"9"}],"force":true}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stA, hA, bodyA := rawCall(t, a.http.URL, tc.method, tc.path, tc.secret, tc.body)
			stB, hB, bodyB := rawCall(t, b.http.URL, tc.method, tc.path, tc.secret, tc.body)
			if stA != stB || !bytes.Equal(bodyA, bodyB) {
				t.Fatalf("owner answered %d %s; other pod answered %d %s", stA, bodyA, stB, bodyB)
			}
			for _, h := range []string{"Content-Type", "Access-Control-Allow-Origin", "Vary", "Retry-After"} {
				if hA.Get(h) != hB.Get(h) {
					t.Errorf("header %s: owner %q, other pod %q", h, hA.Get(h), hB.Get(h))
				}
			}
			if len(bodyA) == 0 {
				t.Fatalf("empty body")
			}
		})
	}
	// The fleet token is never handed to the owner's API handler as a
	// client credential, and a made-up token does not open the relay.
	st, _, body := rawCall(t, b.http.URL, "GET", fleet.RelayPrefix+appA+"/"+pubSID+"/cam-video", "", "")
	if st != http.StatusNotFound || !bytes.Contains(body, []byte(`"errorCode":"not_found"`)) {
		t.Fatalf("relay endpoint without token: %d %s", st, body)
	}
}

func TestKeyframeRequestFromAnotherPodReachesPublisher(t *testing.T) {
	pods := newFleet(t, 2, false)
	a, b := pods[0], pods[1]
	pub, pubSID := publish(t, a, appA, secretA, "cam")
	sub, _ := pull(t, b, appA, secretA, pubSID, "cam")
	sub.waitMedia("1", "cam-video", 30)
	// Quiet period: with keyframes flowing nobody asks for one.
	time.Sleep(1500 * time.Millisecond)
	before := pub.plis.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := pub.plis.Load(); n != before {
		t.Fatalf("publisher got %d PLIs while nobody asked", n-before)
	}
	ssrc := sub.stats("1").ssrc
	if ssrc == 0 {
		t.Fatal("subscriber has no video SSRC")
	}
	if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "PLI from pod B's subscriber at the publisher on pod A", func() bool {
		return pub.plis.Load() > before
	})
}

// relayGoroutines lists goroutines running relay code or reading a
// forward.Track layer.
func relayGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "switchboard/sfu/relay.") || strings.Contains(g, "forward.(*Track).readLoop") {
			out = append(out, g)
		}
	}
	return out
}

func TestKillingSourcePodMakesRelayedTrackInactive(t *testing.T) {
	pods := newFleet(t, 2, true)
	a, b := pods[0], pods[1]
	_, pubSID := publish(t, a, appA, secretA, "cam")
	sub, sidB := pull(t, b, appA, secretA, pubSID, "cam")
	sub.waitMedia("1", "cam-video", 20)
	if _, receiving := b.srv.RelayStreams(); receiving != 2 {
		t.Fatalf("pod B receives %d relay streams, want 2", receiving)
	}
	start := time.Now()
	if err := a.srv.Close(); err != nil {
		t.Fatal(err)
	}
	a.http.Close()
	waitFor(t, 30*time.Second, "pulls on B inactive after pod A died", func() bool {
		st := b.state(appA, secretA, sidB)
		return trackStatus(st, "remote", "0") == session.StatusInactive && trackStatus(st, "remote", "1") == session.StatusInactive
	})
	t.Logf("pulls inactive %v after pod A closed", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "relays torn down on B", func() bool {
		_, receiving := b.srv.RelayStreams()
		return receiving == 0
	})
	waitFor(t, 10*time.Second, "no relay goroutine left", func() bool { return len(relayGoroutines()) == 0 })
	// B still serves: a new session works.
	b.newSession(appA, secretA)
}

func TestSilentPublisherOnAnotherPodGoesInactiveAfterTrackTimeout(t *testing.T) {
	pods := newFleet(t, 2, true)
	a, b := pods[0], pods[1]
	pub, pubSID := publish(t, a, appA, secretA, "cam")
	sub, sidB := pull(t, b, appA, secretA, pubSID, "cam")
	sub.waitMedia("1", "cam-video", 20)
	for _, tr := range pub.pc.GetTransceivers() {
		_ = tr.Sender().ReplaceTrack(nil)
	}
	// 29 s of silence on both clocks: still there.
	a.clock.Advance(29 * time.Second)
	b.clock.Advance(29 * time.Second)
	a.srv.Sweep()
	b.srv.Sweep()
	if got := trackStatus(b.state(appA, secretA, sidB), "remote", "1"); got != session.StatusActive {
		t.Fatalf("before the track timeout the pull on B is %q, want active", got)
	}
	a.clock.Advance(2 * time.Second)
	b.clock.Advance(2 * time.Second)
	a.srv.Sweep()
	b.srv.Sweep()
	// B's clock stands still, so its per-session window (50 calls/s) never
	// rolls over: poll at most 40 times in the 10 s.
	deadline := time.Now().Add(10 * time.Second)
	for trackStatus(b.state(appA, secretA, sidB), "remote", "1") != session.StatusInactive {
		if time.Now().After(deadline) {
			t.Fatal("timed out after 10s waiting for the pull on B to go inactive after the track timeout")
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "relays torn down on B", func() bool {
		_, receiving := b.srv.RelayStreams()
		return receiving == 0
	})
}

func TestSimulcastLayerChoiceWorksAcrossPods(t *testing.T) {
	pods := newFleet(t, 2, false)
	a, b := pods[0], pods[1]
	_, pubSID, _ := publishSimulcast(t, a)
	subscribe := func(rid string) (*peer, string) {
		sub := newPeer(t)
		sid := b.newSession(appA, secretA)
		resp := b.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
			{Location: "remote", SessionID: pubSID, TrackName: "sim", Simulcast: &session.Simulcast{PreferredRid: rid}},
		}})
		if resp.Tracks[0].ErrorCode != "" {
			t.Fatalf("pull simulcast on B: %+v", resp.Tracks)
		}
		b.renegotiate(appA, secretA, sid, sub.answer(resp.SessionDescription))
		return sub, sid
	}
	subB, sidB := subscribe("b")
	subC, _ := subscribe("c")
	subB.waitMedia("0", "simb", 10)
	subC.waitMedia("0", "simc", 10)
	if n := recent(subB, "0", "sima", 300*time.Millisecond) + subB.count("0", "simc"); n != 0 {
		t.Fatalf("subscriber preferring b got %d packets of other layers", n)
	}
	if n := subC.count("0", "sima") + subC.count("0", "simb"); n != 0 {
		t.Fatalf("subscriber preferring c got %d packets of other layers", n)
	}
	if _, receiving := b.srv.RelayStreams(); receiving != 1 {
		t.Fatalf("pod B receives %d relay streams for one simulcast track, want 1", receiving)
	}
	// tracks/update on B switches one subscriber; the other keeps its layer.
	var out session.TracksResponse
	st, raw := b.call("PUT", apiPath(appA, sidB, "/tracks/update"), secretA, map[string]any{"tracks": []map[string]any{{
		"location": "remote", "mid": "0", "sessionId": pubSID, "trackName": "sim", "simulcast": map[string]string{"preferredRid": "a"},
	}}}, &out)
	if st != 200 || out.Tracks[0].ErrorCode != "" {
		t.Fatalf("update on B: %d %s", st, raw)
	}
	subB.waitMedia("0", "sima", 10)
	subC.waitMedia("0", "simc", subC.count("0", "simc")+10)
	if n := subC.count("0", "sima") + subC.count("0", "simb"); n != 0 {
		t.Fatalf("the other subscriber changed layer: %d packets", n)
	}
}
