package fleet

import (
	"crypto/subtle"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

var (
	// ErrNoOrdinal is returned when a pod's ordinal cannot be determined.
	ErrNoOrdinal = errors.New("no pod ordinal")
	// ErrUnknownPeer is returned for an ordinal with no known address.
	ErrUnknownPeer = errors.New("unknown fleet peer")
)

// Members is one snapshot of the fleet: the token and the peer addresses.
// It is immutable; a new configuration makes a new Members.
type Members struct {
	self     int
	token    []byte
	template string
	static   map[int]string
	ordinals []int
}

// NewMembers builds the membership of pod self from the pool's fleet
// configuration; nil when f is nil (no fleet).
func NewMembers(self int, f *config.Fleet) *Members {
	if f == nil {
		return nil
	}
	m := &Members{self: self, token: []byte(f.Token), template: f.PeerTemplate, static: map[int]string{},
		ordinals: slices.Clone(f.Ordinals)}
	for _, p := range f.Peers {
		m.static[p.Ordinal] = p.Address
	}
	return m
}

// Self is this pod's ordinal.
func (m *Members) Self() int { return m.self }

// Address returns the internal API address (host:port) of pod ordinal.
func (m *Members) Address(ordinal int) (string, error) {
	if a, ok := m.static[ordinal]; ok {
		return a, nil
	}
	if m.template != "" {
		return strings.ReplaceAll(m.template, "{ordinal}", strconv.Itoa(ordinal)), nil
	}
	return "", ErrUnknownPeer
}

// Token is the fleet token sent on pod-to-pod calls.
func (m *Members) Token() string { return string(m.token) }

// Authentic reports, in constant time, whether v is the fleet token.
func (m *Members) Authentic(v string) bool {
	return len(v) > 0 && subtle.ConstantTimeCompare([]byte(v), m.token) == 1
}

// RemoteOwner returns the address of the pod owning session id when that
// pod is not this one.
func (m *Members) RemoteOwner(id string) (string, bool) {
	o, ok := Owner(id)
	if !ok || o == m.self {
		return "", false
	}
	a, err := m.Address(o)
	return a, err == nil
}

// Peers lists the ordinals of the other pods of the fleet, ascending: the
// static Peers and the pool's Ordinals, without this pod.
func (m *Members) Peers() []int {
	seen := map[int]bool{m.self: true}
	var out []int
	for o := range m.static {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	for _, o := range m.ordinals {
		if !seen[o] && o >= 0 && o <= MaxOrdinal {
			seen[o] = true
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}
