package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// app is one configured app with its decoded secret hash.
type app struct {
	cfg    config.App
	hash   [32]byte
	limits session.Limits
}

// Apps is the live set of apps; Set swaps it atomically.
type Apps struct {
	p atomic.Pointer[map[session.AppID]*app]
}

// NewApps makes an empty app set.
func NewApps() *Apps {
	a := &Apps{}
	m := map[session.AppID]*app{}
	a.p.Store(&m)
	return a
}

// Set replaces the apps. Limits left at zero get the DESIGN 1.1 defaults.
func (a *Apps) Set(apps []config.App) {
	m := make(map[session.AppID]*app, len(apps))
	for _, c := range apps {
		c.Default()
		e := &app{cfg: c, limits: session.Limits{
			MaxTracksPerCall: c.Sessions.MaxTracksPerCall,
			ConnectWait:      time.Duration(c.Sessions.ConnectWaitSeconds) * time.Second,
			TrackTimeout:     time.Duration(c.Sessions.TrackTimeoutSeconds) * time.Second,
			ReconnectWindow:  time.Duration(c.Sessions.ReconnectWindowSeconds) * time.Second,
		}}
		if b, err := hex.DecodeString(strings.ToLower(c.SecretSHA256)); err == nil && len(b) == 32 {
			copy(e.hash[:], b)
		} else {
			continue // an app without a valid hash can never authenticate
		}
		m[session.AppID(c.ID)] = e
	}
	a.p.Store(&m)
}

// IDs lists the configured app IDs.
func (a *Apps) IDs() []session.AppID {
	m := *a.p.Load()
	out := make([]session.AppID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

func (a *Apps) get(id session.AppID) *app { return (*a.p.Load())[id] }

// Limits returns an app's limits; false when the app is not configured.
func (a *Apps) Limits(id session.AppID) (session.Limits, bool) {
	e := a.get(id)
	if e == nil {
		return session.Limits{}, false
	}
	return e.limits, true
}

// dummyHash is compared against when the app is unknown so both paths do
// the same work.
var dummyHash = sha256.Sum256([]byte("switchboard: no such app"))

// authenticate checks "Bearer <secret>" against the app's hash in constant
// time. Unknown app and bad secret are indistinguishable to the caller.
func (a *Apps) authenticate(id session.AppID, header string) *app {
	secret, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		secret, ok = strings.CutPrefix(header, "bearer ")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	e := a.get(id)
	want := dummyHash
	if e != nil {
		want = e.hash
	}
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	if !ok || e == nil || !match {
		return nil
	}
	return e
}
