package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// PoolApp is one CallsApp of a pool with its credentials.
type PoolApp struct {
	App         *v1alpha1.CallsApp
	Credentials AppCredentials
}

// PodConfig renders the configuration every SFU and TURN pod of the pool
// reads. Apps without an app ID or secret are left out (their credentials
// are not generated yet). Apps are sorted by ID and Version is a hash of the
// rest, so the same inputs always give byte-identical output. Of two apps
// with the same ID only the first by name is rendered.
func PodConfig(pool *v1alpha1.SFUPool, apps []PoolApp) config.Pod {
	p := pool.DeepCopy()
	p.Default()
	s := p.Spec
	out := config.Pod{
		Pool: namespacedName(&p.ObjectMeta),
		Media: config.Media{
			Exposure:            config.Exposure(s.Media.Exposure),
			UDPPort:             int(s.Media.UDPPort),
			DrainTimeoutSeconds: int(s.DrainTimeout.Duration / time.Second),
		},
		TURN: config.TURN{
			Enabled: s.TURNEnabled(),
		},
		Apps:           []config.App{},
		TrustedProxies: s.TrustedProxies,
	}
	if out.TURN.Enabled {
		out.TURN.Realm = s.TURN.Realm
		out.TURN.URLs = TURNURLs(p)
		out.TURN.AllowedPeerCIDRs = s.TURN.AllowedPeerCIDRs
	}
	for _, a := range apps {
		if a.Credentials.AppID == "" || a.Credentials.AppSecret == "" {
			continue
		}
		out.Apps = append(out.Apps, App(a.App, a.Credentials))
	}
	sort.SliceStable(out.Apps, func(i, j int) bool {
		if out.Apps[i].ID != out.Apps[j].ID {
			return out.Apps[i].ID < out.Apps[j].ID
		}
		return out.Apps[i].Name < out.Apps[j].Name
	})
	// Two apps with one ID (credentials copied by hand) would make pods
	// reject the whole configuration; the first by name keeps it.
	out.Apps = slices.CompactFunc(out.Apps, func(a, b config.App) bool { return a.ID == b.ID })
	out.Version = configVersion(out)
	return out
}

// PodConfigJSON is the bytes stored in the <pool>-config Secret under
// config.FileName: compact JSON, because a Secret holds at most 1 MiB and a
// pool may have a thousand apps.
func PodConfigJSON(p config.Pod) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode pod config of %s: %w", p.Pool, err)
	}
	return append(b, '\n'), nil
}

func configVersion(p config.Pod) string {
	p.Version = ""
	return hashJSON(p)
}

// hashJSON is the first 16 hex characters of the SHA-256 of v's JSON.
func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data is hashed here; a failure is a programming error.
		panic(fmt.Sprintf("render: hash %T: %v", v, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// TURNURLs are the turn: and turns: URLs clients get for the pool, one per
// listener, on spec.turn.externalHost or the TURN Service's in-cluster name.
// Nil when TURN is off.
func TURNURLs(pool *v1alpha1.SFUPool) []string {
	p := pool.DeepCopy()
	p.Default()
	if !p.Spec.TURNEnabled() {
		return nil
	}
	host := p.Spec.TURN.ExternalHost
	if host == "" {
		host = TURNServiceName(p) + "." + namespace(p) + ".svc"
	}
	var urls []string
	for _, l := range p.Spec.TURN.Listeners {
		hp := net.JoinHostPort(host, strconv.Itoa(int(servicePort(l))))
		switch l.Protocol {
		case v1alpha1.TURNProtocolUDP:
			urls = append(urls, "turn:"+hp+"?transport=udp")
		case v1alpha1.TURNProtocolTCP:
			urls = append(urls, "turn:"+hp+"?transport=tcp")
		case v1alpha1.TURNProtocolTLS:
			urls = append(urls, "turns:"+hp+"?transport=tcp")
		}
	}
	return urls
}

// Endpoint is the session API base URL of the pool: spec.api.url or the API
// Service's in-cluster URL.
func Endpoint(pool *v1alpha1.SFUPool) string {
	if pool.Spec.API.URL != "" {
		return pool.Spec.API.URL
	}
	return "http://" + APIServiceName(pool) + "." + namespace(pool) + ".svc"
}

// AppEndpoint is an app's base URL for Calls clients: <pool endpoint>/v1/apps/<appID>.
func AppEndpoint(pool *v1alpha1.SFUPool, appID string) string {
	e := Endpoint(pool)
	for len(e) > 0 && e[len(e)-1] == '/' {
		e = e[:len(e)-1]
	}
	return e + "/v1/apps/" + appID
}

func servicePort(l v1alpha1.TURNListener) int32 {
	if l.ServicePort != 0 {
		return l.ServicePort
	}
	return l.Port
}

func namespace(p *v1alpha1.SFUPool) string {
	if p.Namespace == "" {
		return "default"
	}
	return p.Namespace
}

// SetTURNRelayIPs puts the pool's TURN relay addresses (the TURN pods'
// IPs, which they advertise with --public-ip) into turn.relayIPs, so SFU
// pods do not meter traffic the TURN pods already meter (counted once).
// The list is sorted and deduplicated and invalid or empty entries are
// dropped, so the same set of pods always renders the same bytes; Version
// is recomputed. Nothing is set when TURN is off.
func SetTURNRelayIPs(p *config.Pod, ips []string) {
	if !p.TURN.Enabled {
		return
	}
	var out []string
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		out = append(out, ip.Unmap().String())
	}
	slices.Sort(out)
	p.TURN.RelayIPs = slices.Compact(out)
	p.Version = configVersion(*p)
}
