package render

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// AppCredentials are the generated secrets of one CallsApp, as stored in its
// <app>-credentials Secret under the v1alpha1.SecretKey* keys.
type AppCredentials struct {
	// AppID is the Calls app ID: 32 lowercase hex characters.
	AppID string
	// AppSecret is the Bearer token of the session API: 64 hex characters
	// (32 random bytes).
	AppSecret string
	// TURNKeyID is the TURN key ID: 32 lowercase hex characters.
	TURNKeyID string
	// TURNKeyToken is the Bearer token of the TURN credentials API.
	TURNKeyToken string
	// TURNKeySecret is the HMAC secret of ephemeral TURN credentials.
	TURNKeySecret string
}

// ErrShortRandom is returned when the random source runs dry.
var ErrShortRandom = errors.New("random source returned too few bytes")

var (
	id32  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex64 = regexp.MustCompile(`^[0-9a-f]{64,}$`)
)

// CredentialsFromSecretData reads credentials from a Secret's data. Missing
// or malformed keys come back empty, so FillCredentials replaces them.
func CredentialsFromSecretData(data map[string][]byte) AppCredentials {
	get := func(k string, re *regexp.Regexp) string {
		if v := string(data[k]); re.MatchString(v) {
			return v
		}
		return ""
	}
	return AppCredentials{
		AppID:         get(v1alpha1.SecretKeyAppID, id32),
		AppSecret:     get(v1alpha1.SecretKeyAppSecret, hex64),
		TURNKeyID:     get(v1alpha1.SecretKeyTURNKeyID, id32),
		TURNKeyToken:  get(v1alpha1.SecretKeyTURNKeyToken, hex64),
		TURNKeySecret: get(v1alpha1.SecretKeyTURNKeySecret, hex64),
	}
}

// SecretData is the credentials as Secret data; empty fields are left out.
func (c AppCredentials) SecretData() map[string][]byte {
	out := map[string][]byte{}
	for k, v := range map[string]string{
		v1alpha1.SecretKeyAppID:         c.AppID,
		v1alpha1.SecretKeyAppSecret:     c.AppSecret,
		v1alpha1.SecretKeyTURNKeyID:     c.TURNKeyID,
		v1alpha1.SecretKeyTURNKeyToken:  c.TURNKeyToken,
		v1alpha1.SecretKeyTURNKeySecret: c.TURNKeySecret,
	} {
		if v != "" {
			out[k] = []byte(v)
		}
	}
	return out
}

// HasTURNKey reports whether the TURN key is complete.
func (c AppCredentials) HasTURNKey() bool {
	return c.TURNKeyID != "" && c.TURNKeyToken != "" && c.TURNKeySecret != ""
}

// FillCredentials generates every missing credential from rand and keeps
// every present one: an app's ID and secret, once made, never change. The
// TURN key is generated only when withTURN is set. It reports whether
// anything was generated.
func FillCredentials(c AppCredentials, rand io.Reader, withTURN bool) (AppCredentials, bool, error) {
	changed := false
	fill := func(v *string, n int) error {
		if *v != "" {
			return nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(rand, b); err != nil {
			return fmt.Errorf("generate credentials: %w: %v", ErrShortRandom, err)
		}
		*v = hex.EncodeToString(b)
		changed = true
		return nil
	}
	type want struct {
		v *string
		n int // random bytes
	}
	fields := []want{{&c.AppID, 16}, {&c.AppSecret, 32}}
	if withTURN {
		fields = append(fields, want{&c.TURNKeyID, 16}, want{&c.TURNKeyToken, 32}, want{&c.TURNKeySecret, 32})
	}
	for _, f := range fields {
		if err := fill(f.v, f.n); err != nil {
			return AppCredentials{}, false, err
		}
	}
	return c, changed, nil
}
