package sfu_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
	"github.com/switchboard-rtc/switchboard/turn"
)

const (
	turnKeyA   = "1111222233334444aaaabbbbccccdddd"
	turnTokenA = "turn-token-of-app-a-0123456789abcdef"
	turnHMAC   = "turn-hmac-secret-of-app-a"
)

// turnRelayIP is where the test TURN server binds its relay sockets: another
// loopback address than the clients' 127.0.0.1, so the SFU can tell relayed
// clients from direct ones by IP, as it does in a pool.
var turnRelayIP = netip.MustParseAddr("127.0.0.2")

// turnEnv is an SFU and a TURN server on loopback sharing one revocation set,
// as `switchboard dev` runs them.
type turnEnv struct {
	*env
	turn     *turn.Server
	turnAddr string

	mu      sync.Mutex
	remotes map[netip.AddrPort]bool // what Hooks.RemoteAddr saw, by address
}

func newTURNEnv(t *testing.T) *turnEnv {
	t.Helper()
	pc, tl, err := turn.ListenShared("127.0.0.1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	te := &turnEnv{turnAddr: pc.LocalAddr().String(), remotes: map[netip.AddrPort]bool{}}
	cfg := testConfig(func(a *config.App) {
		a.TURNKey = &config.TURNKey{ID: turnKeyA, TokenSHA256: hashHex(turnTokenA), HMACSecret: turnHMAC}
	})
	cfg.TURN = config.TURN{Enabled: true, URLs: []string{"turn:" + te.turnAddr + "?transport=udp", "turn:" + te.turnAddr + "?transport=tcp"},
		RelayIPs: []string{turnRelayIP.String()}}

	// The TURN pod side: TURNIngress, so the relay reaches only the SFU's
	// media endpoint (set below, once the SFU listens).
	turnPod := *cfg
	turnPod.Media.Exposure = config.ExposureTURNIngress
	te.turn, err = turn.New(turn.Config{PacketConns: []net.PacketConn{pc}, Listeners: []net.Listener{tl}, RelayIP: turnRelayIP,
		Pod: &turnPod, Logger: testLogger()})
	if err != nil {
		_ = pc.Close()
		_ = tl.Close()
		t.Fatalf("turn.New: %v", err)
	}
	t.Cleanup(func() { _ = te.turn.Close() })

	e := &env{t: t}
	srv, err := sfu.New(sfu.Options{Config: cfg, UDPAddr: "127.0.0.1:0", AdvertiseIPs: []string{"127.0.0.1"},
		Logger: testLogger(), TURNRevocations: te.turn.Revocations(),
		Hooks: sfu.Hooks{RemoteAddr: func(_ string, a netip.AddrPort, active bool) {
			te.mu.Lock()
			defer te.mu.Unlock()
			te.remotes[a] = active
		}}})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	e.srv = srv
	e.http = newHTTPServer(t, srv)
	te.env = e
	media, err := netip.ParseAddrPort(srv.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := te.turn.SetSFUEndpoints([]netip.AddrPort{media}); err != nil {
		t.Fatal(err)
	}
	return te
}

// generateICEServers calls the credentials API on the SFU's handler.
func (te *turnEnv) generateICEServers() []webrtc.ICEServer {
	te.t.Helper()
	var out struct {
		ICEServers []webrtc.ICEServer `json:"iceServers"`
	}
	st, raw := te.call("POST", "/v1/turn/keys/"+turnKeyA+"/credentials/generate-ice-servers", turnTokenA, `{"ttl": 3600}`, &out)
	if st != http.StatusCreated {
		te.t.Fatalf("generate-ice-servers: %d %s", st, raw)
	}
	return out.ICEServers
}

func turnCredential(t *testing.T, servers []webrtc.ICEServer) (username, password string) {
	t.Helper()
	for _, s := range servers {
		if u, ok := s.Username, s.Credential != nil; u != "" && ok {
			return u, s.Credential.(string)
		}
	}
	t.Fatalf("no ICE server with a credential in %+v", servers)
	return "", ""
}

// allocate tries a TURN allocation with the pion client, as a browser would.
func allocate(t *testing.T, server, username, password string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: username, Password: password, Realm: turn.DefaultRealm, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		return err
	}
	return relay.Close()
}

// A client that may only use relay candidates gets its TURN credentials from
// the SFU's credentials API, publishes through our TURN server, and a direct
// client and a relay-only client over TURN/TCP pull the tracks: every RTP
// payload arrives intact. The SFU does not report the relayed transports to
// the metering hook (the TURN server meters them), only the direct one.
// Revoking the publisher's username (204) ends its relayed media and refuses
// new allocations with it at once.
func TestRelayOnlyPublisherThroughTURNIsPulledDirectlyAndOverTURNTCP(t *testing.T) {
	te := newTURNEnv(t)
	servers := te.generateICEServers()
	username, password := turnCredential(t, servers)
	if err := allocate(t, te.turnAddr, username, password); err != nil {
		t.Fatalf("the TURN server refused a credential of the API: %v", err)
	}

	_, pubSID, pair := publishThroughTURN(t, te, servers)
	relayed := netip.AddrPortFrom(turnRelayIP, pair.Local.Port)

	sub, _ := pull(t, te.env, appA, secretA, pubSID, "relay")
	sub.waitMedia("0", "relay-audio", 20)
	sub.waitMedia("1", "relay-video", 10)
	for _, mid := range []string{"0", "1"} {
		if bad := sub.stats(mid).bad.Load(); bad != 0 {
			t.Fatalf("mid %s: %d packets arrived with a damaged payload", mid, bad)
		}
	}

	// A second subscriber pulls through TURN over TCP, with its own credential.
	tcpUser, tcpPass := turnCredential(t, te.generateICEServers())
	tcpSub := pullThroughTURN(t, te, pubSID, "relay", []webrtc.ICEServer{{
		URLs: []string{"turn:" + te.turnAddr + "?transport=tcp"}, Username: tcpUser, Credential: tcpPass}})
	tcpSub.waitMedia("0", "relay-audio", 20)
	tcpSub.waitMedia("1", "relay-video", 10)
	for _, mid := range []string{"0", "1"} {
		if bad := tcpSub.stats(mid).bad.Load(); bad != 0 {
			t.Fatalf("TCP relay, mid %s: %d packets arrived with a damaged payload", mid, bad)
		}
	}

	// Count once: the direct subscriber's address is reported, the relayed
	// clients' never are.
	subPair, err := sub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || subPair == nil {
		t.Fatalf("subscriber pair: %v", err)
	}
	direct := netip.AddrPortFrom(netip.MustParseAddr(subPair.Local.Address), subPair.Local.Port)
	waitFor(t, 5*time.Second, "the direct subscriber reported to the metering hook", func() bool {
		te.mu.Lock()
		defer te.mu.Unlock()
		return te.remotes[direct]
	})
	te.mu.Lock()
	for a := range te.remotes {
		if a.Addr() == turnRelayIP {
			t.Errorf("relayed transport %v reported to the metering hook (want only %v; the TURN server meters %v and the TCP subscriber)", a, direct, relayed)
		}
	}
	te.mu.Unlock()

	// Revoke: 204, the relayed media stops, and the username no longer
	// allocates; a fresh credential still does.
	st, raw := te.call("POST", "/v1/turn/keys/"+turnKeyA+"/credentials/"+url.PathEscape(username)+"/revoke", turnTokenA, nil, nil)
	if st != http.StatusNoContent || len(raw) != 0 {
		t.Fatalf("revoke: %d %q, want 204 with no body", st, raw)
	}
	if err := allocate(t, te.turnAddr, username, password); err == nil {
		t.Fatal("a revoked username still allocates")
	}
	waitFor(t, 10*time.Second, "relayed media to stop after revoke", func() bool {
		before := sub.count("0", "relay-audio")
		time.Sleep(time.Second)
		return sub.count("0", "relay-audio") == before
	})
	fresh, freshPass := turnCredential(t, te.generateICEServers())
	if err := allocate(t, te.turnAddr, fresh, freshPass); err != nil {
		t.Fatalf("a fresh credential is refused after another was revoked: %v", err)
	}
}

// The credentials API answers on the SFU's handler under both the /v1 path
// and the unversioned alias; the legacy generate returns one object; TURN
// URLs come from the config and follow SetConfig.
func TestTURNCredentialsAPIServedWithSessionAPI(t *testing.T) {
	te := newTURNEnv(t)
	servers := te.generateICEServers()
	if len(servers) != 2 || servers[0].URLs[0] != "stun:"+te.turnAddr || len(servers[1].URLs) != 2 ||
		servers[1].URLs[0] != "turn:"+te.turnAddr+"?transport=udp" || servers[1].URLs[1] != "turn:"+te.turnAddr+"?transport=tcp" {
		t.Fatalf("iceServers = %+v", servers)
	}
	var legacy struct {
		ICEServers struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	st, raw := te.call("POST", "/turn/keys/"+turnKeyA+"/credentials/generate", turnTokenA, nil, &legacy)
	if st != http.StatusOK || legacy.ICEServers.Username == "" || len(legacy.ICEServers.URLs) != 3 {
		t.Fatalf("legacy generate on the alias: %d %s", st, raw)
	}
	if err := allocate(t, te.turnAddr, legacy.ICEServers.Username, legacy.ICEServers.Credential); err != nil {
		t.Fatalf("legacy credential refused by the TURN server: %v", err)
	}
	if st, raw := te.call("POST", "/v1/turn/keys/"+turnKeyA+"/credentials/generate-ice-servers", secretA, nil, nil); st != http.StatusUnauthorized ||
		!jsonHasCode(raw, "unauthorized") {
		t.Fatalf("app secret as TURN token: %d %s, want 401 unauthorized", st, raw)
	}

	cfg := *te.srv.Config()
	cfg.TURN.URLs = []string{"turn:turn.example.test:3478?transport=tcp"}
	if err := te.srv.SetConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	servers = te.generateICEServers()
	if len(servers) != 1 || servers[0].URLs[0] != "turn:turn.example.test:3478?transport=tcp" {
		t.Fatalf("after SetConfig: %+v", servers)
	}
	cfg.TURN.RelayIPs = []string{"not-an-ip"}
	if err := te.srv.SetConfig(&cfg); err == nil {
		t.Fatal("a malformed turn.relayIPs entry was accepted")
	}
}

func newHTTPServer(t *testing.T, srv *sfu.Server) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return hs
}

func jsonHasCode(raw []byte, code string) bool {
	var body struct {
		ErrorCode string `json:"errorCode"`
	}
	return json.Unmarshal(raw, &body) == nil && body.ErrorCode == code
}

// pullThroughTURN subscribes a relay-only client to the publisher's tracks
// (SFU offer, client answer), as pull does for a direct one.
func pullThroughTURN(t *testing.T, te *turnEnv, pubSID, prefix string, ice []webrtc.ICEServer) *peer {
	t.Helper()
	sub := newPeerConfig(t, nil, webrtc.Configuration{ICEServers: ice, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
	sid := te.newSession(appA, secretA)
	resp := te.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{
		{Location: "remote", SessionID: pubSID, TrackName: prefix + "-audio"},
		{Location: "remote", SessionID: pubSID, TrackName: prefix + "-video"},
	}})
	if !resp.RequiresImmediateRenegotiation || resp.SessionDescription == nil {
		t.Fatalf("pull must return an SFU offer: %+v", resp)
	}
	answer := sub.answer(resp.SessionDescription)
	if st, raw := te.call("PUT", apiPath(appA, sid, "/renegotiate"), secretA, map[string]any{"sessionDescription": answer}, nil); st != http.StatusOK {
		t.Fatalf("renegotiate: %d %s", st, raw)
	}
	sub.waitConnected()
	pair, err := sub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Local.Address != turnRelayIP.String() {
		t.Fatalf("subscriber through TURN connected over %+v (%v), want a relay candidate on %s", pair, err, turnRelayIP)
	}
	return sub
}

// publishThroughTURN connects a relay-only publisher of audio ("relay-audio",
// mid 0) and video ("relay-video", mid 1) to the SFU through the TURN
// server and checks it really connected over a relay candidate on the TURN
// relay address.
func publishThroughTURN(t *testing.T, te *turnEnv, servers []webrtc.ICEServer) (*peer, string, *webrtc.ICECandidatePair) {
	t.Helper()
	pub := newPeerConfig(t, nil, webrtc.Configuration{ICEServers: servers, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
	pub.addTrack(webrtc.RTPCodecTypeAudio, "relay-audio", webrtc.RTPTransceiverDirectionSendonly)
	pub.addTrack(webrtc.RTPCodecTypeVideo, "relay-video", webrtc.RTPTransceiverDirectionSendonly)
	pubSID := te.newSession(appA, secretA)
	resp := te.tracksNew(appA, secretA, pubSID, session.TracksRequest{
		SessionDescription: pub.offer(),
		Tracks: []session.TrackObject{
			{Location: "local", Mid: "0", TrackName: "relay-audio"},
			{Location: "local", Mid: "1", TrackName: "relay-video"},
		},
	})
	for _, tr := range resp.Tracks {
		if tr.ErrorCode != "" {
			t.Fatalf("push through TURN: %+v", tr)
		}
	}
	pub.setAnswer(resp.SessionDescription)
	pub.waitConnected()
	pair, err := pub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("publisher pair: %v", err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Local.Address != turnRelayIP.String() {
		t.Fatalf("publisher connected over %s %s, want a relay candidate on %s", pair.Local.Typ, pair.Local.Address, turnRelayIP)
	}
	return pub, pubSID, pair
}
