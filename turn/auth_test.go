package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"go.uber.org/goleak"
)

func signed(user string) Credential {
	return Credential{Username: user, Password: Password([]byte(secretA), user)}
}

// TestCredentialsRefusedUnlessValid is TURN-05: each bad credential is
// refused at Allocate; a valid one works.
func TestCredentialsRefusedUnlessValid(t *testing.T) {
	f := newFixture(t, testPod())
	now := time.Now()
	valid := issue(t, f, keyA)
	forged := valid
	forged.Password = Password([]byte("not-the-secret"), valid.Username)
	otherExpiry := valid
	otherExpiry.Username = fmt.Sprintf("%d:%s:abc", now.Add(30*time.Minute).Unix(), keyA)
	// password of a different expiry
	otherExpiry.Password = Password([]byte(secretA), fmt.Sprintf("%d:%s:abc", now.Add(time.Hour).Unix(), keyA))
	revoked := issue(t, f, keyA)
	f.rev.Revoke(revoked.Username, revoked.Expiry)

	cases := []struct {
		name string
		cred Credential
	}{
		{"expired", signed(fmt.Sprintf("%d:%s:x", now.Add(-time.Second).Unix(), keyA))},
		{"over-ttl", signed(fmt.Sprintf("%d:%s:x", now.Add(49*time.Hour).Unix(), keyA))},
		{"year-2100", signed(fmt.Sprintf("%d:%s:x", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), keyA))},
		{"forged-password", forged},
		{"hmac-of-other-expiry", otherExpiry},
		{"unknown-key", signed(fmt.Sprintf("%d:%s:x", now.Add(time.Hour).Unix(), "no-such-key"))},
		{"other-apps-secret", Credential{Username: fmt.Sprintf("%d:%s:x", now.Add(time.Hour).Unix(), keyA), Password: Password([]byte(secretB), fmt.Sprintf("%d:%s:x", now.Add(time.Hour).Unix(), keyA))}},
		{"no-expiry", signed("alice")},
		{"revoked", revoked},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := dialRaw(t, "udp", f.udpAddr, c.cred)
			if got := cl.allocate(protoUDP); got == 0 {
				t.Fatalf("Allocate with a %s credential succeeded", c.name)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		cl := dialRaw(t, "udp", f.udpAddr, valid)
		cl.mustAllocate(protoUDP)
	})
	if n := f.srv.Stats().Allocations; n != 1 {
		t.Fatalf("%d allocations live, want 1 (the valid one)", n)
	}
}

// TestRevokedCredentialLosesItsAllocation: revoking a username cuts the
// relay of its live allocations and refuses its next request.
func TestRevokedCredentialLosesItsAllocation(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	cred := issue(t, f, keyA)
	other := issue(t, f, keyA) // same key, different username: unaffected
	c := dialRaw(t, "udp", f.udpAddr, cred)
	c.mustAllocate(protoUDP)
	o := dialRaw(t, "udp", f.udpAddr, other)
	o.mustAllocate(protoUDP)
	for _, cl := range []*rawClient{c, o} {
		if got := cl.channelBind(0x4000, peerAP); got != 0 {
			t.Fatalf("ChannelBind = %d", got)
		}
	}
	c.channelData(0x4000, []byte("before"))
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := peer.ReadFrom(buf); err != nil {
		t.Fatalf("relay did not work before revocation: %v", err)
	}

	api := NewAPI(testPod(), f.rev, nil, nil)
	rec := postAPI(t, api, "/v1/turn/keys/"+keyA+"/credentials/"+cred.Username+"/revoke", tokenA, "")
	if rec.Code != 204 {
		t.Fatalf("revoke status %d", rec.Code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Stats().Allocations != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.srv.Stats().Allocations; n != 1 {
		t.Fatalf("%d allocations after revocation, want 1 (the other username's)", n)
	}
	c.channelData(0x4000, []byte("after"))
	o.channelData(0x4000, []byte("other"))
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "other" {
		t.Fatalf("peer got %q, %v; want only the unrevoked client's datagram", buf[:n], err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := peer.ReadFrom(buf); err == nil {
		t.Fatalf("revoked client still relayed %q", buf[:n])
	}
	if got := c.refresh(600); got == 0 {
		t.Fatal("Refresh with a revoked credential succeeded")
	}
}

// TestAllocationQuotaBurst is TURN-06: a concurrent burst of Allocates with
// one credential gets exactly quota successes and 486 for the rest; freed
// slots are reusable; closing the server leaks no goroutine or socket.
func TestAllocationQuotaBurst(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fdsBefore := openFDs(t)
	f := newFixture(t, testPod(), func(c *Config) { c.AllocationQuota = 3 })
	cred := issue(t, f, keyA)
	const burst = 8
	clients := make([]*rawClient, burst)
	codes := make([]int, burst)
	for i := range clients {
		network, addr := "udp", f.udpAddr
		if i%2 == 1 {
			network, addr = "tcp", f.tcpAddr
		}
		clients[i] = dialRaw(t, network, addr, cred)
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = c.allocate(protoUDP)
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	var winner *rawClient
	for i, code := range codes {
		switch code {
		case 0:
			ok++
			winner = clients[i]
		case 486:
			refused++
		default:
			t.Errorf("client %d: code %d, want 0 or 486", i, code)
		}
	}
	if ok != 3 || refused != burst-3 {
		t.Fatalf("burst of %d: %d allocated, %d refused with 486; want 3 and %d", burst, ok, refused, burst-3)
	}
	if n := f.srv.Stats().Allocations; n != 3 {
		t.Fatalf("%d live allocations, want 3", n)
	}
	// Another credential of the same app has its own quota.
	second := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	second.mustAllocate(protoUDP)
	// Free one slot: the next Allocate with the first credential succeeds.
	if got := winner.refresh(0); got != 0 {
		t.Fatalf("Refresh(0) = %d", got)
	}
	late := dialRaw(t, "udp", f.udpAddr, cred)
	late.mustAllocate(protoUDP)
	again := dialRaw(t, "udp", f.udpAddr, cred)
	if got := again.allocate(protoUDP); got != 486 {
		t.Fatalf("allocation past the quota after a slot was reused = %d, want 486", got)
	}

	for _, c := range clients {
		_ = c.conn.Close()
	}
	_ = late.conn.Close()
	_ = second.conn.Close()
	_ = again.conn.Close()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > fdsBefore && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := openFDs(t); n > fdsBefore {
		t.Errorf("%d file descriptors open after Close, %d before", n, fdsBefore)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestEgressMeteredPerAppIncludingTURNOverhead: the meter's egress for the
// app equals every byte the client received after authenticating, TURN
// framing included; the other app sees nothing.
func TestEgressMeteredPerAppIncludingTURNOverhead(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) { testEgressMetered(t, network) })
	}
}

func testEgressMetered(t *testing.T, network string) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	addr := f.udpAddr
	if network == "tcp" {
		addr = f.tcpAddr
	}
	c := dialRaw(t, network, addr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	relayAP := relayAddrOf(t, f)
	start := c.meteredFrom // bytes before the Allocate success response (the 401 is free)
	if got := c.channelBind(0x4000, peer.LocalAddr().(*net.UDPAddr).AddrPort()); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	payload := randomBytes(1200)
	for i := 0; i < 20; i++ {
		if _, err := peer.WriteToUDPAddrPort(payload, relayAP); err != nil {
			t.Fatal(err)
		}
		got, err := c.readData(3 * time.Second)
		if err != nil || len(got) != 1200 {
			t.Fatalf("relayed datagram %d: %d bytes, %v", i, len(got), err)
		}
	}
	want := uint64(c.received - start)
	// Wait for the once-a-second flush.
	deadline := time.Now().Add(5 * time.Second)
	for f.meter.Egress(appA) < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := f.meter.Egress(appA); got != want {
		t.Fatalf("app A egress %d bytes, client received %d after authenticating", got, want)
	}
	if want < 20*(1200+4) {
		t.Fatalf("client received only %d bytes", want)
	}
	if got := f.meter.Egress(appB); got != 0 {
		t.Fatalf("app B egress %d, want 0", got)
	}
	if got := f.meter.Ingress(appA); got == 0 {
		t.Fatal("app A ingress not counted")
	}
}

func relayAddrOf(t *testing.T, f *fixture) netip.AddrPort {
	t.Helper()
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	for _, st := range f.srv.allocs {
		ap, err := netip.ParseAddrPort(st.relay.advertised)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	t.Fatal("no allocation")
	return netip.AddrPort{}
}

func TestTLSListenerAllocates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	tl, err := ListenTLS("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, testPod(), func(c *Config) { c.Listeners = append(c.Listeners, tl) })
	conn, err := tls.Dial("tcp", tl.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &rawClient{t: t, conn: conn, stream: true}
	cred := issue(t, f, keyA)
	c.user, c.pass = cred.Username, cred.Password
	c.mustAllocate(protoUDP)
	if got := c.createPermission(netip.MustParseAddrPort("169.254.169.254:80")); got != 403 {
		t.Fatalf("CreatePermission(metadata) over TLS = %d, want 403", got)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"turn.example.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestConfigChangeAppliesLive: a key added to the pool works without a
// restart; a key removed from it loses its allocations within seconds.
func TestConfigChangeAppliesLive(t *testing.T) {
	pod := testPod()
	only := *pod
	only.Apps = pod.Apps[:1] // app B not configured yet
	f := newFixture(t, &only)
	kB := &Key{ID: keyB, AppID: appB, HMACSecret: []byte(secretB)}
	credB, err := Issue(kB, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := dialRaw(t, "udp", f.udpAddr, credB).allocate(protoUDP); got == 0 {
		t.Fatal("credential of an unconfigured key was accepted")
	}
	if err := f.srv.Update(pod); err != nil {
		t.Fatal(err)
	}
	cb := dialRaw(t, "udp", f.udpAddr, credB)
	cb.mustAllocate(protoUDP)
	ca := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	ca.mustAllocate(protoUDP)

	bOnly := *pod
	bOnly.Apps = pod.Apps[1:]
	if err := f.srv.Update(&bOnly); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Stats().Allocations != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.srv.Stats().Allocations; n != 1 {
		t.Fatalf("%d allocations after key A was removed, want 1 (key B's)", n)
	}
	if got := ca.refresh(600); got == 0 {
		t.Fatal("Refresh with a removed key's credential succeeded")
	}
	if got := cb.refresh(600); got != 0 {
		t.Fatalf("Refresh with key B = %d, want success", got)
	}
	bad := *pod
	bad.TURN.AllowedPeerCIDRs = []string{"not-a-cidr"}
	if err := f.srv.Update(&bad); err == nil {
		t.Fatal("a malformed allowed CIDR was accepted")
	}
	if _, ok := f.srv.Keyring().Key(keyB); !ok {
		t.Fatal("a refused configuration replaced the last good one")
	}
}

// TestDrainKeepsAllocationsAndRefusesNewOnes: a draining pod keeps relaying
// for the allocations it has and refuses new ones.
func TestDrainKeepsAllocationsAndRefusesNewOnes(t *testing.T) {
	f := newFixture(t, testPod())
	old := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	old.mustAllocate(protoUDP)
	f.srv.Drain()
	if got := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA)).allocate(protoUDP); got != 486 {
		t.Fatalf("Allocate while draining = %d, want 486", got)
	}
	if got := old.refresh(600); got != 0 {
		t.Fatalf("Refresh of an existing allocation while draining = %d, want success", got)
	}
	if n := f.srv.Stats().Allocations; n != 1 {
		t.Fatalf("%d allocations, want 1", n)
	}
}

// TestForgedNonceGets438 is TURN-08's basic case: a nonce the server did not
// issue is answered 438 Stale Nonce with a fresh one, never accepted.
func TestForgedNonceGets438(t *testing.T) {
	f := newFixture(t, testPod())
	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	c.nonce = "forged-nonce-0123456789"
	res, err := c.roundTrip(c.authed(stun.MethodRefresh, rawAttr(attrLife, []byte{0, 0, 2, 88}))...)
	if err != nil {
		t.Fatal(err)
	}
	if got := code(res); got != 438 {
		t.Fatalf("Refresh with a forged nonce = %d, want 438", got)
	}
	var fresh stun.Nonce
	if err := fresh.GetFrom(res); err != nil || fresh.String() == c.nonce {
		t.Fatalf("438 without a fresh nonce: %v", err)
	}
	c.nonce = fresh.String()
	if got := c.refresh(600); got != 0 {
		t.Fatalf("Refresh with the fresh nonce = %d, want success", got)
	}
}
