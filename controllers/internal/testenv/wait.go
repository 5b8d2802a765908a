package testenv

import (
	"testing"
	"time"
)

// Timeout bounds every wait: generous, because the machine is shared and
// slow, but finite so a wrong controller fails the test.
const Timeout = 60 * time.Second

// Eventually polls check every 100ms until it returns nil, and fails the
// test with check's last error after Timeout.
func Eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, Timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
