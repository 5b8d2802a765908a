package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Defaults of the abuse caps.
const (
	DefaultAllocationQuota = 10
	DefaultPermissionCap   = 128
	DefaultUnauthPerSecond = 100
	DefaultSocketBuffer    = 4 << 20  // relay sockets
	DefaultListenerBuffer  = 16 << 20 // the shared client-facing UDP socket
	DefaultRealm           = "switchboard"
	// permissionLifetime is RFC 8656's permission lifetime; the cap counts
	// distinct peer IPs permitted within it.
	permissionLifetime = 5 * time.Minute
	flushInterval      = time.Second
)

// ErrNoListeners is returned by New without any listener.
var ErrNoListeners = errors.New("turn: no listeners")

// Config configures a Server. The caller opens the sockets (ListenUDP,
// ListenTCP, ListenTLS help) and passes them in; the server owns them from
// then on and closes them in Close.
type Config struct {
	// PacketConns are the UDP listeners.
	PacketConns []net.PacketConn
	// Listeners are the TCP and TLS listeners.
	Listeners []net.Listener
	// RelayIP is the local address relay sockets bind to.
	RelayIP netip.Addr
	// PublicIP is the relay address advertised to clients (XOR-RELAYED-ADDRESS);
	// RelayIP when unset.
	PublicIP netip.Addr
	// Realm is the STUN realm; DefaultRealm when empty. It must not name an
	// internal host (TURN-09).
	Realm string
	// Pod is the pool configuration: TURN keys, exposure, allowed CIDRs.
	Pod *config.Pod
	// SFUEndpoints are the SFU media endpoints the relay may reach in
	// TURNIngress mode; SetSFUEndpoints replaces them later.
	SFUEndpoints []netip.AddrPort
	// Revocations is consulted on every authenticated request; an in-memory
	// set when nil.
	Revocations Revocations
	// Meter receives per-app egress and ingress; discarded when nil.
	Meter Meter
	// AllocationQuota caps live allocations per credential (username).
	AllocationQuota int
	// PermissionCap caps distinct peer IPs per allocation.
	PermissionCap int
	// UnauthenticatedPerSecond caps the STUN messages answered per second
	// for one source IP without an allocation (reflection guard).
	UnauthenticatedPerSecond int
	// SocketBuffer is SO_RCVBUF/SO_SNDBUF of relay sockets.
	SocketBuffer int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
	// PionLogger overrides pion's own logger factory (errors only by default).
	PionLogger logging.LoggerFactory
}

// Stats are the server's running totals.
type Stats struct {
	// Allocations is the number of live allocations.
	Allocations int
	// RelayedPackets counts datagrams relay sockets sent to peers.
	RelayedPackets uint64
	// DroppedPackets counts datagrams a relay socket refused to send
	// because the policy denies the destination.
	DroppedPackets uint64
	// Forbidden counts requests answered with 403.
	Forbidden uint64
	// QuotaRefused counts Allocate requests answered with 486.
	QuotaRefused uint64
}

// Server is one TURN pod's server. Create it with New, update it with
// Update and SetSFUEndpoints, stop it with Close.
type Server struct {
	log   *slog.Logger
	now   func() time.Time
	realm string
	meter Meter
	rev   Revocations

	quota   int
	permCap int
	sockBuf int

	keys   atomic.Pointer[Keyring]
	policy atomic.Pointer[Policy]

	pion *pionturn.Server

	// policyMu serialises policy rebuilds.
	policyMu   sync.Mutex
	allowCIDRs []string
	ingress    bool
	sfu        []netip.AddrPort
	self       []netip.AddrPort

	mu       sync.Mutex
	allocs   map[string]*allocState    // by fiveKey(src, dst)
	relays   map[string]*relayConn     // by advertised relay address
	pending  map[string]string         // src address -> username with a reserved quota slot
	reserved map[string]int            // username -> live + pending allocations
	udp      map[string]*clientConn    // by local address
	tcp      map[string]*frameConn     // by fiveKey(remote, local)
	perms    map[string]*permissionSet // by fiveKey(src, dst)
	pendAt   map[string]time.Time      // when a pending reservation was made
	listen   []*frameListener          // to close
	closed   bool
	draining bool

	relayed, dropped, forbidden, quotaRefused atomic.Uint64

	unauth *unauthLimiter

	stopWatch func()
	done      chan struct{}
	wg        sync.WaitGroup
}

// allocState is what the server knows about one pion allocation.
type allocState struct {
	key      string
	username string
	appID    string
	relay    *relayConn
	egress   atomic.Uint64 // not yet flushed to the meter
	ingress  atomic.Uint64

	// For UDP clients: where relayed data goes back to, and the channel
	// bindings, so ChannelData is relayed in both directions without
	// going through pion's per-packet path (see conn.go, relay.go).
	client netip.AddrPort
	out    *net.UDPConn
	chans  atomic.Pointer[chanTable]
}

// chanTable is an allocation's channel bindings; copied on change.
type chanTable struct {
	byNum  map[uint16]netip.AddrPort
	byPeer map[netip.AddrPort]uint16
}

var emptyChans = &chanTable{byNum: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}}

type permissionSet struct {
	peers map[netip.Addr]time.Time
}

// New starts a server on the given sockets.
func New(cfg Config) (*Server, error) {
	if len(cfg.PacketConns) == 0 && len(cfg.Listeners) == 0 {
		return nil, ErrNoListeners
	}
	s := &Server{
		log:      cfg.Logger,
		now:      cfg.Now,
		realm:    cfg.Realm,
		meter:    cfg.Meter,
		rev:      cfg.Revocations,
		quota:    cfg.AllocationQuota,
		permCap:  cfg.PermissionCap,
		sockBuf:  cfg.SocketBuffer,
		sfu:      cfg.SFUEndpoints,
		allocs:   map[string]*allocState{},
		relays:   map[string]*relayConn{},
		pending:  map[string]string{},
		pendAt:   map[string]time.Time{},
		reserved: map[string]int{},
		udp:      map[string]*clientConn{},
		tcp:      map[string]*frameConn{},
		perms:    map[string]*permissionSet{},
		done:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "turn")
	if s.now == nil {
		s.now = time.Now
	}
	if s.realm == "" {
		s.realm = DefaultRealm
	}
	if s.meter == nil {
		s.meter = NewCounters()
	}
	if s.rev == nil {
		s.rev = NewMemoryRevocations(s.now)
	}
	if s.quota <= 0 {
		s.quota = DefaultAllocationQuota
	}
	if s.permCap <= 0 {
		s.permCap = DefaultPermissionCap
	}
	if s.sockBuf <= 0 {
		s.sockBuf = DefaultSocketBuffer
	}
	s.unauth = &unauthLimiter{limit: cfg.UnauthenticatedPerSecond, counts: map[netip.Addr]int{}}
	if s.unauth.limit == 0 {
		s.unauth.limit = DefaultUnauthPerSecond
	}
	relayIP := cfg.RelayIP
	if !relayIP.IsValid() {
		return nil, fmt.Errorf("turn: relay IP is required")
	}
	publicIP := cfg.PublicIP
	if !publicIP.IsValid() {
		publicIP = relayIP
	}
	s.self = selfAddrs(cfg, relayIP, publicIP)
	if err := s.Update(cfg.Pod); err != nil {
		return nil, err
	}

	gen := &relayGenerator{s: s, bind: relayIP, public: publicIP}
	perm := func(_ net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		return ok && s.policy.Load().PermitIP(ip) == nil
	}
	pcfg := pionturn.ServerConfig{
		Realm:         s.realm,
		AuthHandler:   s.authHandler,
		QuotaHandler:  s.quotaHandler,
		LoggerFactory: cfg.PionLogger,
		EventHandler: pionturn.EventHandler{
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onAllocationError,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	}
	if pcfg.LoggerFactory == nil {
		lf := logging.NewDefaultLoggerFactory()
		lf.DefaultLogLevel = logging.LogLevelError
		pcfg.LoggerFactory = lf
	}
	for _, pc := range cfg.PacketConns {
		cc := &clientConn{PacketConn: pc, s: s, clients: map[netip.AddrPort]*allocState{}}
		s.udp[pc.LocalAddr().String()] = cc
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: cc, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	for _, l := range cfg.Listeners {
		fl := &frameListener{Listener: l, s: s}
		s.listen = append(s.listen, fl)
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener: fl, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	srv, err := pionturn.NewServer(pcfg)
	if err != nil {
		return nil, fmt.Errorf("start pion turn server: %w", err)
	}
	s.pion = srv
	s.stopWatch = s.rev.Watch(s.killUser)
	s.wg.Add(1)
	go s.housekeeping()
	return s, nil
}

// Update applies a new pool configuration: TURN keys, exposure mode and
// allowed CIDRs. Allocations whose credential no longer checks out (key
// removed) are closed within a second; relayed datagrams are re-checked
// against the new policy from the next packet on.
func (s *Server) Update(pod *config.Pod) error {
	var cidrs []string
	ingress := false
	if pod != nil {
		cidrs = pod.TURN.AllowedPeerCIDRs
		ingress = pod.Media.Exposure == config.ExposureTURNIngress
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	p, err := NewPolicy(cidrs, ingress, s.sfu)
	if err != nil {
		return fmt.Errorf("turn config: %w", err)
	}
	s.allowCIDRs, s.ingress = cidrs, ingress
	s.policy.Store(p.WithSelf(s.self))
	s.keys.Store(NewKeyring(pod))
	return nil
}

// SetSFUEndpoints replaces the SFU media endpoints reachable in TURNIngress
// mode. The pod wiring feeds it (from a headless Service's addresses, or the
// fleet hub) whenever the set of SFU pods changes.
func (s *Server) SetSFUEndpoints(eps []netip.AddrPort) error {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	p, err := NewPolicy(s.allowCIDRs, s.ingress, eps)
	if err != nil {
		return err
	}
	s.sfu = append([]netip.AddrPort(nil), eps...)
	s.policy.Store(p.WithSelf(s.self))
	return nil
}

// Policy is the relay policy in force.
func (s *Server) Policy() *Policy { return s.policy.Load() }

// Keyring is the key ring in force.
func (s *Server) Keyring() *Keyring { return s.keys.Load() }

// Revocations is the revocation set the server consults.
func (s *Server) Revocations() Revocations { return s.rev }

// Stats returns the running totals.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.allocs)
	s.mu.Unlock()
	return Stats{
		Allocations:    n,
		RelayedPackets: s.relayed.Load(),
		DroppedPackets: s.dropped.Load(),
		Forbidden:      s.forbidden.Load(),
		QuotaRefused:   s.quotaRefused.Load(),
	}
}

// Drain makes the server refuse new allocations (486, so clients move to
// another ICE server) while existing ones keep relaying and refreshing.
// The pod calls it on SIGTERM and waits for Stats().Allocations to reach 0
// or its drain timeout.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Close stops the listeners, closes every allocation, flushes the meter and
// waits for the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stopWatch()
	close(s.done)
	err := s.pion.Close()
	// Accepted TCP connections are not closed by pion; close them so their
	// read loops end and their allocations are deleted.
	s.mu.Lock()
	conns := make([]*frameConn, 0, len(s.tcp))
	for _, c := range s.tcp {
		conns = append(conns, c)
	}
	relays := make([]*relayConn, 0, len(s.relays))
	for _, r := range s.relays {
		relays = append(relays, r)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	for _, r := range relays {
		_ = r.Close()
	}
	s.wg.Wait()
	// Allocation goroutines exit once their relay socket is closed; wait
	// (bounded) for their deletion events so the last bytes are metered.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.allocs)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.flush()
	return err
}

// authHandler is pion's AuthHandler: it runs on every authenticated request.
func (s *Server) authHandler(username, realm string, src net.Addr) ([]byte, bool) {
	_, pass, err := s.keys.Load().Check(username, s.now(), s.rev)
	if err != nil {
		s.log.Debug("turn auth refused", "client", src.String(), "err", err)
		return nil, false
	}
	return pionturn.GenerateAuthKey(username, realm, pass), true
}

// quotaHandler reserves an allocation slot for username. The reservation
// becomes a live allocation in onAllocationCreated or is released in
// onAllocationError (pion handles one request per source at a time, so an
// error for a source with a pending reservation is that Allocate failing).
func (s *Server) quotaHandler(username, _ string, src net.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining || s.reserved[username] >= s.quota {
		s.quotaRefused.Add(1)
		return false
	}
	key := src.String()
	if prev, ok := s.pending[key]; ok { // a stale reservation of this source
		s.reserved[prev]--
	}
	s.pending[key] = username
	s.pendAt[key] = s.now()
	s.reserved[username]++
	return true
}

func (s *Server) releasePendingLocked(src string) {
	if u, ok := s.pending[src]; ok {
		delete(s.pending, src)
		delete(s.pendAt, src)
		s.decReservedLocked(u)
	}
}

func (s *Server) decReservedLocked(u string) {
	if s.reserved[u] <= 1 {
		delete(s.reserved, u)
	} else {
		s.reserved[u]--
	}
}

func (s *Server) onAllocationError(src, _ net.Addr, _, _ string) {
	s.mu.Lock()
	s.releasePendingLocked(src.String())
	s.mu.Unlock()
}

func (s *Server) onAllocationCreated(src, dst net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
	key := fiveKey(src, dst)
	st := &allocState{key: key, username: username}
	st.chans.Store(emptyChans)
	if k, _, err := s.keys.Load().Check(username, s.now(), nil); err == nil {
		st.appID = k.AppID
	}
	s.mu.Lock()
	if _, ok := s.pending[src.String()]; ok {
		delete(s.pending, src.String())
		delete(s.pendAt, src.String())
	} else {
		s.reserved[username]++ // created without a reservation: still counts
	}
	st.relay = s.relays[relayAddr.String()]
	s.allocs[key] = st
	if cc := s.udpListener(src, dst); cc != nil {
		if ap, ok := addrPort(src); ok {
			st.client = ap
			st.out, _ = cc.PacketConn.(*net.UDPConn)
			cc.mu.Lock()
			cc.clients[ap] = st
			cc.mu.Unlock()
		}
	}
	if st.relay != nil {
		st.relay.state.Store(st)
	}
	if fc := s.tcp[key]; fc != nil {
		fc.state.Store(st)
	}
	s.mu.Unlock()
	s.log.Debug("turn allocation created", "client", src.String(), "app", st.appID, "relay", relayAddr.String())
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, _, username, _ string) {
	key := fiveKey(src, dst)
	s.mu.Lock()
	st := s.allocs[key]
	delete(s.allocs, key)
	delete(s.perms, key)
	if st != nil {
		s.decReservedLocked(username)
		if st.relay != nil && s.relays[st.relay.advertised] == st.relay {
			delete(s.relays, st.relay.advertised)
		}
	}
	if cc := s.udpListener(src, dst); cc != nil {
		if ap, ok := addrPort(src); ok {
			cc.mu.Lock()
			delete(cc.clients, ap)
			cc.mu.Unlock()
		}
	}
	s.mu.Unlock()
	if st != nil {
		s.flushOne(st)
		if st.relay != nil {
			_ = st.relay.Close()
		}
	}
}

func (s *Server) onChannelCreated(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
	s.updateChannels(src, dst, func(t *chanTable) {
		if ap, ok := addrPort(peer); ok {
			t.byNum[number] = ap
			t.byPeer[ap] = number
		}
	})
}

func (s *Server) onChannelDeleted(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
	s.updateChannels(src, dst, func(t *chanTable) {
		delete(t.byNum, number)
		if ap, ok := addrPort(peer); ok {
			delete(t.byPeer, ap)
		}
	})
}

func (s *Server) updateChannels(src, dst net.Addr, change func(*chanTable)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.allocs[fiveKey(src, dst)]
	if st == nil {
		return
	}
	old := st.chans.Load()
	t := &chanTable{byNum: make(map[uint16]netip.AddrPort, len(old.byNum)+1), byPeer: make(map[netip.AddrPort]uint16, len(old.byPeer)+1)}
	for k, v := range old.byNum {
		t.byNum[k] = v
	}
	for k, v := range old.byPeer {
		t.byPeer[k] = v
	}
	change(t)
	st.chans.Store(t)
}

// killUser closes every allocation of username (revocation).
func (s *Server) killUser(username string) {
	s.mu.Lock()
	var victims []*relayConn
	for _, st := range s.allocs {
		if st.username == username && st.relay != nil {
			victims = append(victims, st.relay)
		}
	}
	s.mu.Unlock()
	for _, r := range victims {
		_ = r.Close() // pion's relay loop ends and deletes the allocation
	}
	if len(victims) > 0 {
		s.log.Info("turn credential revoked, allocations closed", "allocations", len(victims))
	}
}

// housekeeping flushes meters, expires stale reservations and closes
// allocations whose credential expired, was revoked or lost its key.
func (s *Server) housekeeping() {
	defer s.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.flush()
		now := s.now()
		kr := s.keys.Load()
		var victims []*relayConn
		s.mu.Lock()
		for src, at := range s.pendAt {
			if now.Sub(at) > 5*time.Second {
				s.releasePendingLocked(src)
			}
		}
		for _, st := range s.allocs {
			if _, _, err := kr.Check(st.username, now, s.rev); err != nil && st.relay != nil {
				victims = append(victims, st.relay)
			}
		}
		s.mu.Unlock()
		for _, r := range victims {
			_ = r.Close()
		}
	}
}

func (s *Server) flush() {
	s.mu.Lock()
	states := make([]*allocState, 0, len(s.allocs))
	for _, st := range s.allocs {
		states = append(states, st)
	}
	s.mu.Unlock()
	for _, st := range states {
		s.flushOne(st)
	}
}

func (s *Server) flushOne(st *allocState) {
	if st.appID == "" {
		return
	}
	if n := st.egress.Swap(0); n > 0 {
		s.meter.AddEgress(st.appID, n)
	}
	if n := st.ingress.Swap(0); n > 0 {
		s.meter.AddIngress(st.appID, n)
	}
}

// permit records a permission for peer on the allocation key and reports
// false when that would exceed the per-allocation cap.
func (s *Server) permit(key string, peer netip.Addr) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.perms[key]
	if ps == nil {
		ps = &permissionSet{peers: map[netip.Addr]time.Time{}}
		s.perms[key] = ps
	}
	if _, ok := ps.peers[peer]; !ok && len(ps.peers) >= s.permCap {
		for ip, exp := range ps.peers {
			if now.After(exp) {
				delete(ps.peers, ip)
			}
		}
		if len(ps.peers) >= s.permCap {
			return false
		}
	}
	ps.peers[peer] = now.Add(permissionLifetime)
	return true
}

// selfAddrs lists the listener ports on the relay and public addresses (and
// on the listeners' own bound addresses).
func selfAddrs(cfg Config, relayIP, publicIP netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(a net.Addr) {
		ap, ok := addrPort(a)
		if !ok {
			return
		}
		out = append(out, ap, netip.AddrPortFrom(relayIP, ap.Port()), netip.AddrPortFrom(publicIP, ap.Port()))
	}
	for _, pc := range cfg.PacketConns {
		add(pc.LocalAddr())
	}
	for _, l := range cfg.Listeners {
		add(l.Addr())
	}
	return out
}

// fiveKey names a client's 5-tuple. The network is part of it: UDP and TCP
// listeners usually share a port (3478), and a TCP client's ephemeral port
// can equal a UDP client's.
func fiveKey(src, dst net.Addr) string {
	return src.Network() + " " + src.String() + "|" + dst.String()
}

// udpListener is the UDP listener a client of src reached at dst, or nil
// for TCP and TLS clients (whose listener may share dst's ip:port).
func (s *Server) udpListener(src, dst net.Addr) *clientConn {
	if _, ok := src.(*net.UDPAddr); !ok {
		return nil
	}
	return s.udp[dst.String()]
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
