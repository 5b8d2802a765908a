package turn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestRelayOnlyPeersExchangeMediaThroughTURN: two Pion peers that may only
// use relay candidates connect through the server; RTP and a DataChannel
// message arrive. Loopback is allowed explicitly, as a pool would allow its
// own ranges.
func TestRelayOnlyPeersExchangeMediaThroughTURN(t *testing.T) {
	f := newFixture(t, testPod("127.0.0.0/8"))
	cred := issue(t, f, keyA)
	ice := []webrtc.ICEServer{{
		URLs:       []string{"turn:" + f.udpAddr + "?transport=udp"},
		Username:   cred.Username,
		Credential: cred.Password,
	}}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	newPC := func() *webrtc.PeerConnection {
		pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: ice, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	pub, sub := newPC(), newPC()

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "turn-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	dc, err := pub.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	gotRTP := make(chan *rtp.Packet, 1)
	gotMsg := make(chan string, 1)
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p, _, err := tr.ReadRTP()
		if err == nil {
			gotRTP <- p
		}
	})
	sub.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case gotMsg <- string(m.Data):
			default:
			}
		})
	})
	dcOpen := make(chan struct{})
	dc.OnOpen(func() { close(dcOpen) })

	// Vanilla ICE: exchange complete descriptions.
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gp := webrtc.GatheringCompletePromise(pub)
	if err := pub.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gp
	if err := sub.SetRemoteDescription(*pub.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gs := webrtc.GatheringCompletePromise(sub)
	if err := sub.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gs
	if err := pub.SetRemoteDescription(*sub.LocalDescription()); err != nil {
		t.Fatal(err)
	}

	select {
	case <-dcOpen:
	case <-time.After(20 * time.Second):
		t.Fatalf("DataChannel did not open through TURN (pub ICE %s, sub ICE %s)", pub.ICEConnectionState(), sub.ICEConnectionState())
	}
	if err := dc.SendText("hello through the relay"); err != nil {
		t.Fatal(err)
	}
	payload := []byte{0xde, 0xad, 0xbe, 0xef}
	deadline := time.After(20 * time.Second)
	var p *rtp.Packet
	for p == nil {
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1, Timestamp: 960, SSRC: 1}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		select {
		case p = <-gotRTP:
		case <-deadline:
			t.Fatal("no RTP arrived through TURN")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if string(p.Payload) != string(payload) {
		t.Fatalf("RTP payload %x, want %x", p.Payload, payload)
	}
	select {
	case m := <-gotMsg:
		if m != "hello through the relay" {
			t.Fatalf("message %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DataChannel message did not arrive")
	}

	// The selected pair is relay on both sides, on our server's relay address.
	for name, pc := range map[string]*webrtc.PeerConnection{"publisher": pub, "subscriber": sub} {
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("%s: no selected pair: %v", name, err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("%s local candidate is %s, want relay", name, pair.Local.Typ)
		}
		if ip, err := netip.ParseAddr(pair.Local.Address); err != nil || ip != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("%s relay address %s", name, pair.Local.Address)
		}
	}
	if f.srv.Stats().RelayedPackets == 0 {
		t.Fatal("server relayed nothing")
	}
}
