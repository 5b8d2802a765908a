package turn

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTCPRelay is returned when pion asks for a TCP relay socket: TCP
// allocations get a UDP relay in pion/turn v4 and Connect is refused.
var ErrTCPRelay = errors.New("turn: TCP relaying is not supported")

// relayGenerator is pion's RelayAddressGenerator: it opens one UDP socket
// per allocation with raised buffers, wrapped in a relayConn.
type relayGenerator struct {
	s      *Server
	bind   netip.Addr
	public netip.Addr
}

func (g *relayGenerator) Validate() error {
	if !g.bind.IsValid() {
		return fmt.Errorf("turn: invalid relay IP")
	}
	return nil
}

func (g *relayGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.bind, uint16(port))))
	if err != nil {
		return nil, nil, fmt.Errorf("open relay socket: %w", err)
	}
	SetSocketBuffers(conn, g.s.sockBuf)
	local := conn.LocalAddr().(*net.UDPAddr)
	adv := &net.UDPAddr{IP: g.public.AsSlice(), Port: local.Port}
	rc := &relayConn{UDPConn: conn, s: g.s, advertised: adv.String(), raw: newRawSender(conn)}
	g.s.mu.Lock()
	g.s.relays[rc.advertised] = rc
	g.s.mu.Unlock()
	return rc, adv, nil
}

func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, ErrTCPRelay
}

// relayConn is one allocation's relay socket. Every datagram it sends is
// checked against the policy in force: this is the last line of defence and
// the only place that sees the port of ChannelData destinations.
type relayConn struct {
	*net.UDPConn
	s          *Server
	advertised string
	// last caches the last destination admitted under a given policy so the
	// steady-state check is two pointer loads and a compare.
	last      atomic.Pointer[admitted]
	closeOnce sync.Once
	// state is the allocation this socket relays for (set once created).
	state atomic.Pointer[allocState]
	buf   []byte
	// raw is the hot path's sendto (sendto_linux.go); nil elsewhere.
	raw *rawSender
}

type admitted struct {
	ap  netip.AddrPort
	pol *Policy
}

func (r *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		r.s.dropped.Add(1)
		return len(p), nil
	}
	return len(p), r.send(p, ua.AddrPort())
}

// ReadFrom serves pion's relay loop. Datagrams from a peer with a bound
// channel of a UDP client are framed as ChannelData and sent to the client
// here; everything else (Data indications, permission checks) goes to pion.
func (r *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if r.buf == nil {
		r.buf = make([]byte, 4+65536)
	}
	for {
		n, src, err := r.UDPConn.ReadFromUDPAddrPort(r.buf[4:])
		if err != nil {
			return 0, nil, err
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if st := r.state.Load(); st != nil && st.out != nil {
			if ch, ok := st.chans.Load().byPeer[src]; ok {
				binary.BigEndian.PutUint16(r.buf[0:], ch)
				binary.BigEndian.PutUint16(r.buf[2:], uint16(n))
				size := (4 + n + 3) &^ 3
				for i := 4 + n; i < size; i++ {
					r.buf[i] = 0
				}
				if w, err := st.out.WriteToUDPAddrPort(r.buf[:size], st.client); err == nil {
					st.egress.Add(uint64(w))
				}
				continue
			}
		}
		return copy(p, r.buf[4:4+n]), net.UDPAddrFromAddrPort(src), nil
	}
}

// send relays p to ap if the policy in force admits ap.
func (r *relayConn) send(p []byte, ap netip.AddrPort) error {
	pol := r.s.policy.Load()
	if last := r.last.Load(); last == nil || last.pol != pol || last.ap != ap {
		if pol.PermitAddr(ap) != nil {
			r.s.dropped.Add(1)
			return nil // silently dropped, as a firewall would
		}
		r.last.Store(&admitted{ap: ap, pol: pol})
	}
	ok, err := r.raw.send(p, ap)
	if !ok {
		_, err = r.UDPConn.WriteToUDPAddrPort(p, ap)
	}
	if err == nil {
		r.s.relayed.Add(1)
	}
	return err
}

func (r *relayConn) Close() error {
	var err error
	r.closeOnce.Do(func() {
		err = r.UDPConn.Close()
		// pion also opens and closes sockets to probe for even ports.
		r.s.mu.Lock()
		if r.s.relays[r.advertised] == r {
			delete(r.s.relays, r.advertised)
		}
		r.s.mu.Unlock()
	})
	return err
}

// ListenUDP opens a UDP listener with raised socket buffers (buf bytes,
// DefaultListenerBuffer when 0). Every client's packets queue on this one
// socket, so it absorbs the bursts while the reader is descheduled.
func ListenUDP(addr string, buf int) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("turn udp listener %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("turn udp listener: %w", err)
	}
	if buf <= 0 {
		buf = DefaultListenerBuffer
	}
	SetSocketBuffers(c, buf)
	return c, nil
}

// ListenTLS opens a TLS listener whose certificate is read from certFile and
// keyFile and re-read when either file changes (a renewed Secret), checked
// at most every 10 s.
func ListenTLS(addr, certFile, keyFile string) (net.Listener, error) {
	cl := &certLoader{cert: certFile, key: keyFile}
	if _, err := cl.load(); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("turn tls listener: %w", err)
	}
	return tls.NewListener(l, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cl.get() },
	}), nil
}

type certLoader struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	mod     time.Time
	checked time.Time
}

func (c *certLoader) load() (*tls.Certificate, error) {
	crt, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("load TURN TLS certificate: %w", err)
	}
	c.mu.Lock()
	c.current = &crt
	c.mod = c.modTime()
	c.checked = time.Now()
	c.mu.Unlock()
	return &crt, nil
}

func (c *certLoader) modTime() time.Time {
	var t time.Time
	for _, f := range []string{c.cert, c.key} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

func (c *certLoader) get() (*tls.Certificate, error) {
	c.mu.Lock()
	cur, stale := c.current, time.Since(c.checked) > 10*time.Second
	if stale {
		c.checked = time.Now()
		stale = c.modTime().After(c.mod)
	}
	c.mu.Unlock()
	if stale {
		if crt, err := c.load(); err == nil {
			return crt, nil
		}
	}
	return cur, nil
}

// ListenShared opens UDP (with raised buffers, as ListenUDP) and TCP on the
// same port of ip, the usual TURN layout. With port 0 the kernel picks a free
// UDP port whose TCP twin may be taken by another program; then it picks
// again, a few times, before giving up.
func ListenShared(ip string, port, buf int) (*net.UDPConn, net.Listener, error) {
	const attempts = 10
	for i := 0; ; i++ {
		pc, err := ListenUDP(net.JoinHostPort(ip, strconv.Itoa(port)), buf)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		if port != 0 || i == attempts-1 {
			return nil, nil, fmt.Errorf("tcp listener on the udp port: %w", err)
		}
	}
}
