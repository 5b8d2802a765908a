package turn

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Test fixture: one pool with two apps, each with a TURN key.
const (
	appA     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	appB     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	keyA     = "key-a"
	keyB     = "key-b"
	tokenA   = "token-a-0123456789"
	tokenB   = "token-b-0123456789"
	secretA  = "hmac-secret-a"
	secretB  = "hmac-secret-b"
	testRlm  = "switchboard"
	attrReqT = stun.AttrType(0x0019) // REQUESTED-TRANSPORT
	attrChan = stun.AttrType(0x000C) // CHANNEL-NUMBER
	attrLife = stun.AttrType(0x000D) // LIFETIME
	attrData = stun.AttrType(0x0013) // DATA
	protoUDP = 17
	protoTCP = 6
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func testPod(allow ...string) *config.Pod {
	pod := &config.Pod{
		TURN: config.TURN{Enabled: true, Realm: testRlm, URLs: []string{
			"turn:turn.example.test:3478?transport=udp",
			"turn:turn.example.test:3478?transport=tcp",
			"turns:turn.example.test:5349?transport=tcp",
		}, AllowedPeerCIDRs: allow},
		Apps: []config.App{
			{ID: appA, Name: "default/a", SecretSHA256: sha("app-a"), TURNKey: &config.TURNKey{ID: keyA, TokenSHA256: sha(tokenA), HMACSecret: secretA}},
			{ID: appB, Name: "default/b", SecretSHA256: sha("app-b"), TURNKey: &config.TURNKey{ID: keyB, TokenSHA256: sha(tokenB), HMACSecret: secretB}},
		},
	}
	pod.Default()
	return pod
}

type fixture struct {
	srv     *Server
	udpAddr string
	tcpAddr string
	meter   *Counters
	rev     *MemoryRevocations
}

type fixtureOpt func(*Config)

func newFixture(t *testing.T, pod *config.Pod, opts ...fixtureOpt) *fixture {
	t.Helper()
	pc, err := ListenUDP("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{udpAddr: pc.LocalAddr().String(), tcpAddr: tl.Addr().String(), meter: NewCounters(), rev: NewMemoryRevocations(nil)}
	cfg := Config{
		PacketConns: []net.PacketConn{pc},
		Listeners:   []net.Listener{tl},
		RelayIP:     netip.MustParseAddr("127.0.0.1"),
		Pod:         pod,
		Meter:       f.meter,
		Revocations: f.rev,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	f.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func issue(t *testing.T, f *fixture, keyID string) Credential {
	t.Helper()
	k, ok := f.srv.Keyring().Key(keyID)
	if !ok {
		t.Fatalf("no key %s", keyID)
	}
	c, err := Issue(k, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawClient speaks TURN by hand so tests can see exact error codes and every
// byte the server sends.
type rawClient struct {
	t      *testing.T
	conn   net.Conn
	stream bool
	user   string
	pass   string
	realm  string
	nonce  string
	mi     stun.MessageIntegrity
	// received counts every byte read from the server; meteredFrom is its
	// value before the authenticated Allocate response.
	received    int
	meteredFrom int
	// data holds ChannelData and Data indications read while waiting for
	// responses.
	data [][]byte
}

func dialRaw(t *testing.T, network, addr string, cred Credential) *rawClient {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, stream: network != "udp", user: cred.Username, pass: cred.Password}
}

func (c *rawClient) readFrame(deadline time.Time) ([]byte, error) {
	_ = c.conn.SetReadDeadline(deadline)
	if !c.stream {
		buf := make([]byte, 2048)
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		c.received += n
		return buf[:n], nil
	}
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		return nil, err
	}
	size := 20 + int(binary.BigEndian.Uint16(hdr[2:]))
	if hdr[0]&0xC0 == 0x40 {
		size = (4 + int(binary.BigEndian.Uint16(hdr[2:])) + 3) &^ 3
	}
	out := make([]byte, size)
	copy(out, hdr)
	if _, err := io.ReadFull(c.conn, out[4:]); err != nil {
		return nil, err
	}
	c.received += size
	return out, nil
}

// roundTrip sends a request and returns the response with its transaction ID.
func (c *rawClient) roundTrip(setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, err := c.readFrame(deadline)
		if err != nil {
			return nil, fmt.Errorf("waiting for %s response: %w", req.Type, err)
		}
		if raw[0]&0xC0 == 0x40 {
			c.data = append(c.data, raw)
			continue
		}
		m := &stun.Message{Raw: raw}
		if err := m.Decode(); err != nil {
			return nil, err
		}
		if m.Contains(stun.AttrSoftware) {
			c.t.Errorf("server response %s carries a SOFTWARE attribute", m.Type)
		}
		if m.TransactionID != req.TransactionID {
			c.data = append(c.data, raw)
			continue
		}
		return m, nil
	}
}

// code is 0 for a success response, else the STUN error code.
func code(m *stun.Message) int {
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return -1 // an error response without ERROR-CODE
	}
	return int(ec.Code)
}

func rawAttr(t stun.AttrType, v []byte) stun.Setter {
	return stun.RawAttribute{Type: t, Value: v}
}

func peerAttr(ap netip.AddrPort) stun.Setter {
	return &xorPeer{stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}}
}

type xorPeer struct{ stun.XORMappedAddress }

func (p *xorPeer) AddTo(m *stun.Message) error { return p.AddToAs(m, stun.AttrXORPeerAddress) }

func (c *rawClient) authed(method stun.Method, setters ...stun.Setter) []stun.Setter {
	out := []stun.Setter{stun.NewType(method, stun.ClassRequest)}
	out = append(out, setters...)
	return append(out, stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.mi, stun.Fingerprint)
}

// allocate runs the 401 dance and returns the error code (0 on success).
func (c *rawClient) allocate(proto byte) int {
	c.t.Helper()
	rt := rawAttr(attrReqT, []byte{proto, 0, 0, 0})
	res, err := c.roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), rt, stun.Fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	if code(res) != 401 {
		c.t.Fatalf("unauthenticated Allocate: code %d, want 401", code(res))
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
		c.t.Fatal("401 without realm/nonce")
	}
	c.realm, c.nonce = realm.String(), nonce.String()
	if c.realm != testRlm {
		c.t.Errorf("realm %q, want %q", c.realm, testRlm)
	}
	c.mi = stun.NewLongTermIntegrity(c.user, c.realm, c.pass)
	c.meteredFrom = c.received
	res, err = c.roundTrip(c.authed(stun.MethodAllocate, rt)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return code(res)
}

func (c *rawClient) mustAllocate(proto byte) {
	c.t.Helper()
	if got := c.allocate(proto); got != 0 {
		c.t.Fatalf("Allocate: code %d, want success", got)
	}
}

// deallocateOnCleanup deallocates before the socket closes (cleanups run
// last-in first-out): a later client of the same test may get this UDP
// source port from the kernel and would find the allocation still there
// (437). Best effort: the test may have been refused already.
func (c *rawClient) deallocateOnCleanup() {
	c.t.Cleanup(func() {
		v := make([]byte, 4)
		_, _ = c.roundTrip(c.authed(stun.MethodRefresh, rawAttr(attrLife, v))...)
	})
}

func (c *rawClient) request(method stun.Method, setters ...stun.Setter) int {
	c.t.Helper()
	res, err := c.roundTrip(c.authed(method, setters...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return code(res)
}

func (c *rawClient) createPermission(peers ...netip.AddrPort) int {
	var s []stun.Setter
	for _, p := range peers {
		s = append(s, peerAttr(p))
	}
	return c.request(stun.MethodCreatePermission, s...)
}

func (c *rawClient) channelBind(ch uint16, peer netip.AddrPort) int {
	return c.request(stun.MethodChannelBind, rawAttr(attrChan, []byte{byte(ch >> 8), byte(ch), 0, 0}), peerAttr(peer))
}

func (c *rawClient) connect(peer netip.AddrPort) int {
	return c.request(stun.MethodConnect, peerAttr(peer))
}

func (c *rawClient) refresh(lifetime uint32) int {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, lifetime)
	return c.request(stun.MethodRefresh, rawAttr(attrLife, v))
}

func (c *rawClient) sendIndication(peer netip.AddrPort, data []byte) {
	c.t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), peerAttr(peer), rawAttr(attrData, data), stun.Fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) channelData(ch uint16, data []byte) {
	c.t.Helper()
	size := 4 + len(data)
	if c.stream {
		size = (size + 3) &^ 3
	}
	b := make([]byte, size)
	binary.BigEndian.PutUint16(b[0:], ch)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[4:], data)
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// readData waits for relayed data from the server (ChannelData payload).
func (c *rawClient) readData(timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		if len(c.data) > 0 {
			raw := c.data[0]
			c.data = c.data[1:]
			if raw[0]&0xC0 == 0x40 {
				n := binary.BigEndian.Uint16(raw[2:])
				return raw[4 : 4+n], nil
			}
			m := &stun.Message{Raw: raw}
			if m.Decode() == nil && m.Type.Method == stun.MethodData {
				v, err := m.Get(attrData)
				return v, err
			}
			continue
		}
		raw, err := c.readFrame(deadline)
		if err != nil {
			return nil, err
		}
		c.data = append(c.data, raw)
	}
}

// canary is a UDP socket and a TCP listener on one address that must stay
// silent.
type canary struct {
	udp  *net.UDPConn
	tcp  net.Listener
	got  chan string
	addr netip.AddrPort
}

func newCanary(t *testing.T, ip string) *canary {
	t.Helper()
	u, l, err := ListenShared(ip, 0, 0)
	if err != nil {
		t.Fatalf("canary on %s: %v", ip, err)
	}
	port := u.LocalAddr().(*net.UDPAddr).Port
	c := &canary{udp: u, tcp: l, got: make(chan string, 16), addr: netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			c.got <- fmt.Sprintf("udp %d bytes from %s", n, from)
		}
	}()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.got <- "tcp connection from " + conn.RemoteAddr().String()
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = u.Close(); _ = l.Close() })
	return c
}

func (c *canary) expectSilence(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case what := <-c.got:
		t.Fatalf("canary %s received %s", c.addr, what)
	case <-time.After(wait):
	}
}

func (c *canary) expect(t *testing.T, wait time.Duration) string {
	t.Helper()
	select {
	case what := <-c.got:
		return what
	case <-time.After(wait):
		t.Fatalf("canary %s received nothing in %s", c.addr, wait)
		return ""
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
