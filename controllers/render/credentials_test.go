package render

import (
	"bytes"
	"crypto/rand"
	"errors"
	"regexp"
	"testing"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

func TestFillCredentialsGeneratesIDsAndLongSecrets(t *testing.T) {
	c, changed, err := FillCredentials(AppCredentials{}, rand.Reader, true)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	if !hex32.MatchString(c.AppID) || !hex32.MatchString(c.TURNKeyID) {
		t.Errorf("ids %q %q are not 32 lowercase hex", c.AppID, c.TURNKeyID)
	}
	for _, s := range []string{c.AppSecret, c.TURNKeyToken, c.TURNKeySecret} {
		if !hex64.MatchString(s) {
			t.Errorf("secret %q is not 32 random bytes in hex", s)
		}
	}
	if c.AppSecret == c.TURNKeyToken || c.TURNKeyToken == c.TURNKeySecret {
		t.Error("two secrets are equal")
	}
}

func TestFillCredentialsKeepsWhatExists(t *testing.T) {
	first, _, err := FillCredentials(AppCredentials{}, rand.Reader, false)
	if err != nil {
		t.Fatal(err)
	}
	if first.HasTURNKey() || first.TURNKeyID != "" {
		t.Fatalf("TURN key generated with TURN off: %+v", first)
	}
	// Round trip through Secret data, as the controller does.
	read := CredentialsFromSecretData(first.SecretData())
	if read != first {
		t.Fatalf("secret data round trip: %+v != %+v", read, first)
	}
	again, changed, err := FillCredentials(read, rand.Reader, false)
	if err != nil || changed || again != first {
		t.Fatalf("second fill changed=%v err=%v creds=%+v", changed, err, again)
	}
	// Turning TURN on adds a key and keeps the app ID and secret.
	withTURN, changed, err := FillCredentials(read, rand.Reader, true)
	if err != nil || !changed || !withTURN.HasTURNKey() {
		t.Fatalf("enabling TURN: changed=%v err=%v", changed, err)
	}
	if withTURN.AppID != first.AppID || withTURN.AppSecret != first.AppSecret {
		t.Fatal("enabling TURN regenerated the app ID or secret")
	}
}

func TestCredentialsFromSecretDataDropsMalformedValues(t *testing.T) {
	c := CredentialsFromSecretData(map[string][]byte{
		v1alpha1.SecretKeyAppID:     []byte("NOT-HEX"),
		v1alpha1.SecretKeyAppSecret: bytes.Repeat([]byte("a"), 64),
	})
	if c.AppID != "" || c.AppSecret == "" {
		t.Fatalf("got %+v", c)
	}
}

func TestFillCredentialsReportsAShortRandomSource(t *testing.T) {
	_, _, err := FillCredentials(AppCredentials{}, bytes.NewReader(make([]byte, 20)), false)
	if !errors.Is(err, ErrShortRandom) {
		t.Fatalf("err = %v, want ErrShortRandom", err)
	}
}
