package ratelimit

import (
	"sync"
)

// shardCount is a power of two so a hash picks a shard with a mask.
const shardCount = 64

// overflowSlots is the number of shared counters per shard used once a
// shard's map is full for the current window.
const overflowSlots = 256

// DefaultMaxKeys bounds the distinct keys tracked per window across all
// shards. A flood of distinct client IPs beyond it is not forgotten: those
// keys share the per-shard overflow counters, which can only over-count
// (several keys on one counter), so a limit is never under-enforced; the
// cost of a flood is that some innocent new clients in the same window may
// be throttled early. Memory stays at about MaxKeys × 16 bytes plus the
// map's overhead, whatever the traffic.
const DefaultMaxKeys = 1 << 17

// table is a set of fixed-window counters keyed by a 64-bit hash. Counters
// belong to one window; a shard clears itself lazily on the first access in
// a new window (clear keeps the map's buckets, so steady state allocates
// nothing).
type table struct {
	shards      [shardCount]shard
	maxPerShard int
}

type shard struct {
	mu       sync.Mutex
	window   int64
	counts   map[uint64]uint32
	overflow [overflowSlots]uint32
	// overflowed counts increments that went to the overflow counters in
	// this window; only for tests and metrics.
	overflowed uint64
}

func newTable(maxKeys int) *table {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	per := maxKeys / shardCount
	if per < 1 {
		per = 1
	}
	t := &table{maxPerShard: per}
	for i := range t.shards {
		// Pre-size so the first windows do not grow the map under the lock.
		hint := per
		if hint > 1024 {
			hint = 1024
		}
		t.shards[i].counts = make(map[uint64]uint32, hint)
	}
	return t
}

// incr adds one to the counter of key in window and returns the new count.
// A counter saturates instead of wrapping.
func (t *table) incr(key uint64, window int64) uint32 {
	s := &t.shards[key&(shardCount-1)]
	s.mu.Lock()
	if s.window != window {
		clear(s.counts)
		clear(s.overflow[:])
		s.overflowed = 0
		s.window = window
	}
	n, ok := s.counts[key]
	if !ok && len(s.counts) >= t.maxPerShard {
		i := (key >> 32) % overflowSlots
		if s.overflow[i] < ^uint32(0) {
			s.overflow[i]++
		}
		s.overflowed++
		n = s.overflow[i]
		s.mu.Unlock()
		return n
	}
	if n < ^uint32(0) {
		n++
	}
	s.counts[key] = n
	s.mu.Unlock()
	return n
}

// keys reports how many distinct keys are stored, over all shards and
// windows still held; for tests of the memory bound.
func (t *table) keys() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.counts)
		s.mu.Unlock()
	}
	return n
}
