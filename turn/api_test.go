package turn

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func postAPI(t *testing.T, h http.Handler, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var apiNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newTestAPI() (*API, *MemoryRevocations) {
	rev := NewMemoryRevocations(func() time.Time { return apiNow })
	return NewAPI(testPod(), rev, func() time.Time { return apiNow }, nil), rev
}

func TestGenerateICEServersReturnsCallsShape(t *testing.T) {
	api, rev := newTestAPI()
	// No Content-Type, as partytracks sends it.
	rec := postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/generate-ice-servers", tokenA, `{"ttl": 3600}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.ICEServers) != 2 {
		t.Fatalf("%d ICE servers, want 2: %s", len(body.ICEServers), rec.Body)
	}
	if got := strings.Join(body.ICEServers[0].URLs, ","); got != "stun:turn.example.test:3478" {
		t.Errorf("STUN entry %q", got)
	}
	if body.ICEServers[0].Username != "" || body.ICEServers[0].Credential != "" {
		t.Errorf("STUN entry carries credentials")
	}
	turnEntry := body.ICEServers[1]
	if got := strings.Join(turnEntry.URLs, ","); got != "turn:turn.example.test:3478?transport=udp,turn:turn.example.test:3478?transport=tcp,turns:turn.example.test:5349?transport=tcp" {
		t.Errorf("TURN URLs %q", got)
	}
	u, err := ParseUsername(turnEntry.Username)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Expiry.Equal(apiNow.Add(time.Hour)) || u.KeyID != keyA {
		t.Errorf("username %q: expiry %s key %q", turnEntry.Username, u.Expiry, u.KeyID)
	}
	if turnEntry.Credential != Password([]byte(secretA), turnEntry.Username) {
		t.Errorf("credential is not HMAC-SHA1 of the username under the key's secret")
	}
	kr := NewKeyring(testPod())
	if _, pass, err := kr.Check(turnEntry.Username, apiNow, rev); err != nil || pass != turnEntry.Credential {
		t.Errorf("TURN server would refuse the issued credential: %v", err)
	}
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("CORS origin %q", got)
	}
}

func TestGenerateICEServersDefaultsTTLTo24h(t *testing.T) {
	api, _ := newTestAPI()
	for _, body := range []string{"", "{}", `{"ttl":null}`} {
		rec := postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/generate-ice-servers", tokenA, body)
		if rec.Code != 201 {
			t.Fatalf("body %q: status %d", body, rec.Code)
		}
		var out struct {
			ICEServers []ICEServer `json:"iceServers"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		u, err := ParseUsername(out.ICEServers[len(out.ICEServers)-1].Username)
		if err != nil || !u.Expiry.Equal(apiNow.Add(24*time.Hour)) {
			t.Fatalf("body %q: expiry %s, %v; want now+24h", body, u.Expiry, err)
		}
	}
}

func TestLegacyGenerateReturnsSingleObject(t *testing.T) {
	api, _ := newTestAPI()
	rec := postAPI(t, api, "/v1/turn/keys/"+keyB+"/credentials/generate", tokenB, `{"ttl":86400}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
	var out struct {
		ICEServers ICEServer `json:"iceServers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("iceServers is not a single object: %v (%s)", err, rec.Body)
	}
	want := "stun:turn.example.test:3478,turn:turn.example.test:3478?transport=udp,turn:turn.example.test:3478?transport=tcp,turns:turn.example.test:5349?transport=tcp"
	if got := strings.Join(out.ICEServers.URLs, ","); got != want {
		t.Errorf("urls %q", got)
	}
	if out.ICEServers.Credential != Password([]byte(secretB), out.ICEServers.Username) {
		t.Error("credential not signed with key B's secret")
	}
}

func TestCredentialsAPIErrors(t *testing.T) {
	api, _ := newTestAPI()
	gen := "/v1/turn/keys/" + keyA + "/credentials/generate-ice-servers"
	cases := []struct {
		name, path, token, body string
		status                  int
		want                    string
	}{
		{"no token", gen, "", `{"ttl":60}`, 401, `{"errorCode":"unauthorized","errorDescription":"TURN key ID or API token not accepted"}`},
		{"wrong token", gen, tokenB, `{"ttl":60}`, 401, `{"errorCode":"unauthorized","errorDescription":"TURN key ID or API token not accepted"}`},
		{"unknown key", "/v1/turn/keys/nope/credentials/generate-ice-servers", tokenA, `{"ttl":60}`, 401, `{"errorCode":"unauthorized","errorDescription":"TURN key ID or API token not accepted"}`},
		{"ttl above 48h", gen, tokenA, `{"ttl":172801}`, 400, `{"errorCode":"decoding_error","errorDescription":"ttl must be an integer number of seconds between 1 and 172800 (48 h)"}`},
		{"negative ttl", gen, tokenA, `{"ttl":-5}`, 400, `{"errorCode":"decoding_error","errorDescription":"ttl must be an integer number of seconds between 1 and 172800 (48 h)"}`},
		{"fractional ttl", gen, tokenA, `{"ttl":1.5}`, 400, `{"errorCode":"decoding_error","errorDescription":"ttl must be an integer number of seconds between 1 and 172800 (48 h)"}`},
		{"bad json", gen, tokenA, `{"ttl":`, 400, `{"errorCode":"decoding_error","errorDescription":"request body is not valid JSON"}`},
		{"unknown path", "/v1/turn/keys/" + keyA + "/credentials/other", tokenA, ``, 404, `{"errorCode":"not_found","errorDescription":"no such TURN API path"}`},
		{"revoke other key's credential", "/v1/turn/keys/" + keyA + "/credentials/4102444800:" + keyB + ":x/revoke", tokenA, ``, 404, `{"errorCode":"not_found","errorDescription":"no such credential for this TURN key"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := postAPI(t, api, c.path, c.token, c.body)
			if rec.Code != c.status || strings.TrimSpace(rec.Body.String()) != c.want {
				t.Fatalf("got %d %s; want %d %s", rec.Code, rec.Body, c.status, c.want)
			}
		})
	}
	t.Run("ttl exactly 48h", func(t *testing.T) {
		if rec := postAPI(t, api, gen, tokenA, `{"ttl":172800}`); rec.Code != 201 {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("GET", func(t *testing.T) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, gen, nil))
		if rec.Code != 405 || rec.Header().Get("Allow") != "POST, OPTIONS" {
			t.Fatalf("got %d Allow=%q", rec.Code, rec.Header().Get("Allow"))
		}
	})
}

func TestRevokeReturns204AndRefusesTheCredential(t *testing.T) {
	api, rev := newTestAPI()
	rec := postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/generate-ice-servers", tokenA, `{"ttl":600}`)
	var out struct {
		ICEServers []ICEServer `json:"iceServers"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	user := out.ICEServers[1].Username
	rec = postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/"+user+"/revoke", tokenA, "")
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("revoke: %d %q", rec.Code, rec.Body)
	}
	if _, _, err := NewKeyring(testPod()).Check(user, apiNow, rev); err == nil {
		t.Fatal("revoked credential still checks out")
	}
	if rec := postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/"+user+"/revoke", tokenB, ""); rec.Code != 401 {
		t.Fatalf("revoke with another key's token: %d", rec.Code)
	}
}

func TestCORSPreflight(t *testing.T) {
	api, _ := newTestAPI()
	req := httptest.NewRequest(http.MethodOptions, "/v1/turn/keys/"+keyA+"/credentials/generate-ice-servers", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != 204 ||
		rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example" ||
		rec.Header().Get("Access-Control-Allow-Headers") != "authorization, content-type" ||
		rec.Header().Get("Vary") != "Origin" {
		t.Fatalf("preflight: %d %v", rec.Code, rec.Header())
	}
}
