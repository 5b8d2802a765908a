package forward

import "sync"

// Retransmission history. Instead of Pion's NACK responder, which copies
// every packet for every subscriber (allocating per forwarded packet), the
// SFU keeps one copy of each received video packet per layer (packetRing)
// and each down track remembers which received packet every sequence number
// it sent came from (sentLog). A NACK is answered from those.

const (
	ringSlots  = 512 // received packets kept per video layer (~2 s at 2.5 Mbps)
	slotBytes  = 1500
	sentSlots  = 1024
	maxResends = 3 // per sent packet: bounds NACK amplification
)

// packetRing holds the last ringSlots raw packets of one layer.
type packetRing struct {
	mu   sync.RWMutex
	buf  []byte // ringSlots*slotBytes, allocated on first use
	seq  [ringSlots]uint16
	size [ringSlots]uint16 // 0: empty
}

func (r *packetRing) put(seq uint16, pkt []byte) {
	if len(pkt) > slotBytes {
		return
	}
	i := int(seq) % ringSlots
	r.mu.Lock()
	if r.buf == nil {
		r.buf = make([]byte, ringSlots*slotBytes)
	}
	copy(r.buf[i*slotBytes:], pkt)
	r.seq[i] = seq
	r.size[i] = uint16(len(pkt))
	r.mu.Unlock()
}

// get copies packet seq into dst and returns its length (0 if gone).
func (r *packetRing) get(seq uint16, dst []byte) int {
	i := int(seq) % ringSlots
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := int(r.size[i])
	if n == 0 || r.seq[i] != seq || r.buf == nil || n > len(dst) {
		return 0
	}
	return copy(dst, r.buf[i*slotBytes:i*slotBytes+n])
}

// sentEntry maps one sent sequence number to its origin.
type sentEntry struct {
	outSeq  uint16
	inSeq   uint16
	layer   int8
	resends uint8
	valid   bool
	gen     uint32 // source generation; a swapped source invalidates entries
	tsOff   uint32
}

type sentLog [sentSlots]sentEntry
