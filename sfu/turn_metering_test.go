package sfu_test

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
	"github.com/switchboard-rtc/switchboard/turn"
)

// relayTap counts the non-STUN bytes the SFU writes to the TURN relay IP.
type relayTap struct {
	net.PacketConn
	toRelay atomic.Uint64
}

func (r *relayTap) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := r.PacketConn.WriteTo(p, addr)
	if ua, ok := addr.(*net.UDPAddr); ok && n > 0 && p[0] >= 4 {
		if ip, ok := netip.AddrFromSlice(ua.IP); ok && ip.Unmap() == turnRelayIP {
			r.toRelay.Add(uint64(n))
		}
	}
	return n, err
}

// teeMeter gives the TURN server's bytes to the pod's usage meter (as
// `switchboard turn` does) and to the server's own counters.
type teeMeter struct {
	usage usage.TURNMeter
	own   *turn.Counters
}

func (m teeMeter) AddEgress(app string, n uint64) { m.usage.AddEgress(app, n); m.own.AddEgress(app, n) }
func (m teeMeter) AddIngress(app string, n uint64) {
	m.usage.AddIngress(app, n)
	m.own.AddIngress(app, n)
}

// meteredTURNEnv is newTURNEnv with both halves metered into one usage
// meter: the SFU's media socket counted per app with turn.relayIPs set,
// the TURN server counting source turn.
func meteredTURNEnv(t *testing.T) (*turnEnv, *usage.Meter, *turn.Counters, *relayTap) {
	t.Helper()
	meter := usage.NewMeter(nil)
	meter.SetApps([]string{appA, appB})
	own := turn.NewCounters()
	pc, err := turn.ListenUDP("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	te := &turnEnv{turnAddr: pc.LocalAddr().String(), remotes: map[netip.AddrPort]bool{}}
	cfg := testConfig(func(a *config.App) {
		a.TURNKey = &config.TURNKey{ID: turnKeyA, TokenSHA256: hashHex(turnTokenA), HMACSecret: turnHMAC}
	})
	cfg.TURN = config.TURN{Enabled: true, URLs: []string{"turn:" + te.turnAddr + "?transport=udp"},
		RelayIPs: []string{turnRelayIP.String()}}
	turnPod := *cfg
	turnPod.Media.Exposure = config.ExposureTURNIngress
	te.turn, err = turn.New(turn.Config{PacketConns: []net.PacketConn{pc}, RelayIP: turnRelayIP, Pod: &turnPod,
		Logger: testLogger(), Meter: teeMeter{usage: usage.TURNMeter{M: meter}, own: own}})
	if err != nil {
		_ = pc.Close()
		t.Fatalf("turn.New: %v", err)
	}
	t.Cleanup(func() { _ = te.turn.Close() })

	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &relayTap{PacketConn: raw}
	attr := usage.NewAttribution()
	srv, err := sfu.New(sfu.Options{Config: cfg, UDPConn: usage.NewPacketConn(tap, attr),
		AdvertiseIPs: []string{"127.0.0.1"}, Logger: testLogger(), TURNRevocations: te.turn.Revocations(),
		Hooks: sfu.Hooks{RemoteAddr: func(app string, ap netip.AddrPort, active bool) {
			te.mu.Lock()
			te.remotes[ap] = active
			te.mu.Unlock()
			if active {
				attr.Set(ap, meter.App(app))
			} else {
				attr.Delete(ap, meter.App(app))
			}
		}}})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	te.env = &env{t: t, srv: srv, http: newHTTPServer(t, srv)}
	media, err := netip.ParseAddrPort(srv.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := te.turn.SetSFUEndpoints([]netip.AddrPort{media}); err != nil {
		t.Fatal(err)
	}
	return te, meter, own, tap
}

// Counted once: a relay-only publisher pushes through our TURN server to
// the SFU and a direct subscriber pulls. The app's TURN egress is what the
// TURN server sent the relayed client; its SFU egress is exactly what the
// direct subscriber received and none of the bytes the SFU sent to the
// relay address; the app's total is the sum of the two.
func TestTURNRelayedTrafficIsCountedOnceByTURN(t *testing.T) {
	te, meter, own, tap := meteredTURNEnv(t)
	servers := te.generateICEServers()

	pub, pubSID, _ := publishThroughTURN(t, te, servers)

	sub, _ := pull(t, te.env, appA, secretA, pubSID, "relay")
	sub.waitMedia("1", "relay-video", 30)

	time.Sleep(2 * time.Second) // let RTCP to the relayed publisher accumulate

	// SFU egress is bracketed by what the direct subscriber received, and
	// is below what it received plus what the SFU sent to the relay.
	recv1, _ := clientBytes([]*peer{sub})
	toRelay1 := tap.toRelay.Load()
	c := appCounters(meter, appA)
	time.Sleep(300 * time.Millisecond)
	recv2, _ := clientBytes([]*peer{sub})
	if c.EgressSFUBytes < recv1 || c.EgressSFUBytes > recv2 {
		t.Fatalf("SFU egress %d, the direct subscriber received %d before and %d after", c.EgressSFUBytes, recv1, recv2)
	}
	if toRelay1 < 500 {
		t.Fatalf("the SFU sent only %d non-STUN bytes to the relay; the test did not exercise the relayed leg", toRelay1)
	}
	if c.EgressSFUBytes >= recv1+toRelay1 {
		t.Fatalf("SFU egress %d includes the %d bytes sent to the relay (direct subscriber received %d)", c.EgressSFUBytes, toRelay1, recv1)
	}

	// Stop the publisher; once media has stopped, close the TURN server,
	// which flushes every allocation to its meter.
	pubRecv, _ := clientBytes([]*peer{pub})
	_ = pub.pc.Close()
	time.Sleep(time.Second)
	_ = te.turn.Close()
	subA, _ := clientBytes([]*peer{sub})
	final := appCounters(meter, appA)
	time.Sleep(300 * time.Millisecond)
	subB, _ := clientBytes([]*peer{sub})
	toRelay := tap.toRelay.Load()
	sentByTURN := own.Egress(appA)
	if final.EgressTURNBytes != sentByTURN {
		t.Fatalf("app TURN egress %d, the TURN server sent the relayed client %d", final.EgressTURNBytes, sentByTURN)
	}
	if sentByTURN < pubRecv {
		t.Fatalf("TURN egress %d is less than the %d bytes the relayed publisher's ICE transport received", sentByTURN, pubRecv)
	}
	// The app's total: exactly the direct subscriber's bytes plus the
	// TURN server's, not the relayed leg a second time.
	total := final.EgressSFUBytes + final.EgressTURNBytes
	if total < subA+sentByTURN || total > subB+sentByTURN {
		t.Fatalf("total egress %d, want direct subscriber (%d..%d) + TURN %d; the SFU sent %d to the relay", total, subA, subB, sentByTURN, toRelay)
	}
	t.Logf("SFU egress %d (direct subscriber received %d), TURN egress %d (relayed publisher received %d), SFU to relay %d not counted",
		final.EgressSFUBytes, subA, sentByTURN, pubRecv, toRelay)
}
