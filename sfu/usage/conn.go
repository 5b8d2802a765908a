package usage

import (
	"net"
	"net/netip"
	"sync"
)

const attributionShards = 16

// Attribution maps client transport addresses (the remote side of an ICE
// selected candidate pair) to the app whose session uses them, so one
// shared media socket can count bytes per app. Lookups take a shard read
// lock and allocate nothing. The session layer sets an address when ICE
// selects a pair and deletes it when the session closes; bytes before the
// first selection (connectivity checks) are not attributed.
//
// ICE stacks report the selected pair asynchronously, so the first DTLS
// bytes can leave before Set is called. Bytes to or from an address with
// no app yet are therefore held per address (at most MaxPending
// addresses, oldest dropped first) and credited to the app when Set
// arrives; bytes of an address never attributed are never counted.
type Attribution struct {
	shards [attributionShards]attrShard

	pmu     sync.Mutex
	pending map[netip.AddrPort]*pendingBytes
	order   []netip.AddrPort // insertion order, for eviction
}

// MaxPending bounds the addresses whose unattributed bytes are held.
const MaxPending = 4096

type pendingBytes struct{ egress, ingress uint64 }

type attrShard struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*App
}

// NewAttribution returns an empty map.
func NewAttribution() *Attribution {
	a := &Attribution{pending: map[netip.AddrPort]*pendingBytes{}}
	for i := range a.shards {
		a.shards[i].m = map[netip.AddrPort]*App{}
	}
	return a
}

// hold records bytes for an address not attributed yet.
func (a *Attribution) hold(addr netip.AddrPort, egress, ingress int) {
	addr = canonical(addr)
	a.pmu.Lock()
	defer a.pmu.Unlock()
	p, ok := a.pending[addr]
	if !ok {
		if len(a.order) >= MaxPending {
			delete(a.pending, a.order[0])
			a.order = a.order[1:]
		}
		p = &pendingBytes{}
		a.pending[addr] = p
		a.order = append(a.order, addr)
	}
	p.egress += uint64(egress)
	p.ingress += uint64(ingress)
}

// take removes and returns the bytes held for addr.
func (a *Attribution) take(addr netip.AddrPort) (pendingBytes, bool) {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	p, ok := a.pending[addr]
	if !ok {
		return pendingBytes{}, false
	}
	delete(a.pending, addr)
	for i, x := range a.order {
		if x == addr {
			a.order = append(a.order[:i], a.order[i+1:]...)
			break
		}
	}
	return *p, true
}

func (a *Attribution) shard(addr netip.AddrPort) *attrShard {
	return &a.shards[(uint(addr.Port())^uint(addr.Addr().As16()[15]))%attributionShards]
}

func canonical(addr netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(addr.Addr().Unmap().WithZone(""), addr.Port())
}

// Set attributes traffic with addr to app, including bytes held for addr
// before.
func (a *Attribution) Set(addr netip.AddrPort, app *App) {
	addr = canonical(addr)
	s := a.shard(addr)
	s.mu.Lock()
	s.m[addr] = app
	s.mu.Unlock()
	if p, ok := a.take(addr); ok {
		app.egressSFU.Add(p.egress)
		app.ingress.Add(p.ingress)
	}
}

// Delete stops attributing addr, if it still points at app (a newer
// session may have taken the address over).
func (a *Attribution) Delete(addr netip.AddrPort, app *App) {
	addr = canonical(addr)
	s := a.shard(addr)
	s.mu.Lock()
	if s.m[addr] == app {
		delete(s.m, addr)
	}
	s.mu.Unlock()
}

// Lookup returns the app of addr, or nil.
func (a *Attribution) Lookup(addr netip.AddrPort) *App {
	addr = canonical(addr)
	s := a.shard(addr)
	s.mu.RLock()
	app := s.m[addr]
	s.mu.RUnlock()
	return app
}

// Len is the number of attributed addresses.
func (a *Attribution) Len() int {
	n := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

func addrPortOf(addr net.Addr) (netip.AddrPort, bool) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), true
	case *net.TCPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// PacketConn counts, per app, the UDP payload bytes written to and read
// from attributed client addresses on a shared socket (the SFU's ICE UDP
// mux socket): egress as source "sfu" and ingress. STUN messages (ICE
// checks and consent, first byte 0–3 per RFC 7983) are not counted: STUN
// is free in the Calls model, and what remains — DTLS (with SCTP
// DataChannels), SRTP and SRTCP — is exactly what the client's ICE
// transport delivers to its WebRTC stack. Pass it where the media core
// would pass the raw socket. Everything else is delegated.
type PacketConn struct {
	net.PacketConn
	attr *Attribution
}

// NewPacketConn wraps conn.
func NewPacketConn(conn net.PacketConn, attr *Attribution) *PacketConn {
	return &PacketConn{PacketConn: conn, attr: attr}
}

// WriteTo implements net.PacketConn, counting egress.
func (c *PacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 && !isSTUN(p) {
		if ap, ok := addrPortOf(addr); ok {
			if app := c.attr.Lookup(ap); app != nil {
				app.egressSFU.Add(uint64(n))
			} else {
				c.attr.hold(ap, n, 0)
			}
		}
	}
	return n, err
}

// ReadFrom implements net.PacketConn, counting ingress.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 && addr != nil && !isSTUN(p[:n]) {
		if ap, ok := addrPortOf(addr); ok {
			if app := c.attr.Lookup(ap); app != nil {
				app.ingress.Add(uint64(n))
			} else {
				c.attr.hold(ap, 0, n)
			}
		}
	}
	return n, addr, err
}

// isSTUN demultiplexes by the first byte (RFC 7983): 0–3 is STUN.
func isSTUN(p []byte) bool { return len(p) > 0 && p[0] < 4 }
