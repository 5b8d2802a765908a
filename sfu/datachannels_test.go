package sfu_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// inbox records the messages an endpoint channel receives.
type inbox struct {
	mu     sync.Mutex
	msgs   []webrtc.DataChannelMessage
	closed chan struct{}
	once   sync.Once
}

func listen(dc *webrtc.DataChannel) *inbox {
	in := &inbox{closed: make(chan struct{})}
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		in.mu.Lock()
		in.msgs = append(in.msgs, m)
		in.mu.Unlock()
	})
	dc.OnClose(func() { in.once.Do(func() { close(in.closed) }) })
	return in
}

func (in *inbox) has(data string, isString bool) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range in.msgs {
		if string(m.Data) == data && m.IsString == isString {
			return true
		}
	}
	return false
}

func (in *inbox) all() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, m := range in.msgs {
		kind := "bin"
		if m.IsString {
			kind = "str"
		}
		out = append(out, kind+":"+string(m.Data))
	}
	return out
}

// waitMsg waits until data arrived with the given type (string or binary).
func (in *inbox) waitMsg(t testing.TB, data string, isString bool) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("message %q (string=%v); got %q", data, isString, in.all()), func() bool {
		return in.has(data, isString)
	})
}

func (in *inbox) waitClosed(t *testing.T, what string) {
	t.Helper()
	select {
	case <-in.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: endpoint channel not closed within 10 s", what)
	}
}

// dcCall posts a datachannels request and decodes the answer.
func (e *env) dcCall(method, app, secret, sid, op string, body any) (int, session.DataChannelsResponse, []byte) {
	e.t.Helper()
	var out session.DataChannelsResponse
	st, raw := e.call(method, apiPath(app, sid, "/datachannels/"+op), secret, body, nil)
	if st == http.StatusOK {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("datachannels/%s: decode %s: %v", op, raw, err)
		}
	}
	return st, out, raw
}

// dcOK posts a datachannels request that must succeed item by item and
// returns the ids.
func (e *env) dcOK(method, app, secret, sid, op string, items ...map[string]any) []uint16 {
	e.t.Helper()
	st, out, raw := e.dcCall(method, app, secret, sid, op, map[string]any{"dataChannels": items})
	if st != http.StatusOK || len(out.DataChannels) != len(items) {
		e.t.Fatalf("datachannels/%s: %d %s", op, st, raw)
	}
	var ids []uint16
	for _, it := range out.DataChannels {
		if it.ErrorCode != "" || it.ID == nil {
			e.t.Fatalf("datachannels/%s item failed: %s", op, raw)
		}
		ids = append(ids, *it.ID)
	}
	return ids
}

func (e *env) establish(app, secret, sid string, sd *session.SessionDescription) (int, session.EstablishResponse, []byte) {
	e.t.Helper()
	body := map[string]any{"dataChannel": map[string]any{"location": "remote", "dataChannelName": "server-events"}}
	if sd != nil {
		body["sessionDescription"] = sd
	}
	var out session.EstablishResponse
	st, raw := e.call("POST", apiPath(app, sid, "/datachannels/establish"), secret, body, nil)
	if st == http.StatusOK {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("establish: decode %s: %v", raw, err)
		}
	}
	return st, out, raw
}

// serverEvents records the channels the SFU opens in-band on p.
func serverEvents(p *peer) chan *webrtc.DataChannel {
	ch := make(chan *webrtc.DataChannel, 4)
	p.pc.OnDataChannel(func(dc *webrtc.DataChannel) { ch <- dc })
	return ch
}

// establishByOffer runs establish without an offer on an existing or new
// session: the SFU re-offers with m=application, the peer answers through
// renegotiate and receives "server-events" through ondatachannel.
func establishByOffer(t testing.TB, e *env, app, secret, sid string, p *peer) {
	t.Helper()
	opened := serverEvents(p)
	st, resp, raw := e.establish(app, secret, sid, nil)
	if st != http.StatusOK || !resp.RequiresImmediateRenegotiation || resp.SessionDescription == nil ||
		resp.SessionDescription.Type != "offer" || resp.DataChannel.DataChannelName != "server-events" || resp.DataChannel.ID == nil {
		t.Fatalf("establish without offer: %d %s", st, raw)
	}
	if !strings.Contains(resp.SessionDescription.SDP, "m=application") {
		t.Fatalf("establish offer has no m=application:\n%s", resp.SessionDescription.SDP)
	}
	e.renegotiate(app, secret, sid, p.answer(resp.SessionDescription))
	p.waitConnected()
	select {
	case dc := <-opened:
		if dc.Label() != "server-events" {
			t.Fatalf("SFU opened %q, want server-events", dc.Label())
		}
		waitFor(t, 10*time.Second, "server-events open", func() bool { return dc.ReadyState() == webrtc.DataChannelStateOpen })
		if dc.ID() == nil || *dc.ID() != *resp.DataChannel.ID {
			t.Errorf("server-events id on the wire %v, response said %d", idStr(dc), *resp.DataChannel.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server-events did not arrive through ondatachannel within 10 s")
	}
}

// dcSession is a session with an established DataChannel transport and no
// media, as the echo-datachannels example makes it.
func dcSession(t testing.TB, e *env, app, secret string) (*peer, string) {
	t.Helper()
	// Answer "setup:active" as browsers do (Pion would answer an ICE-lite
	// offer "passive"): the SFU predicts the server-events id from that.
	p := newPeerWith(t, func(se *webrtc.SettingEngine) {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
			t.Fatal(err)
		}
	})
	sid := e.newSession(app, secret)
	establishByOffer(t, e, app, secret, sid, p)
	return p, sid
}

// negotiated creates the endpoint side of a channel the SFU allocated and
// waits until it is open.
func negotiated(t testing.TB, p *peer, label string, id uint16, tune func(*webrtc.DataChannelInit)) (*webrtc.DataChannel, *inbox) {
	t.Helper()
	yes := true
	init := &webrtc.DataChannelInit{Negotiated: &yes, ID: &id}
	if tune != nil {
		tune(init)
	}
	dc, err := p.pc.CreateDataChannel(label, init)
	if err != nil {
		t.Fatalf("create negotiated channel %d: %v", id, err)
	}
	in := listen(dc)
	waitFor(t, 10*time.Second, "negotiated channel open", func() bool { return dc.ReadyState() == webrtc.DataChannelStateOpen })
	return dc, in
}

func sendText(t testing.TB, dc *webrtc.DataChannel, s string) {
	t.Helper()
	if err := dc.SendText(s); err != nil {
		t.Fatalf("send %q: %v", s, err)
	}
}

func sendBinary(t *testing.T, dc *webrtc.DataChannel, b []byte) {
	t.Helper()
	if err := dc.Send(b); err != nil {
		t.Fatalf("send binary: %v", err)
	}
}

func dcStatus(st session.State, location string, id uint16) string {
	for _, d := range st.DataChannels {
		if d.Location == location && d.ID == id {
			return d.Status
		}
	}
	return "absent"
}

func TestEstablishWithoutOfferOpensServerEvents(t *testing.T) {
	e := newEnv(t, envOpt{})
	p, sid := dcSession(t, e, appA, secretA)

	st := e.state(appA, secretA, sid)
	if len(st.DataChannels) != 1 || st.DataChannels[0].DataChannelName != "server-events" || st.DataChannels[0].Status != "active" {
		t.Fatalf("GET session after establish: %+v", st.DataChannels)
	}
	// A second establish once SCTP is negotiated is a decoding_error.
	code, _, raw := e.establish(appA, secretA, sid, nil)
	if code != http.StatusBadRequest || !strings.Contains(string(raw), `"errorCode":"decoding_error"`) {
		t.Fatalf("second establish: want 400 decoding_error, got %d %s", code, raw)
	}
	// The transport now carries negotiated channels: publish and echo to
	// a subscriber on the same transport kind.
	ids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "local", "dataChannelName": "events"})
	if ids[0] < 2 {
		t.Fatalf("negotiated ids start at 2, got %d", ids[0])
	}
	pubDC, _ := negotiated(t, p, "events", ids[0], nil)
	sub, subSID := dcSession(t, e, appA, secretA)
	subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": sid, "dataChannelName": "events"})
	_, in := negotiated(t, sub, "events", subIDs[0], nil)
	sendText(t, pubDC, "first")
	in.waitMsg(t, "first", true)
}

func TestEstablishWithClientOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	p := newPeer(t)
	// The old echo-datachannels flow: the endpoint opens a non-negotiated
	// "server-events" channel before connecting and sends text on it.
	own, err := p.pc.CreateDataChannel("server-events", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid := e.newSession(appA, secretA)
	st, resp, raw := e.establish(appA, secretA, sid, p.offer())
	if st != http.StatusOK || resp.RequiresImmediateRenegotiation || resp.DataChannel.DataChannelName != "server-events" || resp.DataChannel.ID == nil {
		t.Fatalf("establish with offer: %d %s", st, raw)
	}
	p.setAnswer(resp.SessionDescription)
	p.waitConnected()
	waitFor(t, 10*time.Second, "own server-events open", func() bool { return own.ReadyState() == webrtc.DataChannelStateOpen })
	if *own.ID() != *resp.DataChannel.ID {
		t.Errorf("server-events id: endpoint has %d, response said %d", *own.ID(), *resp.DataChannel.ID)
	}
	sendText(t, own, "hello from the client, to be dropped")

	// Application ids never collide with the in-band channel.
	ids := e.dcOK("POST", appA, secretA, sid, "new",
		map[string]any{"location": "local", "dataChannelName": "a"},
		map[string]any{"location": "local", "dataChannelName": "b"})
	if ids[0] != 2 || ids[1] != 3 || ids[0] == *own.ID() {
		t.Fatalf("ids %v, server-events %d: want 2 and 3", ids, *own.ID())
	}
	pubDC, _ := negotiated(t, p, "a", ids[0], nil)
	sub, subSID := dcSession(t, e, appA, secretA)
	subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": sid, "dataChannelName": "a"})
	_, in := negotiated(t, sub, "a", subIDs[0], nil)
	sendText(t, pubDC, "after client offer")
	in.waitMsg(t, "after client offer", true)
	if in.has("hello from the client, to be dropped", true) {
		t.Fatal("a server-events message was forwarded")
	}
}

func TestDataChannelWithMediaSessionsAsTheDemoPage(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID := publish(t, e, appA, secretA, "cam")
	sub, subSID := pull(t, e, appA, secretA, pubSID, "cam")
	// establish re-offers with the media sections and mids kept, plus
	// m=application appended.
	for _, x := range []struct {
		p   *peer
		sid string
	}{{pub, pubSID}, {sub, subSID}} {
		opened := serverEvents(x.p)
		st, resp, raw := e.establish(appA, secretA, x.sid, nil)
		if st != http.StatusOK || !resp.RequiresImmediateRenegotiation {
			t.Fatalf("establish: %d %s", st, raw)
		}
		if mids := midsOf(resp.SessionDescription.SDP); !slices.Equal(mids, []string{"0", "1", "2"}) {
			t.Fatalf("establish offer mids %v, want [0 1 2]", mids)
		}
		if !strings.Contains(resp.SessionDescription.SDP, "m=application") {
			t.Fatal("no m=application in establish offer")
		}
		e.renegotiate(appA, secretA, x.sid, x.p.answer(resp.SessionDescription))
		select {
		case <-opened:
		case <-time.After(10 * time.Second):
			t.Fatal("server-events not received")
		}
	}
	pubIDs := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "chat"})
	pubDC, _ := negotiated(t, pub, "chat", pubIDs[0], nil)
	subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "chat"})
	_, in := negotiated(t, sub, "chat-subscribed", subIDs[0], nil)
	sendText(t, pubDC, "hello from session 1")
	in.waitMsg(t, "hello from session 1", true)
	// Media keeps flowing after the SCTP transport was added.
	sub.waitMedia("1", "cam-video", sub.count("1", "cam-video")+10)
}

func TestDataChannelInFirstOfferNeedsNoEstablish(t *testing.T) {
	e := newEnv(t, envOpt{})
	p := newPeer(t)
	p.addTrack(webrtc.RTPCodecTypeAudio, "mic", webrtc.RTPTransceiverDirectionSendonly)
	if _, err := p.pc.CreateDataChannel("bootstrap", nil); err != nil {
		t.Fatal(err)
	}
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: p.offer(),
		Tracks: []session.TrackObject{{Location: "local", Mid: "0", TrackName: "mic"}}})
	p.setAnswer(resp.SessionDescription)
	p.waitConnected()
	ids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "local", "dataChannelName": "x"})
	pubDC, _ := negotiated(t, p, "x", ids[0], nil)
	sub, subSID := dcSession(t, e, appA, secretA)
	subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": sid, "dataChannelName": "x"})
	_, in := negotiated(t, sub, "x", subIDs[0], nil)
	sendText(t, pubDC, "no establish needed")
	in.waitMsg(t, "no establish needed", true)
	if code, _, raw := e.establish(appA, secretA, sid, nil); code != http.StatusBadRequest || !strings.Contains(string(raw), "decoding_error") {
		t.Fatalf("establish on a negotiated transport: %d %s", code, raw)
	}
}

func TestDataChannelFanOutToTwoSubscribers(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "feed"})
	pubDC, _ := negotiated(t, pub, "feed", ids[0], nil)

	var inboxes []*inbox
	for i := 0; i < 2; i++ {
		sub, subSID := dcSession(t, e, appA, secretA)
		subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "feed"})
		_, in := negotiated(t, sub, "feed", subIDs[0], nil)
		inboxes = append(inboxes, in)
		if st := e.state(appA, secretA, subSID); dcStatus(st, "remote", subIDs[0]) != "active" {
			t.Fatalf("subscriber GET: %+v", st.DataChannels)
		}
	}
	before := e.srv.Usage()[appA].EgressBytes
	payload := bytes.Repeat([]byte{0, 1, 2, 0xff}, 256)
	sendText(t, pubDC, "text message")
	sendBinary(t, pubDC, payload)
	for i, in := range inboxes {
		in.waitMsg(t, "text message", true)
		in.waitMsg(t, string(payload), false)
		if in.has("text message", false) || in.has(string(payload), true) {
			t.Fatalf("subscriber %d: message type changed: %q", i, in.all())
		}
	}
	// Each subscriber got both messages: the app's egress grew by at least
	// twice their size.
	want := uint64(2 * (len("text message") + len(payload)))
	waitFor(t, 5*time.Second, "datachannel egress counted", func() bool {
		return e.srv.Usage()[appA].EgressBytes-before >= want
	})
	if st := e.state(appA, secretA, pubSID); dcStatus(st, "local", ids[0]) != "active" {
		t.Fatalf("publisher GET: %+v", st.DataChannels)
	}
}

func TestDataChannelOfAnotherAppCannotBeSubscribed(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "private"})
	pubDC, _ := negotiated(t, pub, "private", ids[0], nil)
	_, otherSID := dcSession(t, e, appB, secretB)
	for _, name := range []string{"private", "missing"} {
		st, out, raw := e.dcCall("POST", appB, secretB, otherSID, "new",
			map[string]any{"dataChannels": []map[string]any{{"location": "remote", "sessionId": pubSID, "dataChannelName": name}}})
		if st != http.StatusOK || len(out.DataChannels) != 1 || out.DataChannels[0].ErrorCode != "not_found_track_error" || out.DataChannels[0].ID != nil {
			t.Fatalf("subscribe %q from another app: want item not_found_track_error, got %d %s", name, st, raw)
		}
	}
	sendText(t, pubDC, "still private")
	if st := e.state(appB, secretB, otherSID); len(st.DataChannels) != 1 {
		t.Fatalf("other app's session lists channels it could not subscribe: %+v", st.DataChannels)
	}
}

func TestDataChannelCanReply(t *testing.T) {
	e := newEnv(t, envOpt{})
	pub, pubSID := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "rpc"})
	pubDC, pubIn := negotiated(t, pub, "rpc", ids[0], nil)

	subA, sidA := dcSession(t, e, appA, secretA)
	st, out, raw := e.dcCall("POST", appA, secretA, sidA, "new", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "rpc", "canReply": true}}})
	if st != http.StatusOK || out.DataChannels[0].CanReply == nil || !*out.DataChannels[0].CanReply {
		t.Fatalf("subscribe with canReply: %d %s", st, raw)
	}
	dcA, inA := negotiated(t, subA, "rpc", *out.DataChannels[0].ID, nil)
	subB, sidB := dcSession(t, e, appA, secretA)
	idsB := e.dcOK("POST", appA, secretA, sidB, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "rpc"})
	dcB, inB := negotiated(t, subB, "rpc", idsB[0], nil)

	sendText(t, dcB, "reply from B (no grant)")
	sendText(t, dcA, "reply from A")
	sendBinary(t, dcA, []byte{9, 8, 7})
	pubIn.waitMsg(t, "reply from A", true)
	pubIn.waitMsg(t, string([]byte{9, 8, 7}), false)
	// A marker from the publisher proves the subscribers' channels are
	// drained past the replies before checking what did not arrive.
	sendText(t, pubDC, "marker 1")
	inA.waitMsg(t, "marker 1", true)
	inB.waitMsg(t, "marker 1", true)
	if pubIn.has("reply from B (no grant)", true) || inB.has("reply from A", true) || inA.has("reply from B (no grant)", true) {
		t.Fatalf("replies must reach the publisher only, from the holder only: pub %q, A %q, B %q", pubIn.all(), inA.all(), inB.all())
	}

	// Granting B replaces A.
	st, out, raw = e.dcCall("PUT", appA, secretA, sidB, "update", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "rpc", "canReply": true}}})
	if st != http.StatusOK || len(out.DataChannels) != 1 || out.DataChannels[0].CanReply == nil || !*out.DataChannels[0].CanReply ||
		out.DataChannels[0].ID == nil || *out.DataChannels[0].ID != idsB[0] {
		t.Fatalf("update grant: %d %s", st, raw)
	}
	sendText(t, dcA, "A after losing the grant")
	sendText(t, dcB, "B with the grant")
	pubIn.waitMsg(t, "B with the grant", true)
	time.Sleep(200 * time.Millisecond)
	if pubIn.has("A after losing the grant", true) {
		t.Fatal("the previous canReply holder still reaches the publisher")
	}
	// A's update reports it no longer holds the grant; revoking B's works.
	st, out, raw = e.dcCall("PUT", appA, secretA, sidA, "update", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "rpc"}}})
	if st != http.StatusOK || out.DataChannels[0].CanReply == nil || *out.DataChannels[0].CanReply {
		t.Fatalf("update without canReply must echo false for A: %d %s", st, raw)
	}
	e.dcOK("PUT", appA, secretA, sidB, "update", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "rpc", "canReply": false})
	sendText(t, dcB, "B after revoke")
	sendText(t, pubDC, "marker 2")
	inB.waitMsg(t, "marker 2", true)
	time.Sleep(200 * time.Millisecond)
	if pubIn.has("B after revoke", true) {
		t.Fatal("a revoked subscriber still reaches the publisher")
	}
	// Updating a channel this session does not subscribe to.
	st, out, raw = e.dcCall("PUT", appA, secretA, sidA, "update", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "nope", "canReply": true}}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "not_found_track_error" {
		t.Fatalf("update unknown channel: %d %s", st, raw)
	}
}

func TestDataChannelWaitForAck(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	pub, pubSID := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "gated"})
	pubDC, pubIn := negotiated(t, pub, "gated", ids[0], nil)

	// A acknowledges; B never does.
	subA, sidA := dcSession(t, e, appA, secretA)
	idsA := e.dcOK("POST", appA, secretA, sidA, "new", map[string]any{"location": "remote", "sessionId": pubSID,
		"dataChannelName": "gated", "waitForAck": true, "canReply": true})
	dcA, inA := negotiated(t, subA, "gated", idsA[0], nil)
	subB, sidB := dcSession(t, e, appA, secretA)
	idsB := e.dcOK("POST", appA, secretA, sidB, "new", map[string]any{"location": "remote", "sessionId": pubSID,
		"dataChannelName": "gated", "waitForAck": true})
	_, inB := negotiated(t, subB, "gated", idsB[0], nil)
	if st := e.state(appA, secretA, sidB); dcStatus(st, "remote", idsB[0]) != "initializing" {
		t.Fatalf("an unacknowledged subscription is initializing: %+v", st.DataChannels)
	}

	sendText(t, pubDC, "before ack")
	time.Sleep(300 * time.Millisecond)
	if len(inA.all()) != 0 || len(inB.all()) != 0 {
		t.Fatalf("delivered before the acknowledgement: A %q, B %q", inA.all(), inB.all())
	}
	sendText(t, dcA, "ack")
	inA.waitMsg(t, "before ack", true)
	sendText(t, pubDC, "after ack")
	inA.waitMsg(t, "after ack", true)
	// The ack is consumed even though A holds canReply.
	sendText(t, dcA, "real reply")
	pubIn.waitMsg(t, "real reply", true)
	if pubIn.has("ack", true) {
		t.Fatal("the acknowledgement was forwarded to the publisher")
	}

	// 30 s on the session clock without B's acknowledgement tears B down.
	waitFor(t, 5*time.Second, "ack timers armed", func() bool { return e.clock.Waiters() >= 2 })
	e.clock.Advance(29 * time.Second)
	time.Sleep(200 * time.Millisecond)
	if st := e.state(appA, secretA, sidB); dcStatus(st, "remote", idsB[0]) != "initializing" {
		t.Fatalf("torn down before 30 s: %+v", st.DataChannels)
	}
	e.clock.Advance(time.Second)
	inB.waitClosed(t, "unacknowledged subscriber")
	if st := e.state(appA, secretA, sidB); dcStatus(st, "remote", idsB[0]) != "inactive" {
		t.Fatalf("after the ack timeout: %+v", st.DataChannels)
	}
	if st := e.state(appA, secretA, sidA); dcStatus(st, "remote", idsA[0]) != "active" {
		t.Fatalf("the acknowledged subscriber must stay: %+v", st.DataChannels)
	}
	if len(inB.all()) != 0 {
		t.Fatalf("B received %q without acknowledging", inB.all())
	}
}

func TestDataChannelClose(t *testing.T) {
	// Registered first, so it runs after every other cleanup: nothing the
	// DataChannels started may outlive the server.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	e := newEnv(t, envOpt{})
	pub, pubSID := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "room"})
	pubDC, _ := negotiated(t, pub, "room", ids[0], nil)
	var subs []struct {
		sid string
		id  uint16
		in  *inbox
	}
	for i := 0; i < 2; i++ {
		p, sid := dcSession(t, e, appA, secretA)
		sids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": "room"})
		_, in := negotiated(t, p, "room", sids[0], nil)
		subs = append(subs, struct {
			sid string
			id  uint16
			in  *inbox
		}{sid, sids[0], in})
	}
	sendText(t, pubDC, "one")
	subs[0].in.waitMsg(t, "one", true)
	subs[1].in.waitMsg(t, "one", true)

	// Subscriber 0 leaves: its channel closes, subscriber 1 still gets data.
	st, out, raw := e.dcCall("PUT", appA, secretA, subs[0].sid, "close", map[string]any{"dataChannels": []map[string]any{{"id": subs[0].id}}})
	if st != http.StatusOK || len(out.DataChannels) != 1 || out.DataChannels[0].ErrorCode != "" || out.DataChannels[0].Location != "remote" ||
		out.DataChannels[0].SessionID != pubSID || out.DataChannels[0].DataChannelName != "room" {
		t.Fatalf("subscriber close: %d %s", st, raw)
	}
	subs[0].in.waitClosed(t, "closed subscription")
	sendText(t, pubDC, "two")
	subs[1].in.waitMsg(t, "two", true)
	if subs[0].in.has("two", true) {
		t.Fatal("a closed subscription still receives")
	}
	if s := e.state(appA, secretA, subs[0].sid); dcStatus(s, "remote", subs[0].id) != "inactive" {
		t.Fatalf("closed subscription in GET: %+v", s.DataChannels)
	}

	// Closing again, or an id that never existed: close_track_error.
	for _, id := range []uint16{subs[0].id, 999} {
		st, out, raw = e.dcCall("PUT", appA, secretA, subs[0].sid, "close", map[string]any{"dataChannels": []map[string]any{{"id": id}}})
		if st != http.StatusOK || out.DataChannels[0].ErrorCode != "close_track_error" || out.DataChannels[0].ID == nil || *out.DataChannels[0].ID != id {
			t.Fatalf("close id %d again: want item close_track_error, got %d %s", id, st, raw)
		}
	}

	// The publisher closes: the remaining subscriber's channel closes too.
	st, out, raw = e.dcCall("PUT", appA, secretA, pubSID, "close", map[string]any{"dataChannels": []map[string]any{{"id": ids[0]}}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "" || out.DataChannels[0].Location != "local" {
		t.Fatalf("publisher close: %d %s", st, raw)
	}
	subs[1].in.waitClosed(t, "subscriber of a closed publication")
	if s := e.state(appA, secretA, subs[1].sid); dcStatus(s, "remote", subs[1].id) != "inactive" {
		t.Fatalf("subscriber of a closed publication in GET: %+v", s.DataChannels)
	}
	if s := e.state(appA, secretA, pubSID); dcStatus(s, "local", ids[0]) != "inactive" {
		t.Fatalf("closed publication in GET: %+v", s.DataChannels)
	}
	st, out, raw = e.dcCall("PUT", appA, secretA, pubSID, "close", map[string]any{"dataChannels": []map[string]any{{"id": ids[0]}}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "close_track_error" {
		t.Fatalf("publisher close again: %d %s", st, raw)
	}
	// The name is free again.
	if again := e.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "room"}); again[0] < 2 {
		t.Fatalf("republished id %d", again[0])
	}
}

func TestDataChannelRequestErrors(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, sid := dcSession(t, e, appA, secretA)
	_, other := dcSession(t, e, appA, secretA)
	e.dcOK("POST", appA, secretA, other, "new", map[string]any{"location": "local", "dataChannelName": "pub"})

	cases := []struct {
		name   string
		method string
		op     string
		body   string
		status int
		code   string
	}{
		{"mixed locations", "POST", "new", `{"dataChannels":[{"location":"local","dataChannelName":"x"},{"location":"remote","sessionId":"` + other + `","dataChannelName":"pub"}]}`, 406, "invalid_params"},
		{"maxRetransmits with maxPacketLifeTime", "POST", "new", `{"dataChannels":[{"location":"local","dataChannelName":"x","ordered":false,"maxRetransmits":0,"maxPacketLifeTime":100}]}`, 406, "invalid_params"},
		{"negative maxRetransmits", "POST", "new", `{"dataChannels":[{"location":"local","dataChannelName":"x","maxRetransmits":-1}]}`, 406, "invalid_params"},
		{"no items", "POST", "new", `{"dataChannels":[]}`, 406, "invalid_params"},
		{"bad location", "POST", "new", `{"dataChannels":[{"location":"up","dataChannelName":"x"}]}`, 400, "decoding_error"},
		{"not json", "POST", "new", `{"dataChannels":`, 400, "decoding_error"},
		{"establish another name", "POST", "establish", `{"dataChannel":{"location":"remote","dataChannelName":"chat"}}`, 406, "invalid_params"},
		{"establish local", "POST", "establish", `{"dataChannel":{"location":"local","dataChannelName":"server-events"}}`, 406, "invalid_params"},
		{"establish without dataChannel", "POST", "establish", `{}`, 400, "decoding_error"},
		{"close nothing", "PUT", "close", `{"dataChannels":[]}`, 406, "invalid_params"},
		{"update local", "PUT", "update", `{"dataChannels":[{"location":"local","dataChannelName":"pub","canReply":true}]}`, 406, "invalid_params"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, raw := e.call(c.method, apiPath(appA, sid, "/datachannels/"+c.op), secretA, c.body, nil)
			var body map[string]any
			_ = json.Unmarshal(raw, &body)
			if st != c.status || body["errorCode"] != c.code || body["errorDescription"] == "" {
				t.Fatalf("want %d %s, got %d %s", c.status, c.code, st, raw)
			}
		})
	}

	// Per-item errors keep the call at 200.
	st, out, raw := e.dcCall("POST", appA, secretA, sid, "new", map[string]any{"dataChannels": []map[string]any{
		{"location": "local", "dataChannelName": "dup"},
		{"location": "local", "dataChannelName": "dup"},
		{"location": "local", "dataChannelName": "server-events"},
		{"location": "local", "dataChannelName": "unreliable", "ordered": false, "maxRetransmits": 0},
	}})
	if st != http.StatusOK || len(out.DataChannels) != 4 {
		t.Fatalf("per-item call: %d %s", st, raw)
	}
	got := []string{out.DataChannels[0].ErrorCode, out.DataChannels[1].ErrorCode, out.DataChannels[2].ErrorCode, out.DataChannels[3].ErrorCode}
	if !slices.Equal(got, []string{"", "repeated_local_track_error", "invalid_params", ""}) {
		t.Fatalf("per-item codes %q: %s", got, raw)
	}
	st, out, raw = e.dcCall("POST", appA, secretA, sid, "new", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": other, "dataChannelName": "pub"},
		{"location": "remote", "sessionId": other, "dataChannelName": "pub"},
	}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "" || out.DataChannels[1].ErrorCode != "repeated_local_track_error" {
		t.Fatalf("repeated subscription: %d %s", st, raw)
	}
}

func TestDataChannelsNeedATransport(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	// No SDP exchange yet: no transport to put a channel on.
	sid := e.newSession(appA, secretA)
	st, _, raw := e.dcCall("POST", appA, secretA, sid, "new", map[string]any{"dataChannels": []map[string]any{{"location": "local", "dataChannelName": "x"}}})
	if st != http.StatusTooEarly || !strings.Contains(string(raw), `"errorCode":"session_error"`) {
		t.Fatalf("new without transport: want 425 session_error, got %d %s", st, raw)
	}
	// A transport offered but never connected: wait the connect wait, then 425.
	st, resp, raw := e.establish(appA, secretA, sid, nil)
	if st != http.StatusOK || !resp.RequiresImmediateRenegotiation {
		t.Fatalf("establish: %d %s", st, raw)
	}
	done := make(chan int, 1)
	go func() {
		st, _, _ := e.dcCall("POST", appA, secretA, sid, "new", map[string]any{"dataChannels": []map[string]any{{"location": "local", "dataChannelName": "x"}}})
		done <- st
	}()
	waitFor(t, 5*time.Second, "datachannels/new waiting for connected", func() bool { return e.clock.Waiters() > 0 })
	select {
	case st := <-done:
		t.Fatalf("answered %d before the connect wait ran out", st)
	case <-time.After(100 * time.Millisecond):
	}
	e.clock.Advance(5 * time.Second)
	select {
	case st := <-done:
		if st != http.StatusTooEarly {
			t.Fatalf("after the connect wait: want 425, got %d", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("datachannels/new did not give up after the connect wait")
	}
}

func idStr(dc *webrtc.DataChannel) string {
	if id := dc.ID(); id != nil {
		return fmt.Sprint(*id)
	}
	return "none"
}

func TestDataChannelCloseIsExemptFromRateLimit(t *testing.T) {
	e := newEnv(t, envOpt{fakeClock: true})
	p, sid := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "local", "dataChannelName": "busy"})
	_, in := negotiated(t, p, "busy", ids[0], nil)
	// The fake clock stands still, so the session's one-second window
	// fills up and stays full.
	for i := 0; i < 60; i++ {
		e.call("GET", apiPath(appA, sid, ""), secretA, nil, nil)
	}
	st, _, raw := e.dcCall("POST", appA, secretA, sid, "new", map[string]any{"dataChannels": []map[string]any{{"location": "local", "dataChannelName": "more"}}})
	if st != http.StatusTooManyRequests {
		t.Fatalf("datachannels/new past the quota: want 429, got %d %s", st, raw)
	}
	st, out, raw := e.dcCall("PUT", appA, secretA, sid, "close", map[string]any{"dataChannels": []map[string]any{{"id": ids[0]}}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "" {
		t.Fatalf("datachannels/close past the quota: want 200, got %d %s", st, raw)
	}
	in.waitClosed(t, "closed publication")
}

func TestEstablishAnswersARealChromeOffer(t *testing.T) {
	raw, err := os.ReadFile("testdata/chrome-offer-datachannel.sdp")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{})
	sid := e.newSession(appA, secretA)
	st, resp, body := e.establish(appA, secretA, sid, &session.SessionDescription{Type: "offer", SDP: string(raw)})
	if st != http.StatusOK || resp.RequiresImmediateRenegotiation || resp.SessionDescription == nil || resp.SessionDescription.Type != "answer" {
		t.Fatalf("establish with Chrome's offer: %d %s", st, body)
	}
	ans := resp.SessionDescription.SDP
	for _, want := range []string{"m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:0", "a=sctp-port:5000", "a=ice-lite"} {
		if !strings.Contains(ans, want) {
			t.Errorf("answer lacks %q:\n%s", want, ans)
		}
	}
	if setup := regexp.MustCompile(`a=setup:(\w+)`).FindStringSubmatch(ans); setup == nil || setup[1] == "actpass" {
		t.Errorf("answer must pick a DTLS role: %v", setup)
	}
}

func TestEstablishGivesApplicationAFreshMid(t *testing.T) {
	e := newEnv(t, envOpt{})
	// An endpoint whose mids are not 0..n-1 (as after Chrome recycles an
	// m-line): two sections, one of them already called "2".
	p := newPeer(t)
	audio, _ := p.addTrack(webrtc.RTPCodecTypeAudio, "mic", webrtc.RTPTransceiverDirectionSendonly)
	video, _ := p.addTrack(webrtc.RTPCodecTypeVideo, "cam", webrtc.RTPTransceiverDirectionSendonly)
	if err := audio.SetMid("2"); err != nil {
		t.Fatal(err)
	}
	if err := video.SetMid("0"); err != nil {
		t.Fatal(err)
	}
	sid := e.newSession(appA, secretA)
	resp := e.tracksNew(appA, secretA, sid, session.TracksRequest{SessionDescription: p.offer(),
		Tracks: []session.TrackObject{{Location: "local", Mid: "2", TrackName: "mic"}, {Location: "local", Mid: "0", TrackName: "cam"}}})
	p.setAnswer(resp.SessionDescription)
	p.waitConnected()

	opened := serverEvents(p)
	st, est, raw := e.establish(appA, secretA, sid, nil)
	if st != http.StatusOK {
		t.Fatalf("establish: %d %s", st, raw)
	}
	if mids := midsOf(est.SessionDescription.SDP); !slices.Equal(mids, []string{"2", "0", "3"}) {
		t.Fatalf("establish offer mids %v, want [2 0 3]: existing kept, application on a free mid", mids)
	}
	e.renegotiate(appA, secretA, sid, p.answer(est.SessionDescription))
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("server-events not received")
	}
	ids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "local", "dataChannelName": "x"})
	pubDC, _ := negotiated(t, p, "x", ids[0], nil)
	sub, subSID := dcSession(t, e, appA, secretA)
	subIDs := e.dcOK("POST", appA, secretA, subSID, "new", map[string]any{"location": "remote", "sessionId": sid, "dataChannelName": "x"})
	_, in := negotiated(t, sub, "x", subIDs[0], nil)
	sendText(t, pubDC, "fresh mid")
	in.waitMsg(t, "fresh mid", true)
	// A later SFU offer keeps every mid.
	pulled := e.tracksNew(appA, secretA, sid, session.TracksRequest{Tracks: []session.TrackObject{{Location: "remote", SessionID: sid, TrackName: "mic"}}})
	if mids := midsOf(pulled.SessionDescription.SDP); len(mids) != 4 || !slices.Equal(mids[:3], []string{"2", "0", "3"}) || mids[3] != "4" {
		t.Fatalf("re-offer mids %v, want [2 0 3 4]", mids)
	}
}
