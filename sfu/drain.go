package sfu

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// drainPoll is how often a drain looks at what is left.
const drainPoll = 100 * time.Millisecond

// DrainResult is how a drain ended.
type DrainResult struct {
	// Sessions and RelayStreams are what was left when the drain ended
	// (relay streams this pod still sent to other pods).
	Sessions     int
	RelayStreams int
	// TimedOut: the deadline (or the context) ended the drain with work
	// left.
	TimedOut bool
	// Took is how long the drain lasted.
	Took time.Duration
}

// Drain marks the node as draining: /ready answers 503, the load it
// reports to its peers says draining, and new sessions go to peers (503
// only when no peer can take them); existing sessions, and relays to other
// pods, continue. It does not wait: see DrainUntil.
func (s *Server) Drain() {
	if s.draining.Swap(true) {
		return
	}
	s.handler.SetDraining(true)
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// DrainUntil drains (see Drain) and waits until the node carries nothing
// (no session, no relay stream to another pod) or deadline passes or ctx
// ends, logging when it starts and ends with the counts. It does not
// close the server: the caller closes it once the drain has ended.
func (s *Server) DrainUntil(ctx context.Context, deadline time.Time) DrainResult {
	start := time.Now()
	s.Drain()
	sessions, relays := s.carrying()
	s.log.Info("drain started", "sessions", sessions, "relayStreams", relays,
		"deadline", deadline.UTC().Format(time.RFC3339), "timeout", time.Until(deadline).Round(time.Second).String())
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	res := DrainResult{}
	for sessions > 0 || relays > 0 {
		select {
		case <-ctx.Done():
			res.TimedOut = true
		case <-timer.C:
			res.TimedOut = true
		case <-t.C:
		}
		sessions, relays = s.carrying()
		if res.TimedOut {
			break
		}
	}
	res.Sessions, res.RelayStreams, res.Took = sessions, relays, time.Since(start)
	if res.TimedOut && (sessions > 0 || relays > 0) {
		s.log.Warn("drain timed out", "sessions", sessions, "relayStreams", relays, "took", res.Took.Round(time.Millisecond).String())
	} else {
		res.TimedOut = false
		s.log.Info("drain finished", "sessions", sessions, "relayStreams", relays, "took", res.Took.Round(time.Millisecond).String())
	}
	return res
}

// carrying counts the live sessions and the relay streams sent to other
// pods.
func (s *Server) carrying() (sessions, relays int) {
	for _, st := range s.sessions.Stats() {
		sessions += st.Sessions
	}
	return sessions, s.relaySource.Streams()
}

// registerDrainGauge exports switchboard_draining (1 while draining).
func (s *Server) registerDrainGauge() {
	s.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricDraining,
		Help: "1 while this pod drains (takes no new sessions, keeps its existing ones), else 0.",
	}, func() float64 {
		if s.draining.Load() {
			return 1
		}
		return 0
	}))
}
