package forward

import (
	"sync"
	"sync/atomic"
)

// Gate tells down tracks whether the transport under their writer can
// deliver packets. Pion's writer silently drops what is written before
// DTLS/SRTP is up, so a down track that started on such a keyframe would
// send only delta frames afterwards. A down track with a gate forwards
// nothing while it is closed and, the first time it forwards after the gate
// opens, starts over: it waits for a keyframe and asks the publisher for
// one.
//
// The session owns one Gate per PeerConnection and opens or closes it from
// the connection state; a down track without a gate (e.g. a relay stream,
// whose writer sends at once) is always open. The zero Gate is closed.
type Gate struct {
	mu sync.Mutex
	// state is opens<<1 | open: the low bit says whether the gate is open,
	// the rest counts openings, so a down track notices a reopening it did
	// not see while no packets flowed.
	state atomic.Uint32
}

// SetOpen opens or closes the gate; opening an open gate changes nothing.
func (g *Gate) SetOpen(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state.Load()
	switch {
	case open && s&1 == 0:
		g.state.Store((s>>1+1)<<1 | 1)
	case !open && s&1 == 1:
		g.state.Store(s &^ 1)
	}
}

// Open reports whether the gate is open.
func (g *Gate) Open() bool { return g.state.Load()&1 == 1 }

// load returns the gate's state word; nil is always open, one opening.
func (g *Gate) load() uint32 {
	if g == nil {
		return 3
	}
	return g.state.Load()
}
