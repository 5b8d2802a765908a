package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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
	rc := &relayConn{UDPConn: conn, s: g.s, advertised: adv.String()}
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
	ap := ua.AddrPort()
	pol := r.s.policy.Load()
	if last := r.last.Load(); last == nil || last.pol != pol || last.ap != ap {
		if pol.PermitAddr(ap) != nil {
			r.s.dropped.Add(1)
			return len(p), nil // silently dropped, as a firewall would
		}
		r.last.Store(&admitted{ap: ap, pol: pol})
	}
	n, err := r.UDPConn.WriteToUDPAddrPort(p, ap)
	if err == nil {
		r.s.relayed.Add(1)
	}
	return n, err
}

func (r *relayConn) Close() error {
	var err error
	r.closeOnce.Do(func() { err = r.UDPConn.Close() })
	return err
}

// SetSocketBuffers raises SO_RCVBUF and SO_SNDBUF to n bytes. It tries the
// *FORCE variants first (they ignore net.core.rmem_max/wmem_max when the
// process has CAP_NET_ADMIN) and falls back to the capped ones. The stock
// default (about 208 KB) drops datagrams at 25k packets/s.
func SetSocketBuffers(c *net.UDPConn, n int) {
	raw, err := c.SyscallConn()
	if err == nil {
		_ = raw.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n) != nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
			}
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, n) != nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n)
			}
		})
	}
}

// SocketBuffers reports the kernel's SO_RCVBUF and SO_SNDBUF of c (Linux
// reports twice the requested size).
func SocketBuffers(c *net.UDPConn) (rcv, snd int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0
	}
	_ = raw.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return rcv, snd
}

// ListenUDP opens a UDP listener with raised socket buffers.
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
		buf = DefaultSocketBuffer
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
