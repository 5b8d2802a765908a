package fleet

import (
	"cmp"
	"slices"
)

// LoadPath is the pod-to-pod load endpoint: GET with the fleet token
// answers this pod's Load as JSON. Without the token it is 404 like any
// unknown path.
const LoadPath = "/internal/fleet/v1/load"

// Load is what a pod tells its peers about itself for placement.
type Load struct {
	Ordinal int `json:"ordinal"`
	// Ready: the pod serves and takes new sessions (false while starting
	// up or stopping).
	Ready bool `json:"ready"`
	// Draining: the pod got SIGTERM; it keeps its sessions and takes no
	// new ones.
	Draining bool `json:"draining"`
	// Sessions is the number of live sessions of every app on the pod:
	// the load placement compares.
	Sessions int `json:"sessions"`
	// Tracks counts publications and subscriptions (informative).
	Tracks int `json:"tracks"`
	// EgressBytesPerSecond is the media sent to clients over the last
	// second or so (informative).
	EgressBytesPerSecond int64 `json:"egressBytesPerSecond"`
}

// Available reports whether new sessions may be placed on the pod.
func (l Load) Available() bool { return l.Ready && !l.Draining }

// Order returns the pods a new session may go to, best first: available
// pods only, fewest sessions first; on a tie the pod itself (self) comes
// first, then the lower ordinal. self is this pod's own load; peers are
// the fresh loads of the others (stale or unreachable peers are left out
// by the caller).
func Order(self Load, peers []Load) []Load {
	out := make([]Load, 0, len(peers)+1)
	if self.Available() {
		out = append(out, self)
	}
	for _, p := range peers {
		if p.Available() && p.Ordinal != self.Ordinal {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Load) int {
		if c := cmp.Compare(a.Sessions, b.Sessions); c != 0 {
			return c
		}
		if a.Ordinal == self.Ordinal {
			return -1
		}
		if b.Ordinal == self.Ordinal {
			return 1
		}
		return cmp.Compare(a.Ordinal, b.Ordinal)
	})
	return out
}
