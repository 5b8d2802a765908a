package sfu_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
)

// newPlacementFleet starts n fleet pods in this process (like newFleet)
// that poll each other's load every poll; mut adjusts each pod's config.
func newPlacementFleet(t *testing.T, n int, poll time.Duration, mut func(*config.Pod)) []*env {
	t.Helper()
	return startFleet(t, n, fleetOptions{poll: poll, mut: mut})
}

// postNewSession sends sessions/new to a pod as a client would (pinned:
// with the fleet token, so the pod serves it itself whatever its load)
// and returns the status, the raw body and the session ID.
func postNewSession(t *testing.T, e *env, pinned bool) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.http.URL+"/v1/apps/"+appA+"/sessions/new", nil)
	req.Header.Set("Authorization", "Bearer "+secretA)
	if pinned {
		req.Header.Set(fleet.TokenHeader, fleetToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		SessionID string `json:"sessionId"`
	}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, string(raw), out.SessionID
}

// waitPeerSessions waits until pod e sees each peer of want with that
// many sessions.
func waitPeerSessions(t *testing.T, e *env, want map[int]int) {
	t.Helper()
	waitFor(t, 10*time.Second, "peer loads in the view", func() bool {
		got := map[int]int{}
		for _, l := range e.srv.PeerLoads() {
			got[l.Ordinal] = l.Sessions
		}
		for o, n := range want {
			if v, ok := got[o]; !ok || v != n {
				return false
			}
		}
		return true
	})
}

// placedOn creates a session through pod e as a client and returns the
// ordinal its ID names.
func placedOn(t *testing.T, e *env) (int, string) {
	t.Helper()
	st, body, sid := postNewSession(t, e, false)
	if st != http.StatusCreated || !callsSessionID(sid) || body != `{"sessionId":"`+sid+`"}`+"\n" && body != `{"sessionId":"`+sid+`"}` {
		t.Fatalf("sessions/new: %d %q", st, body)
	}
	o, _ := fleet.Owner(sid)
	return o, sid
}

func callsSessionID(s string) bool {
	if len(s) != 32 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

func TestNewSessionsGoToTheLeastLoadedPod(t *testing.T) {
	pods := newPlacementFleet(t, 3, 100*time.Millisecond, nil)
	// Skewed load: 3 sessions on pod 0, 1 on pod 1, none on pod 2.
	for i, n := range []int{3, 1, 0} {
		for range n {
			if st, body, _ := postNewSession(t, pods[i], true); st != http.StatusCreated {
				t.Fatalf("pinned session on pod %d: %d %s", i, st, body)
			}
		}
	}
	waitPeerSessions(t, pods[0], map[int]int{1: 1, 2: 0})
	owner, sid := placedOn(t, pods[0])
	if owner != 2 {
		t.Fatalf("a new session sent to pod 0 (3 sessions) went to pod %d, want pod 2 (0 sessions)", owner)
	}
	if n := pods[2].srv.Load().Sessions; n != 1 {
		t.Fatalf("pod 2 has %d sessions after placement, want 1", n)
	}
	// The client goes on through the pod it knows; calls reach the owner.
	if st, raw := pods[0].call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != http.StatusOK {
		t.Fatalf("GET placed session through pod 0: %d %s", st, raw)
	}
	// 3, 1, 1: pod 1 ties with pod 2 and keeps the session itself.
	waitPeerSessions(t, pods[1], map[int]int{0: 3, 2: 1})
	if owner, _ := placedOn(t, pods[1]); owner != 1 {
		t.Fatalf("tie between pod 1 and pod 2: placed on %d, want the entry pod 1", owner)
	}
	// 3, 2, 1: pod 2 is the least loaded, but it stops answering; the
	// session goes to the next one, pod 1.
	waitPeerSessions(t, pods[0], map[int]int{1: 2, 2: 1})
	pods[2].http.Close()
	if owner, _ := placedOn(t, pods[0]); owner != 1 {
		t.Fatalf("with pod 2 unreachable the session went to pod %d, want pod 1", owner)
	}
	waitFor(t, 10*time.Second, "unreachable pod 2 left out of pod 0's view", func() bool {
		for _, l := range pods[0].srv.PeerLoads() {
			if l.Ordinal == 2 {
				return false
			}
		}
		return true
	})
}

func TestLoadEndpointNeedsTheFleetToken(t *testing.T) {
	pods := newPlacementFleet(t, 2, -1, nil)
	pods[1].newSession(appA, secretA)
	for _, tok := range []string{"", "guessed-token-0123456789"} {
		req, _ := http.NewRequest("GET", pods[1].http.URL+fleet.LoadPath, nil)
		if tok != "" {
			req.Header.Set(fleet.TokenHeader, tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("load endpoint with token %q: %d, want 404", tok, resp.StatusCode)
		}
	}
	pods[0].srv.PollPeers()
	got := pods[0].srv.PeerLoads()
	if len(got) != 1 || got[0] != (fleet.Load{Ordinal: 1, Ready: true, Sessions: 1}) {
		t.Fatalf("pod 0's view of pod 1: %+v", got)
	}
}

// metric returns the value of one sample line of pod e's /metrics.
func metric(t *testing.T, e *env, sample string) string {
	t.Helper()
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

func TestDrainingPodPlacesNewSessionsOnPeersAndKeepsItsCall(t *testing.T) {
	pods := newPlacementFleet(t, 2, 100*time.Millisecond, func(p *config.Pod) {
		for i := range p.Apps {
			p.Apps[i].Sessions.ReconnectWindowSeconds = 1
		}
	})
	a, b := pods[0], pods[1]
	pub, pubSID := publish(t, a, appA, secretA, "cam")
	if o, _ := fleet.Owner(pubSID); o != 0 {
		t.Fatalf("publisher's session on pod %d, want 0", o)
	}
	// A subscriber joins through A; B is emptier, so its session lands on
	// B and pulls A's tracks through the relay.
	waitPeerSessions(t, a, map[int]int{1: 0})
	sub, subSID := pull(t, a, appA, secretA, pubSID, "cam")
	if o, _ := fleet.Owner(subSID); o != 1 {
		t.Fatalf("subscriber's session on pod %d, want 1 (least loaded)", o)
	}
	sub.waitMedia("1", "cam-video", 20)
	if v := metric(t, a, "switchboard_draining"); v != "0" {
		t.Fatalf("switchboard_draining before the drain: %q", v)
	}

	drained := make(chan sfu.DrainResult, 1)
	start := time.Now()
	go func() { drained <- a.srv.DrainUntil(context.Background(), time.Now().Add(60*time.Second)) }()
	waitFor(t, 5*time.Second, "pod A unready", func() bool {
		st, raw := a.call("GET", "/ready", "", nil, nil)
		return st == http.StatusServiceUnavailable && strings.Contains(string(raw), `"draining":true`)
	})
	if v := metric(t, a, "switchboard_draining"); v != "1" {
		t.Fatalf("switchboard_draining while draining: %q", v)
	}
	if v := metric(t, a, `switchboard_sessions{app="`+appA+`"}`); v != "1" {
		t.Fatalf("switchboard_sessions on the draining pod: %q, want its remaining 1", v)
	}
	waitFor(t, 5*time.Second, "B sees A draining", func() bool {
		l := b.srv.PeerLoads()
		return len(l) == 1 && l[0].Draining && !l[0].Ready && l[0].Sessions == 1
	})
	// New sessions sent to the draining pod land on B, with the normal 201.
	for range 2 {
		if o, _ := placedOn(t, a); o != 1 {
			t.Fatalf("new session through draining pod A placed on %d, want B", o)
		}
	}
	// The existing call keeps flowing: the relay from A keeps feeding B's
	// subscriber, and A's session still answers.
	n := sub.count("1", "cam-video")
	sub.waitMedia("1", "cam-video", n+50)
	if st, raw := a.call("GET", apiPath(appA, pubSID, ""), secretA, nil, nil); st != http.StatusOK {
		t.Fatalf("publisher's session on the draining pod: %d %s", st, raw)
	}
	select {
	case r := <-drained:
		t.Fatalf("drain ended while the call was live: %+v", r)
	default:
	}
	// With B draining too, nobody can take a new session: 503.
	b.srv.Drain()
	waitFor(t, 5*time.Second, "A sees B draining", func() bool {
		l := a.srv.PeerLoads()
		return len(l) == 1 && l[0].Draining
	})
	if st, body, _ := postNewSession(t, a, false); st != http.StatusServiceUnavailable || !strings.Contains(body, "temporarily_unavailable_error") {
		t.Fatalf("new session with every pod draining: %d %s", st, body)
	}
	// The client ends the call: the drain finishes long before its 60 s.
	sub.close()
	pub.close()
	ended := time.Now()
	select {
	case r := <-drained:
		if r.TimedOut || r.Sessions != 0 || r.RelayStreams != 0 {
			t.Fatalf("drain result %+v, want finished with nothing left", r)
		}
		t.Logf("drain took %v, %v after the client left", time.Since(start).Round(time.Millisecond), time.Since(ended).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not finish within 30 s of the call ending")
	}
}

func TestDrainEndsAtTheTimeoutWithSessionsLeft(t *testing.T) {
	e := newEnv(t, envOpt{})
	sid := e.newSession(appA, secretA)
	start := time.Now()
	r := e.srv.DrainUntil(context.Background(), start.Add(2*time.Second))
	took := time.Since(start)
	if !r.TimedOut || r.Sessions != 1 {
		t.Fatalf("drain result %+v, want timed out with 1 session left", r)
	}
	if took < 2*time.Second || took > 8*time.Second {
		t.Fatalf("drain with a 2 s timeout took %v", took)
	}
	// Draining does not close anything: the session is still there until
	// the caller closes the server.
	if st, raw := e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil); st != http.StatusOK {
		t.Fatalf("session after the drain timeout: %d %s", st, raw)
	}
	if v := metric(t, e, `switchboard_sessions{app="`+appA+`"}`); v != "1" {
		t.Fatalf("switchboard_sessions after the drain: %q", v)
	}
	if v := metric(t, e, "switchboard_draining"); v != "1" {
		t.Fatalf("switchboard_draining: %q", v)
	}
}
