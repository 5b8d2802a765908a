package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
)

// MaxOrdinal is the largest pod ordinal a session ID can name.
const MaxOrdinal = 0xffff

// ordinalChars is how many trailing hex characters of a session ID carry
// the owner's ordinal.
const ordinalChars = 4

// NewSessionID returns a session ID owned by pod ordinal: 32 lowercase hex
// characters, the first 28 random (112 bits), the last 4 the ordinal in
// hex. Calls clients treat the ID as opaque, so its shape stays the one
// they know.
func NewSessionID(ordinal int) string {
	b := make([]byte, 14)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) + fmt.Sprintf("%04x", ordinal&MaxOrdinal)
}

// Owner returns the ordinal of the pod that owns session id; false when id
// is not 32 lowercase hex characters (it then names no session anywhere).
func Owner(id string) (int, bool) {
	if len(id) != 32 {
		return 0, false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(id[32-ordinalChars:], 16, 16)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// OrdinalFromPodName parses the StatefulSet ordinal at the end of a pod
// name ("demo-sfu-2" is 2).
func OrdinalFromPodName(name string) (int, error) {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) || i == 0 || name[i-1] != '-' {
		return 0, fmt.Errorf("%w: pod name %q has no -<ordinal> suffix", ErrNoOrdinal, name)
	}
	n, err := strconv.Atoi(name[i:])
	if err != nil || n > MaxOrdinal {
		return 0, fmt.Errorf("%w: pod name %q", ErrNoOrdinal, name)
	}
	return n, nil
}
