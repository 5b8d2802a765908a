package callsapp_test

import (
	"sync"
	"testing"
)

// stoppable lets a test stop a manager before the test ends: StartManager
// registers its shutdown with Cleanup, which stoppable collects instead of
// the test.
type stoppable struct {
	testing.TB
	mu  sync.Mutex
	fns []func()
}

func (s *stoppable) tb(t *testing.T) testing.TB {
	s.TB = t
	t.Cleanup(s.stop)
	return s
}

// Cleanup collects f for stop.
func (s *stoppable) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, f)
}

func (s *stoppable) stop() {
	s.mu.Lock()
	fns := s.fns
	s.fns = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
