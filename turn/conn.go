package turn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
)

// methodConnect is RFC 6062's Connect.
const methodConnect = stun.MethodConnect

// clientConn wraps a UDP listener. Reads are inspected (policy, caps) before
// pion sees them; reads and writes are metered for the app that owns the
// client's allocation.
type clientConn struct {
	net.PacketConn
	s *Server

	mu      sync.RWMutex
	clients map[netip.AddrPort]*allocState

	batch *batchReader // read by pion's single read loop only
}

func (c *clientConn) lookup(a net.Addr) *allocState {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return nil
	}
	return c.lookupAP(ua.AddrPort())
}

func (c *clientConn) lookupAP(ap netip.AddrPort) *allocState {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.mu.RLock()
	st := c.clients[ap]
	c.mu.RUnlock()
	return st
}

func (c *clientConn) ReadFrom(p []byte) (int, net.Addr, error) {
	uc, fast := c.PacketConn.(*net.UDPConn)
	if fast && c.batch == nil {
		if c.batch = newBatchReader(uc); c.batch == nil {
			fast = false
		}
	}
	for {
		var (
			n    int
			addr net.Addr
			st   *allocState
			err  error
		)
		if fast {
			pkt, ap, rerr := c.batch.read()
			if rerr != nil {
				return 0, nil, rerr
			}
			st = c.lookupAP(ap)
			if st != nil {
				st.ingress.Add(uint64(len(pkt)))
				// ChannelData on a bound channel: relay it here. This is
				// the hot path; pion's handler would do the same lookups
				// with more allocation and locking.
				if len(pkt) >= 4 && pkt[0]&0xC0 == 0x40 {
					ln := int(binary.BigEndian.Uint16(pkt[2:4]))
					if peer, ok := st.chans.Load().byNum[binary.BigEndian.Uint16(pkt[0:2])]; ok && 4+ln <= len(pkt) && st.relay != nil {
						_ = st.relay.send(pkt[4:4+ln], peer)
						continue
					}
				}
			}
			n = copy(p, pkt)
			addr = net.UDPAddrFromAddrPort(ap)
		} else {
			n, addr, err = c.PacketConn.ReadFrom(p)
			if err != nil {
				return n, addr, err
			}
			st = c.lookup(addr)
			if st != nil {
				st.ingress.Add(uint64(n))
			}
		}
		if n == 0 || p[0]&0xC0 != 0 { // ChannelData (or junk): pion handles it
			return n, addr, nil
		}
		n = stripAfterIntegrity(p[:n])
		if st == nil && !c.s.unauth.allow(addr, c.s.now()) {
			continue // reflection guard: too many unauthenticated answers to this IP
		}
		reply, drop := c.s.inspect(p[:n], addr, c.PacketConn.LocalAddr())
		if reply != nil {
			if w, err := c.PacketConn.WriteTo(reply, addr); err == nil && st != nil {
				st.egress.Add(uint64(w))
			}
		}
		if !drop {
			return n, addr, nil
		}
	}
}

func (c *clientConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 {
		if st := c.lookup(addr); st != nil {
			st.egress.Add(uint64(n))
		}
	}
	return n, err
}

// frameListener wraps a TCP or TLS listener so that every accepted
// connection is a frameConn.
type frameListener struct {
	net.Listener
	s *Server
}

func (l *frameListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &frameConn{Conn: c, s: l.s, br: bufio.NewReaderSize(c, 4096), key: fiveKey(c.RemoteAddr(), c.LocalAddr())}
	l.s.mu.Lock()
	if l.s.closed {
		l.s.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.s.tcp[fc.key] = fc
	l.s.mu.Unlock()
	return fc, nil
}

// frameConn is one client TCP/TLS connection. Read hands pion whole TURN
// frames (STUN messages or ChannelData), after the same inspection as UDP.
type frameConn struct {
	net.Conn
	s     *Server
	br    *bufio.Reader
	key   string
	state atomic.Pointer[allocState]

	frame   []byte
	pending []byte
	once    sync.Once
}

const maxFrame = 4 + 65535 + 3

var (
	errFrame         = errors.New("turn: invalid frame on stream transport")
	errPermissionCap = errors.New("turn: permission cap reached")
)

func (c *frameConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		hdr, err := c.br.Peek(4)
		if err != nil {
			return 0, err
		}
		var size int
		switch {
		case hdr[0]&0xC0 == 0: // STUN
			size = 20 + int(binary.BigEndian.Uint16(hdr[2:4]))
		case hdr[0]&0xC0 == 0x40: // ChannelData, padded to 4 bytes on streams
			size = (4 + int(binary.BigEndian.Uint16(hdr[2:4])) + 3) &^ 3
		default:
			return 0, errFrame
		}
		if cap(c.frame) < size {
			c.frame = make([]byte, size, maxFrame)
		}
		f := c.frame[:size]
		if _, err := io.ReadFull(c.br, f); err != nil {
			return 0, err
		}
		st := c.state.Load()
		if st != nil {
			st.ingress.Add(uint64(size))
		}
		if hdr[0]&0xC0 == 0 {
			f = f[:stripAfterIntegrity(f)]
			reply, drop := c.s.inspect(f, c.RemoteAddr(), c.LocalAddr())
			if reply != nil {
				_, _ = c.Write(reply)
			}
			if drop {
				continue
			}
		}
		c.pending = f
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *frameConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if st := c.state.Load(); st != nil && n > 0 {
		st.egress.Add(uint64(n))
	}
	return n, err
}

func (c *frameConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.tcp, c.key)
		c.s.mu.Unlock()
	})
	return err
}

// inspect looks at a STUN message from a client before pion does. It
// enforces the relay policy on CreatePermission, ChannelBind, Connect and
// Send, and the per-allocation permission cap, answering refusals itself
// (403, 508, 447) so the client sees a proper error code. Requests that fail
// authentication here are passed to pion, which answers 401/400 as usual.
// It returns a reply to send, and whether to drop the message.
func (s *Server) inspect(raw []byte, src, dst net.Addr) (reply []byte, drop bool) {
	if len(raw) < 20 {
		return nil, false
	}
	typ := stun.MessageType{}
	typ.ReadValue(binary.BigEndian.Uint16(raw[0:2]))
	switch {
	case typ.Class == stun.ClassIndication && typ.Method == stun.MethodSend:
		m := &stun.Message{Raw: append([]byte(nil), raw...)}
		if m.Decode() != nil {
			return nil, true
		}
		var peer stun.XORMappedAddress // same wire form as XOR-PEER-ADDRESS
		if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			return nil, false // pion rejects it
		}
		ip, _ := netip.AddrFromSlice(peer.IP)
		if s.policy.Load().PermitAddr(netip.AddrPortFrom(ip, uint16(peer.Port))) != nil {
			s.forbidden.Add(1)
			return nil, true
		}
		return nil, false
	case typ.Class != stun.ClassRequest:
		return nil, false
	case typ.Method != stun.MethodCreatePermission && typ.Method != stun.MethodChannelBind && typ.Method != methodConnect:
		return nil, false
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return nil, false
	}
	integrity, ok := s.verify(m)
	if !ok {
		return nil, false
	}
	pol := s.policy.Load()
	errorReply := func(code stun.ErrorCode) ([]byte, bool) {
		out, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
			stun.NewType(typ.Method, stun.ClassErrorResponse),
			code, integrity)
		if err != nil {
			return nil, true
		}
		return out.Raw, true
	}
	key := fiveKey(src, dst)
	var denied, full bool
	_ = m.ForEach(stun.AttrXORPeerAddress, func(one *stun.Message) error {
		var peer stun.XORMappedAddress
		if err := peer.GetFromAs(one, stun.AttrXORPeerAddress); err != nil {
			return err
		}
		ip, _ := netip.AddrFromSlice(peer.IP)
		ap := netip.AddrPortFrom(ip, uint16(peer.Port))
		var err error
		if typ.Method == stun.MethodCreatePermission {
			err = pol.PermitIP(ip)
		} else {
			err = pol.PermitAddr(ap)
		}
		if err != nil {
			s.log.Info("turn peer denied", "client", src.String(), "peer", ap.String(), "method", typ.Method.String(), "err", err)
			denied = true
			return err
		}
		if typ.Method != methodConnect && !s.permit(key, ip.Unmap()) {
			full = true
			return errPermissionCap
		}
		return nil
	})
	switch {
	case denied:
		s.forbidden.Add(1)
		return errorReply(stun.CodeForbidden)
	case full:
		return errorReply(stun.CodeInsufficientCapacity)
	case typ.Method == methodConnect:
		// pion/turn v4 does not relay TCP (RFC 6062 Connect); answer instead of
		// letting the client time out.
		return errorReply(stun.CodeConnTimeoutOrFailure)
	}
	return nil, false
}

// verify checks the long-term credential of m the way pion will, and
// returns the MESSAGE-INTEGRITY to sign our own reply with.
func (s *Server) verify(m *stun.Message) (stun.MessageIntegrity, bool) {
	if !m.Contains(stun.AttrMessageIntegrity) {
		return nil, false
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return nil, false
	}
	_, pass, err := s.keys.Load().Check(user.String(), s.now(), s.rev)
	if err != nil {
		return nil, false
	}
	mi := stun.MessageIntegrity(pionturn.GenerateAuthKey(user.String(), realm.String(), pass))
	if mi.Check(m) != nil {
		return nil, false
	}
	return mi, true
}

// stripAfterIntegrity cuts a STUN message after its MESSAGE-INTEGRITY when
// attributes other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT follow it,
// fixing the header length, and returns the new length. RFC 8489 says those
// attributes must be ignored; pion/turn v4 decodes them and acts on them (an
// XOR-PEER-ADDRESS appended after the integrity check got a permission), and
// pion/stun only drops them in its strict mode, which pion/turn does not use.
func stripAfterIntegrity(m []byte) int {
	if len(m) < 20 {
		return len(m)
	}
	end := 20 + int(binary.BigEndian.Uint16(m[2:4]))
	if end > len(m) {
		return len(m)
	}
	cut := -1
	for off := 20; off+4 <= end; {
		typ := stun.AttrType(binary.BigEndian.Uint16(m[off:]))
		next := off + 4 + (int(binary.BigEndian.Uint16(m[off+2:]))+3)&^3
		if cut >= 0 && typ != stun.AttrMessageIntegritySHA256 && typ != stun.AttrFingerprint {
			binary.BigEndian.PutUint16(m[2:4], uint16(cut-20))
			return cut
		}
		if typ == stun.AttrMessageIntegrity {
			cut = next
		}
		off = next
	}
	return len(m)
}

// unauthLimiter bounds how many STUN messages per second the server answers
// for a source IP that holds no allocation (Binding responses, 401
// challenges), so the UDP listener cannot be used to reflect traffic at a
// spoofed victim (TURN-07). Fixed 1 s window per IP, the port stripped, as
// coturn does; clients with an allocation are never limited here.
type unauthLimiter struct {
	limit int

	mu     sync.Mutex
	window int64
	counts map[netip.Addr]int
}

// maxTrackedSources bounds the limiter's memory under a spoofed flood; past
// it the window's counts restart (a flood cannot keep more than this many
// IPs answered per window).
const maxTrackedSources = 65536

func (l *unauthLimiter) allow(a net.Addr, now time.Time) bool {
	if l == nil || l.limit <= 0 {
		return true
	}
	ap, ok := addrPort(a)
	if !ok {
		return true
	}
	ip := ap.Addr()
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec != l.window || len(l.counts) >= maxTrackedSources {
		l.window = sec
		clear(l.counts)
	}
	l.counts[ip]++
	return l.counts[ip] <= l.limit
}
