package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestIdentifierAuthenticatesCallsAndTURNKeyRequests(t *testing.T) {
	id := NewIdentifier(&config.Pod{Apps: []config.App{
		{ID: appA, SecretSHA256: hashHex("secret-a"), TURNKey: &config.TURNKey{ID: "key1", TokenSHA256: hashHex("turn-token"), HMACSecret: "x"}},
		{ID: appB, SecretSHA256: hashHex("secret-b")},
	}})
	for _, tc := range []struct {
		name, method, path, auth string
		want                     Identity
	}{
		{"valid secret", "POST", "/v1/apps/" + appA + "/sessions/new", "Bearer secret-a", Identity{appA, true, true}},
		{"legacy path", "PUT", "/apps/" + appA + "/sessions/x/renegotiate", "Bearer secret-a", Identity{appA, true, true}},
		{"another app's secret", "POST", "/v1/apps/" + appA + "/sessions/new", "Bearer secret-b", Identity{appA, false, true}},
		{"no credentials", "POST", "/v1/apps/" + appB + "/sessions/new", "", Identity{appB, false, true}},
		{"unknown app", "POST", "/v1/apps/ffffffffffffffffffffffffffffffff/sessions/new", "Bearer secret-a", Identity{"ffffffffffffffffffffffffffffffff", false, true}},
		{"turn key token", "POST", "/v1/turn/keys/key1/credentials/generate-ice-servers", "Bearer turn-token", Identity{appA, true, true}},
		{"turn key wrong token", "POST", "/v1/turn/keys/key1/credentials/generate", "Bearer secret-a", Identity{appA, false, true}},
		{"unknown turn key", "POST", "/v1/turn/keys/nope/credentials/generate", "Bearer turn-token", Identity{"", false, true}},
		{"preflight", "OPTIONS", "/v1/apps/" + appA + "/sessions/new", "", Identity{}},
		{"demo page", "GET", "/", "", Identity{}},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got := id.Identify(r); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := NewIdentifier(nil).Identify(httptest.NewRequest(http.MethodGet, "/v1/apps/x/sessions/y", nil)); got != (Identity{"x", false, true}) {
		t.Errorf("empty config: %+v", got)
	}
}
