package session

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

// Config configures a Manager.
type Config struct {
	Transport *transport.Transport
	// Clock is the time source; nil means the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger
	// Limits returns the limits of an app; false means the app no longer
	// exists (its sessions are closed at the next sweep).
	Limits func(AppID) (Limits, bool)
	// NewSessionID makes session IDs; nil means 32 random lowercase hex
	// characters. The fleet layer may encode the pod in it.
	NewSessionID func() SessionID
	// SweepEvery is the period of the background sweep; 0 means 1 s,
	// negative disables it (tests then call Sweep).
	SweepEvery time.Duration
	// OnRemoteAddr, if set, is told when ICE selects the client transport
	// address of a session (active) and when the session stops using it,
	// so the usage layer can attribute bytes on the shared UDP port.
	OnRemoteAddr func(app AppID, addr netip.AddrPort, active bool)
	// RemoteTrack, if set, is asked for a publication whose session is not
	// on this node (fleet relay, sfu/relay); it returns the local fan-out
	// track or ErrSessionGone.
	RemoteTrack func(app AppID, sid SessionID, name TrackName) (*forward.Track, error)
	// RemoteDataChannel, if set, is asked for a DataChannel whose session
	// is not on this node (fleet relay); it returns the relay's local end
	// or an error when the channel is not published there.
	RemoteDataChannel func(app AppID, sid SessionID, name string) (*RemoteDataChannel, error)
}

// Manager owns the sessions of one SFU node.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock

	mu       sync.Mutex
	sessions map[SessionID]*Session
	retired  map[AppID]Usage
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// NewManager starts a manager and its background sweep.
func NewManager(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewSessionID == nil {
		cfg.NewSessionID = func() SessionID { return SessionID(RandomHex(16)) }
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, sessions: map[SessionID]*Session{}, retired: map[AppID]Usage{},
		stop: make(chan struct{}), done: make(chan struct{})}
	every := cfg.SweepEvery
	if every == 0 {
		every = time.Second
	}
	if every > 0 {
		go m.sweepLoop(every)
	} else {
		close(m.done)
	}
	return m
}

// RandomHex returns 2n lowercase hex characters from crypto/rand.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) sweepLoop(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

func (m *Manager) limits(app AppID) (Limits, bool) {
	if m.cfg.Limits == nil {
		return Limits{MaxTracksPerCall: 64, ConnectWait: 5 * time.Second, TrackTimeout: 30 * time.Second,
			ReconnectWindow: 30 * time.Second}, true
	}
	return m.cfg.Limits(app)
}

// Create makes an empty session of app. No PeerConnection exists until
// the first SDP exchange.
func (m *Manager) Create(app AppID, thirdparty bool) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	id := m.cfg.NewSessionID()
	for m.sessions[id] != nil {
		id = m.cfg.NewSessionID()
	}
	now := m.clock.Now()
	s := &Session{
		ID: id, App: app, thirdparty: thirdparty, m: m, log: m.log.With("session", string(id), "app", string(app)),
		created: now, lastUse: now, pubs: map[TrackName]*publication{},
		connCh: make(chan struct{}), done: make(chan struct{}),
	}
	m.sessions[id] = s
	return s, nil
}

// Get returns a live session of app. A session of another app is reported
// exactly like a missing one.
func (m *Manager) Get(app AppID, id SessionID) (*Session, error) {
	m.mu.Lock()
	s := m.sessions[id]
	m.mu.Unlock()
	if s == nil || s.App != app || s.isClosed() {
		return nil, ErrSessionGone
	}
	return s, nil
}

// CountByApp returns live sessions of app.
func (m *Manager) CountByApp(app AppID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.sessions {
		if s.App == app {
			n++
		}
	}
	return n
}

// AppStats are the live counts of one app.
type AppStats struct {
	Sessions      int
	Publications  int
	Subscriptions int
	// EgressBytes and IngressBytes are RTP bytes forwarded to and received
	// from the app's sessions that are still live.
	EgressBytes, IngressBytes uint64
}

// Stats returns live counts per app.
func (m *Manager) Stats() map[AppID]AppStats {
	out := map[AppID]AppStats{}
	for _, s := range m.snapshot() {
		st := out[s.App]
		st.Sessions++
		p, sub, eg, in := s.counts()
		st.Publications += p
		st.Subscriptions += sub
		st.EgressBytes += eg
		st.IngressBytes += in
		out[s.App] = st
	}
	return out
}

func (m *Manager) snapshot() []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	return out
}

// Usage is monotonic media byte counts of an app on this node: RTP bytes
// written to subscribers (egress, after SRTP) and received from publishers
// (ingress), plus DataChannel message bytes sent to and received from its
// endpoints. They only grow while the process lives.
type Usage struct {
	EgressBytes, IngressBytes uint64
}

// retire removes a closed session and keeps its final counts.
func (m *Manager) retire(s *Session, u Usage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions[s.ID] != s {
		return
	}
	delete(m.sessions, s.ID)
	r := m.retired[s.App]
	r.EgressBytes += u.EgressBytes
	r.IngressBytes += u.IngressBytes
	m.retired[s.App] = r
}

// Usage returns monotonic byte counts per app (closed plus live sessions).
func (m *Manager) Usage() map[AppID]Usage {
	live := m.snapshot()
	out := map[AppID]Usage{}
	m.mu.Lock()
	for app, u := range m.retired {
		out[app] = u
	}
	m.mu.Unlock()
	for _, s := range live {
		_, _, e, i := s.counts()
		u := out[s.App]
		u.EgressBytes += e
		u.IngressBytes += i
		out[s.App] = u
	}
	return out
}

// Sweep expires sessions past their reconnect window, closes sessions of
// removed apps, and collects publications without inbound packets past the
// track timeout (for every session that uses them).
func (m *Manager) Sweep() {
	now := m.clock.Now()
	for _, s := range m.snapshot() {
		lim, ok := m.limits(s.App)
		if !ok {
			s.log.Info("closing session of removed app")
			s.Close()
			continue
		}
		if s.expired(now, lim.ReconnectWindow) {
			s.log.Info("session expired", "window", lim.ReconnectWindow)
			s.Close()
			continue
		}
		s.collectIdle(now, lim.TrackTimeout)
	}
}

// CloseApp closes every session of app at once.
func (m *Manager) CloseApp(app AppID) {
	for _, s := range m.snapshot() {
		if s.App == app {
			s.Close()
		}
	}
}

// Close closes every session and stops the sweep.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	var wg sync.WaitGroup
	for _, s := range m.snapshot() {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
}

// IDs lists the live sessions of app.
func (m *Manager) IDs(app AppID) []SessionID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SessionID
	for id, s := range m.sessions {
		if s.App == app {
			out = append(out, id)
		}
	}
	return out
}
