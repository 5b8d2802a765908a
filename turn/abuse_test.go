package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// transports the abuse matrix runs over: the client reaches the server over
// UDP or TCP, and asks for a UDP or a TCP (RFC 6062) allocation.
var matrixTransports = []struct {
	name    string
	network string
	proto   byte
}{
	{"udp-client/udp-allocation", "udp", protoUDP},
	{"tcp-client/udp-allocation", "tcp", protoUDP},
	{"tcp-client/tcp-allocation", "tcp", protoTCP},
}

func ipv6LoopbackAvailable() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestRelayRefusesEveryDeniedAddressClass is TURN-01 and TURN-03: for each
// denied address class, over UDP and TCP transports and UDP and TCP
// allocations, CreatePermission, ChannelBind and Connect get 403, and
// nothing reaches a canary.
//
// Classes that resolve to this host (loopback, 0.0.0.0, the IPv4-in-IPv6
// encodings of 127.0.0.1) get a canary listening on the loopback address the
// encoding names, and the test also pushes data at them with Send
// indications and ChannelData: the canary must stay silent. For classes no
// test can bind here (private, metadata, multicast, ...), sending anything
// there would put traffic on a network we must not touch, so the test asserts
// the 403s and that the relay sockets sent no datagram at all (the server
// counts every datagram a relay socket writes).
func TestRelayRefusesEveryDeniedAddressClass(t *testing.T) {
	f := newFixture(t, testPod())
	cLoop := newCanary(t, "127.0.0.1")
	c123 := newCanary(t, "127.1.2.3")
	port := cLoop.addr.Port()
	var c6 *canary
	if ipv6LoopbackAvailable() {
		c6 = newCanary(t, "::1")
	}

	type target struct {
		peer   string
		canary *canary
	}
	ap := func(ip string, p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), p) }
	targets := []target{
		{"127.0.0.1", cLoop},
		{"127.1.2.3", c123},
		{"0.0.0.0", cLoop},
		{"::ffff:127.0.0.1", cLoop},
		{"::127.0.0.1", cLoop},
		{"64:ff9b::7f00:1", cLoop},
		{"2002:7f00:1::", cLoop},
		{"::1", c6},
		{"::", nil},
		{"0.0.0.1", nil},
		{"169.254.169.254", nil},
		{"::ffff:169.254.169.254", nil},
		{"fd00:ec2::254", nil},
		{"100.100.100.200", nil},
		{"100.64.0.1", nil},
		{"10.0.0.1", nil},
		{"10.96.0.10", nil}, // kube-dns ClusterIP, port 53 below
		{"172.16.0.1", nil},
		{"192.168.0.1", nil},
		{"198.18.0.1", nil},
		{"224.0.0.1", nil},
		{"240.0.0.1", nil},
		{"255.255.255.255", nil},
		{"fe80::1", nil},
		{"fc00::1", nil},
		{"192.0.2.1", nil},
		{"ff02::1", nil},
	}

	for _, tr := range matrixTransports {
		t.Run(tr.name, func(t *testing.T) {
			addr := f.udpAddr
			if tr.network == "tcp" {
				addr = f.tcpAddr
			}
			for _, tg := range targets {
				t.Run(tg.peer, func(t *testing.T) {
					before := f.srv.Stats().RelayedPackets
					c := dialRaw(t, tr.network, addr, issue(t, f, keyA))
					c.mustAllocate(tr.proto)
					c.deallocateOnCleanup()
					p := port
					if tg.peer == "10.96.0.10" {
						p = 53
					}
					if tg.canary != nil {
						p = tg.canary.addr.Port()
					}
					peer := ap(tg.peer, p)
					if got := c.createPermission(peer); got != 403 {
						t.Errorf("CreatePermission(%s) = %d, want 403", peer, got)
					}
					if got := c.channelBind(0x4000, peer); got != 403 {
						t.Errorf("ChannelBind(%s) = %d, want 403", peer, got)
					}
					if tr.proto == protoTCP {
						if got := c.connect(peer); got != 403 {
							t.Errorf("Connect(%s) = %d, want 403", peer, got)
						}
					}
					if tg.canary != nil {
						c.sendIndication(peer, []byte("via send indication"))
						c.channelData(0x4000, []byte("via channel data"))
						tg.canary.expectSilence(t, 300*time.Millisecond)
					}
					if after := f.srv.Stats().RelayedPackets; after != before {
						t.Errorf("relay sockets sent %d datagrams toward a denied peer", after-before)
					}
				})
			}
		})
	}
}

// TestCanaryReceivesWhenLoopbackIsAllowed is the positive control of the
// matrix: with 127.0.0.0/8 explicitly allowed the same steps reach the
// canary, so the silence above is the policy's doing.
func TestCanaryReceivesWhenLoopbackIsAllowed(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	cv := newCanary(t, "127.0.0.1")
	for _, tr := range matrixTransports[:2] {
		t.Run(tr.name, func(t *testing.T) {
			addr := f.udpAddr
			if tr.network == "tcp" {
				addr = f.tcpAddr
			}
			c := dialRaw(t, tr.network, addr, issue(t, f, keyA))
			c.mustAllocate(tr.proto)
			if got := c.createPermission(cv.addr); got != 0 {
				t.Fatalf("CreatePermission = %d, want success", got)
			}
			c.sendIndication(cv.addr, []byte("hello"))
			if got := cv.expect(t, 3*time.Second); got == "" {
				t.Fatal("nothing")
			}
			if got := c.channelBind(0x4001, cv.addr); got != 0 {
				t.Fatalf("ChannelBind = %d, want success", got)
			}
			c.channelData(0x4001, []byte("hello again"))
			cv.expect(t, 3*time.Second)
		})
	}
}

// TestTCPAllocationsNeverOpenTCPConnections pins what pion/turn v4 does
// with RFC 6062: a TCP allocation gets a UDP relay and Connect is not
// implemented. An allowed peer gets 447 (not a hang), a TCP canary on an
// allowed address sees no connection, and the same 403 policy applies.
func TestTCPAllocationsNeverOpenTCPConnections(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	cv := newCanary(t, "127.0.0.1")
	c := dialRaw(t, "tcp", f.tcpAddr, issue(t, f, keyA))
	c.mustAllocate(protoTCP)
	if got := c.connect(cv.addr); got != 447 {
		t.Fatalf("Connect to an allowed peer = %d, want 447", got)
	}
	if got := c.connect(netip.MustParseAddrPort("10.0.0.1:80")); got != 403 {
		t.Fatalf("Connect to a private peer = %d, want 403", got)
	}
	cv.expectSilence(t, 300*time.Millisecond)
}

// TestIngressModeReachesOnlySFUMediaPorts is TURN-02: in TURNIngress mode
// the relay reaches the SFU media port and nothing else on the SFU pod.
func TestIngressModeReachesOnlySFUMediaPorts(t *testing.T) {
	sfu := newCanary(t, "127.0.0.1") // the SFU's media port
	api := newCanary(t, "127.0.0.1") // the same pod's API/metrics port
	pod := testPod()
	pod.Media.Exposure = "TURNIngress"
	f := newFixture(t, pod, func(c *Config) { c.SFUEndpoints = []netip.AddrPort{sfu.addr} })

	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	if got := c.createPermission(netip.MustParseAddrPort("8.8.8.8:3478")); got != 403 {
		t.Errorf("CreatePermission(public IP) in ingress mode = %d, want 403", got)
	}
	if got := c.createPermission(sfu.addr); got != 0 {
		t.Fatalf("CreatePermission(SFU) = %d, want success", got)
	}
	if got := c.channelBind(0x4000, api.addr); got != 403 {
		t.Errorf("ChannelBind(SFU pod, non-media port) = %d, want 403", got)
	}
	c.sendIndication(api.addr, []byte("to the API port"))
	api.expectSilence(t, 300*time.Millisecond)

	if got := c.channelBind(0x4001, sfu.addr); got != 0 {
		t.Fatalf("ChannelBind(SFU media port) = %d, want success", got)
	}
	c.channelData(0x4001, []byte("media"))
	sfu.expect(t, 3*time.Second)
	api.expectSilence(t, 200*time.Millisecond)

	// The SFU set changes (pod replaced): the old endpoint is cut at once,
	// even through the channel already bound.
	if err := f.srv.SetSFUEndpoints([]netip.AddrPort{api.addr}); err != nil {
		t.Fatal(err)
	}
	c.channelData(0x4001, []byte("media after the SFU left"))
	sfu.expectSilence(t, 300*time.Millisecond)
}

func TestPermissionCapPerAllocation(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"), func(c *Config) { c.PermissionCap = 3 })
	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	for i := 1; i <= 3; i++ {
		if got := c.createPermission(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), 9)); got != 0 {
			t.Fatalf("permission %d = %d, want success", i, got)
		}
	}
	if got := c.createPermission(netip.MustParseAddrPort("127.0.0.1:9")); got != 0 {
		t.Fatalf("refreshing an existing permission = %d, want success", got)
	}
	if got := c.createPermission(netip.MustParseAddrPort("127.0.0.4:9")); got != 508 {
		t.Fatalf("4th distinct peer = %d, want 508", got)
	}
}

func TestBindingRequestAnsweredWithoutCredentials(t *testing.T) {
	f := newFixture(t, testPod())
	c := dialRaw(t, "udp", f.udpAddr, Credential{})
	res, err := c.roundTrip(stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil {
		t.Fatalf("binding response without XOR-MAPPED-ADDRESS: %v", err)
	}
	if got, want := xa.String(), c.conn.LocalAddr().String(); got != want {
		t.Fatalf("mapped address %s, want %s", got, want)
	}
}

// TestAttributesAfterMessageIntegrityAreIgnored is TURN-04: a peer address
// appended after MESSAGE-INTEGRITY gets no permission.
func TestAttributesAfterMessageIntegrityAreIgnored(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	relay := relayAddrOf(t, f)
	aAP := a.LocalAddr().(*net.UDPAddr).AddrPort()
	bAP := b.LocalAddr().(*net.UDPAddr).AddrPort()
	res, err := c.roundTrip(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), peerAttr(aAP),
		stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.mi, peerAttr(bAP))
	if err != nil {
		t.Fatal(err)
	}
	if code(res) != 0 {
		t.Fatalf("CreatePermission = %d, want success", code(res))
	}
	if _, err := b.WriteToUDPAddrPort([]byte("smuggled"), relay); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteToUDPAddrPort([]byte("legit"), relay); err != nil {
		t.Fatal(err)
	}
	got, err := c.readData(3 * time.Second)
	if err != nil || string(got) != "legit" {
		t.Fatalf("first relayed datagram %q, %v; want only the permitted peer's", got, err)
	}
	if got, err := c.readData(300 * time.Millisecond); err == nil {
		t.Fatalf("peer named after MESSAGE-INTEGRITY got through: %q", got)
	}
}

// TestRelayRefusesTheServersOwnListeners: even with its range allowed, the
// relay does not loop into the TURN server's own ports.
func TestRelayRefusesTheServersOwnListeners(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
	for _, a := range []string{f.udpAddr, f.tcpAddr} {
		if got := c.channelBind(0x4000, netip.MustParseAddrPort(a)); got != 403 {
			t.Errorf("ChannelBind(own listener %s) = %d, want 403", a, got)
		}
	}
	before := f.srv.Stats().RelayedPackets
	c.sendIndication(netip.MustParseAddrPort(f.udpAddr), []byte("loop"))
	time.Sleep(200 * time.Millisecond)
	if got := f.srv.Stats().RelayedPackets; got != before {
		t.Fatalf("relay sent %d datagrams to the server itself", got-before)
	}
}

// TestUnauthenticatedAnswersAreRateLimitedPerIP is TURN-07: a flood of
// Binding requests from one IP gets at most the per-second limit answered,
// so the server cannot be used to reflect traffic at a spoofed address.
func TestUnauthenticatedAnswersAreRateLimitedPerIP(t *testing.T) {
	f := newFixture(t, testPod(), func(c *Config) { c.UnauthenticatedPerSecond = 20 })
	conn, err := net.Dial("udp", f.udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	for i := 0; i < 200; i++ {
		if _, err := conn.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	buf := make([]byte, 1500)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Read(buf); err != nil {
			break
		}
		answered++
	}
	// The burst may straddle one window boundary: at most two windows' worth.
	limit := 20
	if time.Since(start) > 700*time.Millisecond {
		limit = 40
	}
	if answered == 0 || answered > limit {
		t.Fatalf("%d of 200 Binding requests answered, want 1..%d", answered, limit)
	}
	// A client that authenticates is not limited by its earlier flood once
	// the window has passed.
	time.Sleep(1100 * time.Millisecond)
	c := dialRaw(t, "udp", f.udpAddr, issue(t, f, keyA))
	c.mustAllocate(protoUDP)
}
