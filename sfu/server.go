package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rtc/switchboard/sfu/api"
	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
)

// Options configures a Server.
type Options struct {
	// Config is the initial pod configuration (apps, media port). Required.
	Config *config.Pod
	// UDPConn is the ICE socket to use. When nil, the server listens on
	// UDPAddr, or on ":<Config.Media.UDPPort>".
	UDPConn net.PacketConn
	UDPAddr string
	// AdvertiseIPs are the addresses put in ICE candidates (NAT 1:1).
	AdvertiseIPs []string
	// Clock is injected by tests; nil means the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger
	// SweepEvery is the period of session and track collection; 0 means 1 s,
	// negative disables the background sweep (tests call Sweep).
	SweepEvery time.Duration
	// MaxBodyBytes and MaxSDPBytes bound API requests; 0 means the defaults.
	MaxBodyBytes int64
	MaxSDPBytes  int
	// NewSessionID overrides session ID generation (fleet routing).
	NewSessionID func() string
	// Hooks let the usage layer observe the node without the media core
	// importing it. Each may be nil.
	Hooks Hooks
}

// Hooks are callbacks into the usage and rate-limit layers. They run on
// API and Pion goroutines and must not block.
type Hooks struct {
	// RemoteAddr: ICE selected (active) or stopped using (inactive) a client
	// transport address for a session of app. Pair it with a counting
	// PacketConn passed as Options.UDPConn to attribute media bytes.
	RemoteAddr func(app string, addr netip.AddrPort, active bool)
	// Request: a Calls API answer for app ("unknown" if unauthenticated).
	Request func(app string, status int)
	// RateLimited: a request of app refused by a quota (scope "session").
	RateLimited func(app, scope string)
}

// Server is one SFU node.
type Server struct {
	log      *slog.Logger
	tr       *transport.Transport
	apps     *api.Apps
	sessions *session.Manager
	handler  *api.Handler

	mu      sync.Mutex
	cfg     *config.Pod
	closed  bool
	drained bool
}

// New opens the media port and builds the API.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("sfu: no config")
	}
	cfg := *o.Config
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sfu: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	conn := o.UDPConn
	if conn == nil {
		addr := o.UDPAddr
		if addr == "" {
			addr = fmt.Sprintf(":%d", cfg.Media.UDPPort)
		}
		var err error
		if conn, err = net.ListenPacket("udp", addr); err != nil {
			return nil, fmt.Errorf("sfu: listen media port: %w", err)
		}
	}
	tr, err := transport.New(transport.Config{Conn: conn, AdvertiseIPs: o.AdvertiseIPs, Logger: log})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &Server{log: log, tr: tr, apps: api.NewApps(), cfg: &cfg}
	s.apps.Set(cfg.Apps)
	var newID func() session.SessionID
	if o.NewSessionID != nil {
		newID = func() session.SessionID { return session.SessionID(o.NewSessionID()) }
	}
	var onRemote func(session.AppID, netip.AddrPort, bool)
	if f := o.Hooks.RemoteAddr; f != nil {
		onRemote = func(app session.AppID, addr netip.AddrPort, active bool) { f(string(app), addr, active) }
	}
	s.sessions = session.NewManager(session.Config{
		Transport: tr, Clock: o.Clock, Logger: log, Limits: s.apps.Limits,
		NewSessionID: newID, SweepEvery: o.SweepEvery, OnRemoteAddr: onRemote,
	})
	s.handler = api.New(api.Options{Apps: s.apps, Sessions: s.sessions, Clock: o.Clock, Logger: log,
		MaxBodyBytes: o.MaxBodyBytes, MaxSDPBytes: o.MaxSDPBytes,
		OnRequest: o.Hooks.Request, OnRateLimited: o.Hooks.RateLimited})
	log.Info("sfu ready", "udp", conn.LocalAddr().String(), "apps", len(cfg.Apps), "advertise", o.AdvertiseIPs)
	return s, nil
}

// Handler serves the Calls API, /health, /ready and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the Prometheus registry behind /metrics, for extra collectors.
func (s *Server) Registry() *prometheus.Registry { return s.handler.Registry() }

// UDPAddr is the local address of the media port.
func (s *Server) UDPAddr() net.Addr { return s.tr.LocalAddr() }

// Config returns the configuration in force.
func (s *Server) Config() *config.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// SetConfig applies a new pod configuration live: added apps can create
// sessions at once, changed limits apply to the next call, and sessions of
// removed apps are closed. The media port is not changed.
func (s *Server) SetConfig(p *config.Pod) error {
	if p == nil {
		return errors.New("sfu: nil config")
	}
	cfg := *p
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sfu: %w", err)
	}
	s.mu.Lock()
	old := s.cfg
	s.cfg = &cfg
	s.mu.Unlock()
	s.apps.Set(cfg.Apps)
	keep := map[string]bool{}
	for _, a := range cfg.Apps {
		keep[a.ID] = true
	}
	for _, a := range old.Apps {
		if !keep[a.ID] {
			s.log.Info("app removed; closing its sessions", "app", a.ID)
			s.sessions.CloseApp(session.AppID(a.ID))
		}
	}
	if old.Media.UDPPort != cfg.Media.UDPPort {
		s.log.Warn("media port change needs a restart", "running", old.Media.UDPPort, "configured", cfg.Media.UDPPort)
	}
	s.log.Info("config applied", "version", cfg.Version, "apps", len(cfg.Apps))
	return nil
}

// Drain marks the node as draining: /ready reports false and new sessions
// are refused, existing sessions continue. The fleet layer decides when to
// Close.
func (s *Server) Drain() {
	s.mu.Lock()
	s.drained = true
	s.mu.Unlock()
	s.handler.SetDraining(true)
}

// Sweep runs session expiry and track collection now (tests with a fake
// clock call it after advancing time).
func (s *Server) Sweep() { s.sessions.Sweep() }

// SessionConnected reports whether a session's transport is connected.
func (s *Server) SessionConnected(appID, sessionID string) bool {
	ses, err := s.sessions.Get(session.AppID(appID), session.SessionID(sessionID))
	return err == nil && ses.Connected()
}

// Stats returns live counts per app ID.
func (s *Server) Stats() map[string]session.AppStats {
	out := map[string]session.AppStats{}
	for k, v := range s.sessions.Stats() {
		out[string(k)] = v
	}
	return out
}

// Close ends every session and releases the media port.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.sessions.Close()
	return s.tr.Close()
}

// Usage returns monotonic RTP byte counts per app ID on this node (egress =
// bytes sent to subscribers, ingress = bytes received from publishers);
// sfu/usage turns them into reports.
func (s *Server) Usage() map[string]session.Usage {
	out := map[string]session.Usage{}
	for k, v := range s.sessions.Usage() {
		out[string(k)] = v
	}
	return out
}

// SessionIDs lists the live sessions of an app on this node.
func (s *Server) SessionIDs(appID string) []string {
	var out []string
	for _, id := range s.sessions.IDs(session.AppID(appID)) {
		out = append(out, string(id))
	}
	return out
}
