//go:build !race

package sfu_test

import "testing"

// Zero allocations per forwarded packet through Pion's interceptors, SRTP
// and the UDP mux, once the retransmission rings are warm.
func TestForwardingThroughPionAllocatesNothing(t *testing.T) {
	f := pionFanOut(t, 3)
	for i := 0; i < 2*len(f.pkts); i++ {
		f.next()
	}
	allocs := testing.AllocsPerRun(3000, f.next)
	if allocs != 0 {
		t.Fatalf("%.0f allocations per published packet fanned out to 3 subscribers", allocs)
	}
}
