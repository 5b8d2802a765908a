package sfu

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/fleet"
)

// startPlacement builds the view of the peers' load and hands it, with
// this pod's own load, to the router (docs/fleet.md "Placement"). The view
// polls only while the pod is in a fleet; without one it has no peers.
func (s *Server) startPlacement(o Options) {
	if o.PlacementPoll < 0 {
		s.view = fleet.NewView(fleet.ViewOptions{Members: s.members.Load, Logger: s.log})
	} else {
		s.view = fleet.NewView(fleet.ViewOptions{Members: s.members.Load, Interval: o.PlacementPoll, Logger: s.log})
		s.view.Start()
	}
	s.router.Self = s.Load
	s.router.View = s.view
}

// PollPeers asks every peer for its load now (tests that disable the
// background poll with a negative Options.PlacementPoll).
func (s *Server) PollPeers() { s.view.Poll(context.Background()) }

// PeerLoads is this pod's current view of its peers' load: the peers that
// answered recently, by ordinal.
func (s *Server) PeerLoads() []fleet.Load { return s.view.Peers() }

// Load is what this pod reports to its peers for placement: its sessions
// (the load placement compares), tracks, egress rate, and whether it
// takes new sessions.
func (s *Server) Load() fleet.Load {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	l := fleet.Load{Ordinal: s.ordinal, Draining: s.draining.Load()}
	l.Ready = !closed && !l.Draining
	for _, st := range s.sessions.Stats() {
		l.Sessions += st.Sessions
		l.Tracks += st.Publications + st.Subscriptions
	}
	var egress uint64
	for _, u := range s.sessions.Usage() {
		egress += u.EgressBytes
	}
	l.EgressBytesPerSecond = s.egressRate.rate(time.Now(), egress)
	return l
}

// rateMeter turns a monotonic byte count into bytes per second over at
// least a second, whoever asks and however often.
type rateMeter struct {
	mu       sync.Mutex
	at       time.Time
	bytes    uint64
	lastRate int64
}

func (m *rateMeter) rate(now time.Time, total uint64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() {
		m.at, m.bytes = now, total
		return 0
	}
	if d := now.Sub(m.at); d >= time.Second {
		if total >= m.bytes {
			m.lastRate = int64(float64(total-m.bytes) / d.Seconds())
		}
		m.at, m.bytes = now, total
	}
	return m.lastRate
}

// FleetForwarded reports whether r carries this fleet's token: another pod
// forwarded it (a call for a session owned here, or a new session placed
// here) and already limited and counted it. Middleware in front of
// Handler uses it to count each call once.
func (s *Server) FleetForwarded(r *http.Request) bool {
	m := s.members.Load()
	return m != nil && m.Authentic(r.Header.Get(fleet.TokenHeader))
}
