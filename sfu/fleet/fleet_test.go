package fleet

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

var callsID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestSessionIDNamesItsPodAndKeepsTheCallsShape(t *testing.T) {
	for _, ord := range []int{0, 1, 9, 255, 4096, MaxOrdinal} {
		id := NewSessionID(ord)
		if !callsID.MatchString(id) {
			t.Fatalf("ordinal %d: id %q is not 32 lowercase hex", ord, id)
		}
		if got, ok := Owner(id); !ok || got != ord {
			t.Fatalf("ordinal %d: Owner(%q) = %d, %v", ord, id, got, ok)
		}
	}
	if x, y := NewSessionID(3), NewSessionID(3); x == y {
		t.Fatal("two session IDs of one pod are equal")
	}
	for _, bad := range []string{"", "abc", "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef0"} {
		if _, ok := Owner(bad); ok {
			t.Errorf("Owner(%q) accepted a malformed ID", bad)
		}
	}
}

func TestOrdinalFromPodName(t *testing.T) {
	cases := map[string]int{"demo-sfu-0": 0, "demo-sfu-12": 12, "a-65535": 65535}
	for name, want := range cases {
		if got, err := OrdinalFromPodName(name); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "demo", "demo-sfu-", "12", "demo-sfu-65536", "demo_3"} {
		if _, err := OrdinalFromPodName(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMembersAddressesAndToken(t *testing.T) {
	m := NewMembers(1, &config.Fleet{Token: "0123456789abcdef-token", PeerTemplate: "p-sfu-{ordinal}.p-sfu-internal.ns.svc:8080",
		Peers: []config.FleetPeer{{Ordinal: 7, Address: "127.0.0.7:8080"}}})
	if a, _ := m.Address(2); a != "p-sfu-2.p-sfu-internal.ns.svc:8080" {
		t.Errorf("template address %q", a)
	}
	if a, _ := m.Address(7); a != "127.0.0.7:8080" {
		t.Errorf("static address %q", a)
	}
	if _, ok := m.RemoteOwner(NewSessionID(1)); ok {
		t.Error("own session reported as remote")
	}
	if a, ok := m.RemoteOwner(NewSessionID(7)); !ok || a != "127.0.0.7:8080" {
		t.Errorf("remote owner %q %v", a, ok)
	}
	if m.Authentic("") || m.Authentic("0123456789abcdef-tokeN") || !m.Authentic("0123456789abcdef-token") {
		t.Error("token check wrong")
	}
	if NewMembers(0, nil) != nil {
		t.Error("no fleet config must mean no membership")
	}
	if _, err := NewMembers(0, &config.Fleet{Token: "x"}).Address(3); err == nil {
		t.Error("unknown peer without template must fail")
	}
}

func TestRouterServesForwardedCallsLocallyAndHidesRelayWithoutToken(t *testing.T) {
	m := NewMembers(0, &config.Fleet{Token: "0123456789abcdef-token", Peers: []config.FleetPeer{{Ordinal: 1, Address: "127.0.0.1:1"}}})
	var sawToken string
	var sawForwarded bool
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken = r.Header.Get(TokenHeader)
		sawForwarded = Forwarded(r)
		w.WriteHeader(299)
	})
	relay := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(298) })
	rt := NewRouter(func() *Members { return m }, local, relay, nil)
	remoteID := NewSessionID(1)

	// A call that another pod forwarded is served here even though the ID
	// names pod 1: no loops, and the token does not reach the API.
	req := httptest.NewRequest("GET", "/v1/apps/a/sessions/"+remoteID, nil)
	req.Header.Set(TokenHeader, "0123456789abcdef-token")
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != 299 || sawToken != "" || !sawForwarded {
		t.Fatalf("forwarded call: %d, token seen by API %q, marked forwarded %v", w.Code, sawToken, sawForwarded)
	}
	// A made-up token is dropped and the call is an ordinary client call.
	req = httptest.NewRequest("GET", "/v1/apps/a/sessions/"+NewSessionID(0), nil)
	req.Header.Set(TokenHeader, "guessed-token-0123456789")
	w = httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != 299 || sawToken != "" || sawForwarded {
		t.Fatalf("guessed token: %d, token seen %q, marked forwarded %v", w.Code, sawToken, sawForwarded)
	}
	// sessions/new and other pods' calls with an unreachable owner.
	w = httptest.NewRecorder()
	rt.ServeHTTP(w, httptest.NewRequest("POST", "/v1/apps/a/sessions/new", nil))
	if w.Code != 299 {
		t.Fatalf("sessions/new must stay local, got %d", w.Code)
	}
	w = httptest.NewRecorder()
	rt.ServeHTTP(w, httptest.NewRequest("GET", "/apps/a/sessions/"+remoteID, nil))
	if w.Code != http.StatusGone {
		t.Fatalf("call for a session on an unreachable pod: %d %s", w.Code, w.Body)
	}
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		req = httptest.NewRequest("GET", RelayPrefix+"a/"+remoteID+"/t", nil)
		if tok != "" {
			req.Header.Set(TokenHeader, tok)
		}
		w = httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound {
			t.Fatalf("relay with token %q: %d", tok, w.Code)
		}
	}
	req = httptest.NewRequest("GET", RelayPrefix+"a/"+remoteID+"/t", nil)
	req.Header.Set(TokenHeader, "0123456789abcdef-token")
	w = httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != 298 {
		t.Fatalf("relay with the fleet token: %d", w.Code)
	}
}
