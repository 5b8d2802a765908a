package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"
)

// FileName is the key of the rendered configuration inside its Secret and
// the file name pods read it from.
const FileName = "switchboard.json"

// Defaults of the Calls limits (DESIGN 1.1) and the gateway rate limits
// (DESIGN 1.2). The CRD schema carries the same values as defaults.
const (
	DefaultAuthenticatedPerSecond   = 10000
	DefaultUnauthenticatedPerSecond = 10
	DefaultSessionCallsPerSecond    = 50
	DefaultMaxTracksPerCall         = 64
	DefaultTrackTimeout             = 30 * time.Second
	DefaultReconnectWindow          = 30 * time.Second
	DefaultConnectWait              = 5 * time.Second
	DefaultFreeGB                   = 1000
	DefaultPricePerGBMicroUSD       = 50000 // $0.05
	DefaultUDPPort                  = 3478
	DefaultTURNPort                 = 3478
	DefaultTURNTLSPort              = 5349
	DefaultTURNTTL                  = 24 * time.Hour
	MaxTURNTTL                      = 48 * time.Hour
)

// Exposure is how clients reach an SFU pod's media port (DESIGN 2.4).
type Exposure string

const (
	// ExposureHostNetwork: each pod advertises its node's address on one UDP port.
	ExposureHostNetwork Exposure = "HostNetwork"
	// ExposureTURNIngress: clients reach SFU pods only through the pool's TURN service.
	ExposureTURNIngress Exposure = "TURNIngress"
	// ExposureDirect: the pod IP is advertised as is (dev, tests, flat networks).
	ExposureDirect Exposure = "Direct"
)

// Pod is the whole rendered configuration of one pool.
type Pod struct {
	// Version identifies this rendering (a hash of its content). Pods report
	// the version they run so the operator can tell when a change has landed.
	Version string `json:"version"`
	// Serial orders renderings of one pool: the operator makes it larger
	// on every rendering whose content changed (for example the Unix time
	// in nanoseconds of that rendering). Pods never replace a config with
	// one of a lower Serial coming through the other channel (hub or
	// mounted file). 0 means unordered.
	Serial int64 `json:"serial,omitempty"`
	// Pool is "namespace/name" of the SFUPool.
	Pool  string `json:"pool"`
	Media Media  `json:"media"`
	TURN  TURN   `json:"turn"`
	Apps  []App  `json:"apps"`
	// Hub is the manager's fleet hub URL (config down, usage up); empty in dev.
	Hub string `json:"hub,omitempty"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	// Fleet makes the pool's SFU pods act as one SFU (session routing and
	// track relay between pods, docs/fleet.md). Nil: a single, standalone pod.
	Fleet *Fleet `json:"fleet,omitempty"`
}

// Fleet is how the SFU pods of one pool find and trust each other.
type Fleet struct {
	// Token authenticates pod-to-pod calls (forwarded API calls and track
	// relays). It is a secret: never logged, never in status.
	Token string `json:"token"`
	// PeerTemplate gives a pod's internal API address from its ordinal:
	// "{ordinal}" is replaced, e.g.
	// "demo-sfu-{ordinal}.demo-sfu-internal.calls.svc:8080".
	PeerTemplate string `json:"peerTemplate,omitempty"`
	// Peers is a static list of pods (tests, processes without Kubernetes);
	// an entry here wins over PeerTemplate.
	Peers []FleetPeer `json:"peers,omitempty"`
}

// FleetPeer is one pod of a static fleet.
type FleetPeer struct {
	// Ordinal is the pod's number (the StatefulSet ordinal), 0-65535.
	Ordinal int `json:"ordinal"`
	// Address is the pod's internal API address, host:port.
	Address string `json:"address"`
}

// Media holds the SFU pod settings.
type Media struct {
	Exposure Exposure `json:"exposure"`
	// UDPPort is the single ICE UDP mux port of every SFU pod.
	UDPPort int `json:"udpPort"`
	// DrainTimeoutSeconds is how long a stopping pod keeps existing sessions.
	DrainTimeoutSeconds int `json:"drainTimeoutSeconds"`
}

// TURN holds the TURN pod settings and the URLs handed out to clients.
type TURN struct {
	Enabled bool   `json:"enabled"`
	Realm   string `json:"realm,omitempty"`
	// URLs are handed to clients in generate-ice-servers responses,
	// e.g. "turn:turn.example.com:3478?transport=udp".
	URLs []string `json:"urls,omitempty"`
	// AllowedPeerCIDRs widen the default relay deny-list (DESIGN 2.5).
	AllowedPeerCIDRs []string `json:"allowedPeerCIDRs,omitempty"`
	// RelayIPs are the addresses SFU pods see the pool's own TURN relays
	// send from: each TURN pod's advertised relay address (--public-ip) and,
	// when it differs, the IP its relay sockets bind to (the pod IP). The
	// TURN pods meter the traffic they relay, so an SFU pod does not meter a
	// client transport whose remote IP is one of these (DESIGN 1.3: counted
	// once). Plain IPs, no CIDRs.
	RelayIPs []string `json:"relayIPs,omitempty"`
}

// App is one CallsApp as the pods see it.
type App struct {
	// ID is the Calls app ID: 32 lowercase hex characters.
	ID string `json:"id"`
	// Name is "namespace/name" of the CallsApp, for logs and metrics.
	Name string `json:"name"`
	// SecretSHA256 is the lowercase hex SHA-256 of the app's bearer secret.
	SecretSHA256 string       `json:"secretSHA256"`
	RateLimit    RateLimit    `json:"rateLimit"`
	Sessions     SessionLimit `json:"sessions"`
	// TURNKey is set when TURN is enabled for the app.
	TURNKey *TURNKey `json:"turnKey,omitempty"`
	// QuotaExceeded refuses new sessions (monthly egress cap reached).
	QuotaExceeded bool `json:"quotaExceeded,omitempty"`
}

// RateLimit is the per-app fixed-window quota per client IP (DESIGN 1.2).
type RateLimit struct {
	AuthenticatedPerSecond   int `json:"authenticatedPerSecond"`
	UnauthenticatedPerSecond int `json:"unauthenticatedPerSecond"`
}

// SessionLimit holds the Calls limits of DESIGN 1.1.
type SessionLimit struct {
	CallsPerSecond         int `json:"callsPerSecond"`
	MaxTracksPerCall       int `json:"maxTracksPerCall"`
	TrackTimeoutSeconds    int `json:"trackTimeoutSeconds"`
	ReconnectWindowSeconds int `json:"reconnectWindowSeconds"`
	ConnectWaitSeconds     int `json:"connectWaitSeconds"`
	// MaxSessions caps live sessions of the app per pod; 0 means no cap.
	MaxSessions int `json:"maxSessions,omitempty"`
}

// TURNKey is an app's TURN key: the ID in the URL path, the API token's
// hash (Bearer on the credentials API) and the HMAC secret TURN pods use to
// verify ephemeral credentials.
type TURNKey struct {
	ID          string `json:"id"`
	TokenSHA256 string `json:"tokenSHA256"`
	HMACSecret  string `json:"hmacSecret"`
}

var (
	appIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	sha256Hex    = regexp.MustCompile(`^[0-9a-f]{64}$`)

	// ErrInvalid is wrapped by every validation error.
	ErrInvalid = errors.New("invalid pod config")
)

// Default fills zero values with the documented defaults.
func (p *Pod) Default() {
	if p.Media.Exposure == "" {
		p.Media.Exposure = ExposureDirect
	}
	if p.Media.UDPPort == 0 {
		p.Media.UDPPort = DefaultUDPPort
	}
	for i := range p.Apps {
		p.Apps[i].Default()
	}
}

// Default fills zero limits with the documented defaults.
func (a *App) Default() {
	setDefault(&a.RateLimit.AuthenticatedPerSecond, DefaultAuthenticatedPerSecond)
	setDefault(&a.RateLimit.UnauthenticatedPerSecond, DefaultUnauthenticatedPerSecond)
	setDefault(&a.Sessions.CallsPerSecond, DefaultSessionCallsPerSecond)
	setDefault(&a.Sessions.MaxTracksPerCall, DefaultMaxTracksPerCall)
	setDefault(&a.Sessions.TrackTimeoutSeconds, int(DefaultTrackTimeout/time.Second))
	setDefault(&a.Sessions.ReconnectWindowSeconds, int(DefaultReconnectWindow/time.Second))
	setDefault(&a.Sessions.ConnectWaitSeconds, int(DefaultConnectWait/time.Second))
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// Validate reports the first problem found, naming the field.
func (p *Pod) Validate() error {
	switch p.Media.Exposure {
	case ExposureHostNetwork, ExposureTURNIngress, ExposureDirect:
	default:
		return fmt.Errorf("%w: media.exposure %q", ErrInvalid, p.Media.Exposure)
	}
	if p.Media.UDPPort < 1 || p.Media.UDPPort > 65535 {
		return fmt.Errorf("%w: media.udpPort %d", ErrInvalid, p.Media.UDPPort)
	}
	if f := p.Fleet; f != nil {
		if len(f.Token) < 16 {
			return fmt.Errorf("%w: fleet.token must be at least 16 characters", ErrInvalid)
		}
		for i, peer := range f.Peers {
			if peer.Ordinal < 0 || peer.Ordinal > 0xffff || peer.Address == "" {
				return fmt.Errorf("%w: fleet.peers[%d] needs an ordinal 0-65535 and an address", ErrInvalid, i)
			}
		}
	}
	seen := make(map[string]bool, len(p.Apps))
	for i, a := range p.Apps {
		if !appIDPattern.MatchString(a.ID) {
			return fmt.Errorf("%w: apps[%d].id %q is not 32 lowercase hex", ErrInvalid, i, a.ID)
		}
		if seen[a.ID] {
			return fmt.Errorf("%w: apps[%d].id %q appears twice", ErrInvalid, i, a.ID)
		}
		seen[a.ID] = true
		if !sha256Hex.MatchString(a.SecretSHA256) {
			return fmt.Errorf("%w: apps[%d].secretSHA256 is not a hex SHA-256", ErrInvalid, i)
		}
		if k := a.TURNKey; k != nil {
			if k.ID == "" || k.HMACSecret == "" || !sha256Hex.MatchString(k.TokenSHA256) {
				return fmt.Errorf("%w: apps[%d].turnKey is incomplete", ErrInvalid, i)
			}
		}
	}
	return nil
}

// Parse decodes, defaults and validates a rendered configuration.
func Parse(data []byte) (*Pod, error) {
	var p Pod
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p.Default()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pod config: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
