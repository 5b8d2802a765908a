package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme is HMAC-SHA1 by definition
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Credential errors. The TURN server answers all of them the same way (the
// request is refused); the distinction is for logs and tests.
var (
	ErrMalformedUsername = errors.New("malformed TURN username")
	ErrExpired           = errors.New("TURN credential expired")
	ErrTTLTooLong        = errors.New("TURN credential expiry beyond the maximum TTL")
	ErrUnknownKey        = errors.New("unknown TURN key")
	ErrRevoked           = errors.New("TURN credential revoked")
	ErrBadTTL            = errors.New("invalid TTL")
)

// clockSkew is how far past now+MaxTURNTTL an expiry may lie, so that a
// credential minted on a pod whose clock runs slightly ahead still works.
const clockSkew = time.Minute

// Key is one app's TURN key as the TURN pod uses it.
type Key struct {
	ID          string
	AppID       string
	TokenSHA256 string
	HMACSecret  []byte
}

// Keyring holds the TURN keys of every app of the pool, by key ID. It is
// immutable; a configuration change builds a new one.
type Keyring struct {
	keys map[string]*Key
}

// NewKeyring collects the TURN keys of the configured apps.
func NewKeyring(pod *config.Pod) *Keyring {
	kr := &Keyring{keys: map[string]*Key{}}
	if pod == nil {
		return kr
	}
	for _, a := range pod.Apps {
		if a.TURNKey == nil {
			continue
		}
		kr.keys[a.TURNKey.ID] = &Key{
			ID:          a.TURNKey.ID,
			AppID:       a.ID,
			TokenSHA256: strings.ToLower(a.TURNKey.TokenSHA256),
			HMACSecret:  []byte(a.TURNKey.HMACSecret),
		}
	}
	return kr
}

// Key returns the key with the given ID.
func (k *Keyring) Key(id string) (*Key, bool) {
	key, ok := k.keys[id]
	return key, ok
}

// Len is the number of keys.
func (k *Keyring) Len() int { return len(k.keys) }

// AuthorizeToken reports whether token is the API token of key id. Unknown
// keys and wrong tokens are indistinguishable to the caller and take the same
// constant-time comparison.
func (k *Keyring) AuthorizeToken(id, token string) (*Key, bool) {
	sum := sha256.Sum256([]byte(token))
	got := hex.EncodeToString(sum[:])
	key, ok := k.keys[id]
	want := strings.Repeat("0", 64)
	if ok {
		want = key.TokenSHA256
	}
	match := subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	if !ok || !match || token == "" {
		return nil, false
	}
	return key, true
}

// Username is a parsed TURN REST username: "<expiryUnix>:<keyID>:<random>".
// The expiry comes first as in draft-uberti-behave-turn-rest-00, so coturn
// and pion's REST helpers read it too; the key ID lets the server find the
// HMAC secret among several apps' keys.
type Username struct {
	Expiry time.Time
	KeyID  string
	Tag    string
}

// ParseUsername splits a username into its parts.
func ParseUsername(s string) (Username, error) {
	exp, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Username{}, fmt.Errorf("%w: no expiry", ErrMalformedUsername)
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return Username{}, fmt.Errorf("%w: no key ID", ErrMalformedUsername)
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || sec <= 0 {
		return Username{}, fmt.Errorf("%w: expiry %q", ErrMalformedUsername, exp)
	}
	return Username{Expiry: time.Unix(sec, 0), KeyID: rest[:i], Tag: rest[i+1:]}, nil
}

// Password is the credential of username under secret: base64 of
// HMAC-SHA1(secret, username), as in the TURN REST draft, coturn's
// use-auth-secret and pion's LongTermTURNRESTAuthHandler.
func Password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Credential is one issued username/password pair.
type Credential struct {
	Username string
	Password string
	Expiry   time.Time
}

// Issue mints a credential for key valid for ttl from now.
func Issue(key *Key, ttl time.Duration, now time.Time) (Credential, error) {
	if ttl <= 0 || ttl > config.MaxTURNTTL {
		return Credential{}, fmt.Errorf("%w: %s (allowed 1s..%s)", ErrBadTTL, ttl, config.MaxTURNTTL)
	}
	var tag [16]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return Credential{}, fmt.Errorf("issue TURN credential: %w", err)
	}
	exp := now.Add(ttl).Truncate(time.Second)
	user := fmt.Sprintf("%d:%s:%s", exp.Unix(), key.ID, hex.EncodeToString(tag[:]))
	return Credential{Username: user, Password: Password(key.HMACSecret, user), Expiry: exp}, nil
}

// Check validates username at now against the key ring and the revocation
// set, and returns its key and password. It is what the TURN server runs on
// every authenticated request (Allocate, Refresh, CreatePermission,
// ChannelBind), so an expired or revoked credential stops working on its
// next request, not only at Allocate.
func (k *Keyring) Check(username string, now time.Time, revoked Revocations) (*Key, string, error) {
	u, err := ParseUsername(username)
	if err != nil {
		return nil, "", err
	}
	if !now.Before(u.Expiry) {
		return nil, "", fmt.Errorf("%w at %s", ErrExpired, u.Expiry.UTC().Format(time.RFC3339))
	}
	if u.Expiry.After(now.Add(config.MaxTURNTTL + clockSkew)) {
		return nil, "", fmt.Errorf("%w: %s", ErrTTLTooLong, u.Expiry.UTC().Format(time.RFC3339))
	}
	key, ok := k.keys[u.KeyID]
	if !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownKey, u.KeyID)
	}
	if revoked != nil && revoked.Revoked(username) {
		return nil, "", ErrRevoked
	}
	return key, Password(key.HMACSecret, username), nil
}
