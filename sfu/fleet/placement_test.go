package fleet

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

const testToken = "0123456789abcdef-token"

func TestOrderPutsTheLeastLoadedAvailablePodFirst(t *testing.T) {
	up := func(o, s int) Load { return Load{Ordinal: o, Ready: true, Sessions: s} }
	cases := []struct {
		name  string
		self  Load
		peers []Load
		want  []int
	}{
		{"fewest sessions first", up(0, 5), []Load{up(1, 2), up(2, 9)}, []int{1, 0, 2}},
		{"a tie prefers the entry pod", up(1, 2), []Load{up(0, 2), up(2, 2)}, []int{1, 0, 2}},
		{"a tie between peers prefers the lower ordinal", up(0, 4), []Load{up(3, 1), up(2, 1)}, []int{2, 3, 0}},
		{"a draining entry pod places on peers only", Load{Ordinal: 0, Ready: true, Draining: true}, []Load{up(1, 7)}, []int{1}},
		{"draining and unready peers are left out", up(0, 9), []Load{{Ordinal: 1, Ready: true, Draining: true}, {Ordinal: 2}}, []int{0}},
		{"nobody available", Load{Ordinal: 0, Draining: true}, []Load{{Ordinal: 1, Draining: true}}, nil},
		{"a peer claiming the entry pod's ordinal is ignored", up(0, 3), []Load{up(0, 0)}, []int{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, l := range Order(tc.self, tc.peers) {
				got = append(got, l.Ordinal)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("order %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("order %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestMembersPeersJoinStaticPeersAndOrdinals(t *testing.T) {
	m := NewMembers(1, &config.Fleet{Token: testToken, PeerTemplate: "p-{ordinal}:8080",
		Peers: []config.FleetPeer{{Ordinal: 7, Address: "127.0.0.7:8080"}}, Ordinals: []int{0, 1, 2, 7, -1}})
	got := m.Peers()
	if len(got) != 3 || got[0] != 0 || got[1] != 2 || got[2] != 7 {
		t.Fatalf("peers %v, want [0 2 7] (self and bad ordinals left out)", got)
	}
}

// loadPeer is a fake pod answering LoadPath with a fixed load when the
// fleet token is right.
func loadPeer(t *testing.T, l Load) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != LoadPath || r.Header.Get(TokenHeader) != testToken {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(l)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestViewKeepsFreshAnswersAndSkipsStaleOrUnreachablePeers(t *testing.T) {
	p1 := loadPeer(t, Load{Ordinal: 1, Ready: true, Sessions: 4})
	liar := loadPeer(t, Load{Ordinal: 9, Ready: true}) // configured as 2
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	dead.Close()
	m := NewMembers(0, &config.Fleet{Token: testToken, Peers: []config.FleetPeer{
		{Ordinal: 1, Address: p1.Listener.Addr().String()},
		{Ordinal: 2, Address: liar.Listener.Addr().String()},
		{Ordinal: 3, Address: deadAddr},
	}})
	now := time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	v := NewView(ViewOptions{Members: func() *Members { return m }, Interval: time.Second,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	defer v.Close()
	v.Poll(context.Background())
	got := v.Peers()
	if len(got) != 1 || got[0] != (Load{Ordinal: 1, Ready: true, Sessions: 4}) {
		t.Fatalf("view %+v, want only pod 1 (pod 2 named another ordinal, pod 3 is unreachable)", got)
	}
	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	if len(v.Peers()) != 1 {
		t.Fatal("an answer 3 s old (3 poll intervals) must still count")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if got := v.Peers(); len(got) != 0 {
		t.Fatalf("stale answers still used: %+v", got)
	}
	// A peer that stops answering is forgotten at the next poll.
	v.Poll(context.Background())
	if len(v.Peers()) != 1 {
		t.Fatal("pod 1 answered again but is not in the view")
	}
	p1.Close()
	v.Poll(context.Background())
	if got := v.Peers(); len(got) != 0 {
		t.Fatalf("unreachable pod still in the view: %+v", got)
	}
}

// fakePod records the sessions/new calls it serves.
type fakePod struct {
	srv    *httptest.Server
	status int
	mu     sync.Mutex
	bodies []string
}

func newFakePod(t *testing.T, status int, load Load) *fakePod {
	t.Helper()
	f := &fakePod{status: status}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(TokenHeader) != testToken {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == LoadPath {
			_ = json.NewEncoder(w).Encode(load)
			return
		}
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, `{"sessionId":"from-`+r.Host+`"}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePod) served() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

func TestRouterPlacesNewSessionsAndFallsBackPastFailingPods(t *testing.T) {
	full := newFakePod(t, http.StatusServiceUnavailable, Load{Ordinal: 1, Ready: true, Sessions: 0})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	okPod := newFakePod(t, http.StatusCreated, Load{Ordinal: 3, Ready: true, Sessions: 2})
	m := NewMembers(0, &config.Fleet{Token: testToken, Peers: []config.FleetPeer{
		{Ordinal: 1, Address: full.srv.Listener.Addr().String()},
		{Ordinal: 2, Address: deadAddr},
		{Ordinal: 3, Address: okPod.srv.Listener.Addr().String()},
	}})
	members := func() *Members { return m }
	var localCalls int
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localCalls++
		w.WriteHeader(299)
	})
	self := Load{Ordinal: 0, Ready: true, Sessions: 5}
	v := NewView(ViewOptions{Members: members})
	defer v.Close()
	rt := NewRouter(members, local, nil, nil)
	rt.Self = func() Load { return self }
	rt.View = v
	// Pod 2 answered the last poll and then died.
	v.Poll(context.Background())
	v.mu.Lock()
	v.peers[2] = seen{load: Load{Ordinal: 2, Ready: true, Sessions: 1}, at: time.Now()}
	v.mu.Unlock()
	dead.Close()

	body := `{"sessionDescription":{"type":"offer","sdp":"v=0..."}}`
	req := httptest.NewRequest("POST", "/v1/apps/a/sessions/new?thirdparty=false", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer app-secret")
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	// Order: 1 (0 sessions, answers 503), 2 (1, unreachable), 3 (2), self (5).
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), "from-") || localCalls != 0 {
		t.Fatalf("placed call: %d %s (local calls %d)", w.Code, w.Body, localCalls)
	}
	if got := okPod.served(); len(got) != 1 || got[0] != body {
		t.Fatalf("pod 3 got %q, want the client's body once", got)
	}
	if got := full.served(); len(got) != 1 || got[0] != body {
		t.Fatalf("pod 1 (503) got %q, want the body once", got)
	}
	// Pods that failed are out of the view until they answer a poll again.
	for _, l := range v.Peers() {
		if l.Ordinal == 1 || l.Ordinal == 2 {
			t.Fatalf("failed pod %d still in the view", l.Ordinal)
		}
	}
	// A call another pod placed here is served here.
	req = httptest.NewRequest("POST", "/apps/a/sessions/new", strings.NewReader(body))
	req.Header.Set(TokenHeader, testToken)
	w = httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != 299 || localCalls != 1 {
		t.Fatalf("placed call arriving here: %d, local calls %d", w.Code, localCalls)
	}
	// Draining, and the only peer left answers 503: served here (the API
	// answers its draining 503), with the client's body intact.
	self.Draining = true
	v.Poll(context.Background())
	v.Forget(3)
	req = httptest.NewRequest("POST", "/v1/apps/a/sessions/new", strings.NewReader(body))
	w = httptest.NewRecorder()
	var localBody string
	rt.Local = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		localBody = string(b)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	rt.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || localBody != body || len(full.served()) != 2 {
		t.Fatalf("draining with no peer: %d, local body %q, pod 1 asked %d times", w.Code, localBody, len(full.served()))
	}
}

// Within one poll interval the entry pod counts the sessions it placed,
// so a burst spreads over the peers instead of all going to the one that
// looked emptiest at the last poll.
func TestBurstOfNewSessionsSpreadsBeforeTheNextPoll(t *testing.T) {
	p1 := newFakePod(t, http.StatusCreated, Load{Ordinal: 1, Ready: true, Sessions: 0})
	p2 := newFakePod(t, http.StatusCreated, Load{Ordinal: 2, Ready: true, Sessions: 1})
	m := NewMembers(0, &config.Fleet{Token: testToken, Peers: []config.FleetPeer{
		{Ordinal: 1, Address: p1.srv.Listener.Addr().String()},
		{Ordinal: 2, Address: p2.srv.Listener.Addr().String()},
	}})
	members := func() *Members { return m }
	v := NewView(ViewOptions{Members: members})
	defer v.Close()
	v.Poll(context.Background())
	rt := NewRouter(members, http.NotFoundHandler(), nil, nil)
	rt.Self = func() Load { return Load{Ordinal: 0, Ready: true, Sessions: 9} }
	rt.View = v
	for range 4 {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest("POST", "/v1/apps/a/sessions/new", strings.NewReader("{}")))
		if w.Code != http.StatusCreated {
			t.Fatalf("placement: %d %s", w.Code, w.Body)
		}
	}
	// Known loads 0 and 1: pod 1, then a tie (pod 1 by ordinal), then pod
	// 2 (2 against 1), then a tie again (pod 1).
	if n1, n2 := len(p1.served()), len(p2.served()); n1 != 3 || n2 != 1 {
		t.Fatalf("pod 1 got %d and pod 2 got %d of 4 new sessions, want 3 and 1", n1, n2)
	}
}

// A pod that starts draining before it has heard from its peers asks them
// on the spot instead of refusing the session.
func TestDrainingPodWithAnEmptyViewAsksItsPeersBeforeRefusing(t *testing.T) {
	p1 := newFakePod(t, http.StatusCreated, Load{Ordinal: 1, Ready: true, Sessions: 3})
	m := NewMembers(0, &config.Fleet{Token: testToken, Peers: []config.FleetPeer{{Ordinal: 1, Address: p1.srv.Listener.Addr().String()}}})
	members := func() *Members { return m }
	v := NewView(ViewOptions{Members: members})
	defer v.Close()
	rt := NewRouter(members, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}), nil, nil)
	rt.Self = func() Load { return Load{Ordinal: 0, Ready: false, Draining: true} }
	rt.View = v
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, httptest.NewRequest("POST", "/apps/a/sessions/new", strings.NewReader("{}")))
	if w.Code != http.StatusCreated || len(p1.served()) != 1 {
		t.Fatalf("draining pod with an empty view: %d %s, peer served %d", w.Code, w.Body, len(p1.served()))
	}
}
