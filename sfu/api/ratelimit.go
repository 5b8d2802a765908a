package api

import (
	"sync"

	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// sessionLimiter is a fixed one-second window per session (DESIGN 1.1:
// 50 calls per second per session).
type sessionLimiter struct {
	clock clock.Clock
	mu    sync.Mutex
	win   map[session.SessionID]*window
}

type window struct {
	sec int64
	n   int
}

func newSessionLimiter(c clock.Clock) *sessionLimiter {
	return &sessionLimiter{clock: c, win: map[session.SessionID]*window{}}
}

// allow counts one call and reports whether it is within limit.
func (l *sessionLimiter) allow(id session.SessionID, limit int) bool {
	if limit <= 0 {
		return true
	}
	sec := l.clock.Now().Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win[id]
	if w == nil {
		if len(l.win) > 10000 {
			for k, v := range l.win {
				if v.sec < sec-1 {
					delete(l.win, k)
				}
			}
		}
		w = &window{sec: sec}
		l.win[id] = w
	}
	if w.sec != sec {
		w.sec, w.n = sec, 0
	}
	if w.n >= limit {
		return false
	}
	w.n++
	return true
}
