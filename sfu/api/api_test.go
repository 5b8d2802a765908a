package api

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

func TestAuthenticateAcceptsOnlyTheAppsOwnSecret(t *testing.T) {
	sum := sha256.Sum256([]byte("right"))
	apps := NewApps()
	apps.Set([]config.App{{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", SecretSHA256: hex.EncodeToString(sum[:])}})
	cases := []struct {
		app, header string
		ok          bool
	}{
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Bearer right", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bearer right", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Bearer wrong", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "right", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", false},
		{"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "Bearer right", false},
	}
	for _, c := range cases {
		if got := apps.authenticate(session.AppID(c.app), c.header) != nil; got != c.ok {
			t.Errorf("%s %q: authenticated=%v", c.app, c.header, got)
		}
	}
	lim, ok := apps.Limits("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	if !ok || lim.MaxTracksPerCall != 64 || lim.ConnectWait != 5*time.Second || lim.TrackTimeout != 30*time.Second || lim.ReconnectWindow != 30*time.Second {
		t.Fatalf("default limits: %+v", lim)
	}
	apps.Set(nil)
	if apps.authenticate("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Bearer right") != nil {
		t.Fatal("a removed app still authenticates")
	}
}

func TestSessionLimiterIsAFixedOneSecondWindowPerSession(t *testing.T) {
	c := clock.NewFake(time.Unix(1000, 0))
	l := newSessionLimiter(c)
	for i := 0; i < 3; i++ {
		if !l.allow("s1", 3) {
			t.Fatalf("call %d refused", i)
		}
	}
	if l.allow("s1", 3) {
		t.Fatal("4th call in the second allowed")
	}
	if !l.allow("s2", 3) {
		t.Fatal("another session shares the quota")
	}
	c.Advance(time.Second)
	if !l.allow("s1", 3) {
		t.Fatal("the next second must start a new window")
	}
}
