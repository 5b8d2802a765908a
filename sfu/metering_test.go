package sfu_test

import (
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

// meteredEnv is an SFU whose media socket is counted per app, the way
// `switchboard sfu` wires it.
func meteredEnv(t *testing.T) (*env, *usage.Meter) {
	t.Helper()
	meter := usage.NewMeter(nil)
	meter.SetApps([]string{appA, appB})
	attr := usage.NewAttribution()
	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sfu.New(sfu.Options{Config: testConfig(), UDPConn: usage.NewPacketConn(raw, attr),
		AdvertiseIPs: []string{"127.0.0.1"}, Logger: testLogger(),
		Hooks: sfu.Hooks{RemoteAddr: func(app string, ap netip.AddrPort, active bool) {
			if active {
				attr.Set(ap, meter.App(app))
			} else {
				attr.Delete(ap, meter.App(app))
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, http: httptest.NewServer(srv.Handler())}
	t.Cleanup(func() {
		e.http.Close()
		_ = srv.Close()
	})
	return e, meter
}

// clientBytes sums what the peers' ICE transports delivered to (received)
// or took from (sent) their WebRTC stacks: every DTLS, SCTP, SRTP and SRTCP
// byte, no STUN.
func clientBytes(peers []*peer) (received, sent uint64) {
	for _, p := range peers {
		st := p.pc.SCTP().Transport().ICETransport().Stats()
		received += st.BytesReceived
		sent += st.BytesSent
	}
	return received, sent
}

func appCounters(m *usage.Meter, app string) usage.Counters {
	for _, r := range m.Snapshot() {
		if r.App == app {
			return r.Counters
		}
	}
	return usage.Counters{}
}

// Metering is exact: what the SFU counts as an app's egress is what that
// app's clients received at their ICE transports (media, RTCP, DTLS), and
// its ingress is what they sent. The only slack is packets in flight at
// the moment of reading, so the server's figure is bracketed by two client
// readings taken before and after it.
func TestEgressAndIngressEqualWhatTheAppsClientsReceivedAndSent(t *testing.T) {
	e, meter := meteredEnv(t)
	pubA, pubSID := publish(t, e, appA, secretA, "cam")
	peersA := []*peer{pubA}
	const k = 3
	for range k {
		sub, _ := pull(t, e, appA, secretA, pubSID, "cam")
		peersA = append(peersA, sub)
	}
	pubB, pubBSID := publish(t, e, appB, secretB, "mic")
	subB, _ := pull(t, e, appB, secretB, pubBSID, "mic")
	peersB := []*peer{pubB, subB}
	for _, p := range peersA[1:] {
		p.waitMedia("1", "cam-video", 30)
	}
	subB.waitMedia("1", "mic-video", 30)

	for _, tc := range []struct {
		app   string
		peers []*peer
	}{{appA, peersA}, {appB, peersB}} {
		recv1, _ := clientBytes(tc.peers)
		c := appCounters(meter, tc.app)
		time.Sleep(300 * time.Millisecond)
		recv2, _ := clientBytes(tc.peers)
		if c.EgressSFUBytes < recv1 || c.EgressSFUBytes > recv2 {
			t.Fatalf("app %s: egress counted %d, clients had received %d before and %d after", tc.app, c.EgressSFUBytes, recv1, recv2)
		}
		in1 := appCounters(meter, tc.app).IngressBytes
		_, sent := clientBytes(tc.peers)
		time.Sleep(300 * time.Millisecond)
		in2 := appCounters(meter, tc.app).IngressBytes
		if sent < in1 || sent > in2 {
			t.Fatalf("app %s: clients sent %d, ingress counted %d before and %d after", tc.app, sent, in1, in2)
		}
		if c.EgressSFUBytes < 20_000 {
			t.Fatalf("app %s: only %d bytes of egress; media did not flow", tc.app, c.EgressSFUBytes)
		}
		t.Logf("app %s: egress %d bytes within [%d, %d]; %d clients", tc.app, c.EgressSFUBytes, recv1, recv2, len(tc.peers))
	}
}
