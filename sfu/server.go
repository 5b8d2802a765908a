package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rtc/switchboard/sfu/api"
	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
	"github.com/switchboard-rtc/switchboard/sfu/relay"
	"github.com/switchboard-rtc/switchboard/sfu/session"
	"github.com/switchboard-rtc/switchboard/sfu/transport"
	"github.com/switchboard-rtc/switchboard/turn"
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
	// PodOrdinal is this pod's number in its fleet (Config.Fleet); session
	// IDs it creates name it, and peers forward calls for them here.
	PodOrdinal int
	// PlacementPoll is how often the pod polls its fleet peers' load for
	// placement of new sessions; 0 means 1 s, negative disables the
	// background poll (tests call PollPeers).
	PlacementPoll time.Duration
	// Hooks let the usage layer observe the node without the media core
	// importing it. Each may be nil.
	Hooks Hooks
	// TURNRevocations receives the revoke calls of the TURN credentials API
	// (served at /v1/turn/keys/ with the keys and URLs of Config.TURN). When
	// nil the set is local to this process; `switchboard dev` passes its
	// TURN server's set so a revoked username is refused at once;
	// `switchboard sfu` passes one that also forwards to the hub (docs/turn.md).
	TURNRevocations turn.Revocations
}

// Hooks are callbacks into the usage and rate-limit layers. They run on
// API and Pion goroutines and must not block.
type Hooks struct {
	// RemoteAddr: ICE selected (active) or stopped using (inactive) a client
	// transport address for a session of app. Pair it with a counting
	// PacketConn passed as Options.UDPConn to attribute media bytes.
	// Addresses whose IP is one of the config's TURN.RelayIPs are never
	// reported: the pool's TURN pods meter that traffic (counted once).
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
	turnAPI  *turn.API
	// relayIPs are the config's TURN.RelayIPs, read on ICE goroutines.
	relayIPs atomic.Pointer[map[netip.Addr]bool]

	// Fleet: membership (nil without Config.Fleet), the router in front of
	// the API, and both sides of the track relay.
	members     atomic.Pointer[fleet.Members]
	ordinal     int
	router      *fleet.Router
	relaySource *relay.Server
	relayDest   *relay.Client
	// view is the peers' load for placement (placement.go); egressRate
	// feeds this pod's own reported load.
	view       *fleet.View
	egressRate rateMeter
	// draining is set once by Drain (drain.go) and never cleared.
	draining atomic.Bool

	mu     sync.Mutex
	cfg    *config.Pod
	closed bool
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
	relayIPs, err := parseRelayIPs(cfg.TURN.RelayIPs)
	if err != nil {
		return nil, err
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
		if conn, err = net.ListenPacket("udp", addr); err != nil {
			return nil, fmt.Errorf("sfu: listen media port: %w", err)
		}
	}
	tr, err := transport.New(transport.Config{Conn: conn, AdvertiseIPs: o.AdvertiseIPs, Logger: log})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &Server{log: log, tr: tr, apps: api.NewApps(), cfg: &cfg, ordinal: o.PodOrdinal}
	s.apps.Set(cfg.Apps)
	s.relayIPs.Store(&relayIPs)
	rev := o.TURNRevocations
	if rev == nil {
		rev = turn.NewMemoryRevocations(nil)
	}
	s.turnAPI = turn.NewAPI(&cfg, rev, nil, log)
	s.members.Store(fleet.NewMembers(o.PodOrdinal, cfg.Fleet))
	newID := s.fleetSessionID
	if o.NewSessionID != nil {
		newID = func() session.SessionID { return session.SessionID(o.NewSessionID()) }
	}
	s.startRelay(o)
	var onRemote func(session.AppID, netip.AddrPort, bool)
	if f := o.Hooks.RemoteAddr; f != nil {
		onRemote = func(app session.AppID, addr netip.AddrPort, active bool) {
			if (*s.relayIPs.Load())[addr.Addr().Unmap()] {
				return // relayed by our own TURN pods, which meter it
			}
			f(string(app), addr, active)
		}
	}
	s.sessions = session.NewManager(session.Config{
		Transport: tr, Clock: o.Clock, Logger: log, Limits: s.apps.Limits,
		NewSessionID: newID, SweepEvery: o.SweepEvery, OnRemoteAddr: onRemote, RemoteTrack: s.remoteTrack,
		RemoteDataChannel: s.remoteDataChannel,
	})
	s.handler = api.New(api.Options{Apps: s.apps, Sessions: s.sessions, Clock: o.Clock, Logger: log,
		MaxBodyBytes: o.MaxBodyBytes, MaxSDPBytes: o.MaxSDPBytes,
		OnRequest: o.Hooks.Request, OnRateLimited: o.Hooks.RateLimited, TURN: s.turnAPI})
	registerForwardMetrics(s.Registry())
	s.router = s.newRouter()
	s.startPlacement(o)
	s.registerDrainGauge()
	log.Info("sfu ready", "udp", conn.LocalAddr().String(), "apps", len(cfg.Apps), "advertise", o.AdvertiseIPs)
	return s, nil
}

// Handler serves the Calls API, the TURN credentials API, /health, /ready
// and /metrics, forwarding calls for sessions of other fleet pods to their
// owner (sfu/fleet).
func (s *Server) Handler() http.Handler { return s.router }

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
	relayIPs, err := parseRelayIPs(cfg.TURN.RelayIPs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cfg
	s.cfg = &cfg
	s.mu.Unlock()
	s.apps.Set(cfg.Apps)
	s.turnAPI.Update(&cfg)
	s.relayIPs.Store(&relayIPs)
	s.members.Store(fleet.NewMembers(s.ordinal, cfg.Fleet))
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

// Sweep runs session expiry and track collection now (tests with a fake
// clock call it after advancing time).
func (s *Server) Sweep() {
	s.sessions.Sweep()
	s.relayDest.Sweep()
}

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
	s.view.Close()
	s.router.CloseIdleConnections()
	s.relayDest.Close()
	s.relaySource.Close()
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

// parseRelayIPs reads TURN.RelayIPs. A malformed entry refuses the whole
// configuration rather than silently metering relayed traffic twice.
func parseRelayIPs(list []string) (map[netip.Addr]bool, error) {
	out := make(map[netip.Addr]bool, len(list))
	for _, v := range list {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("sfu: turn.relayIPs: %w", err)
		}
		out[ip.Unmap().WithZone("")] = true
	}
	return out, nil
}
