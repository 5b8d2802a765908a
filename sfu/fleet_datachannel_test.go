package sfu_test

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/fleet"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// dcSubscriber is an endpoint subscribed to a published channel.
type dcSubscriber struct {
	pod *env
	sid string
	id  uint16
	dc  *webrtc.DataChannel // the endpoint's side
	in  *inbox
}

// subscribeDC subscribes a new session on pod e to (pubSID, name).
func subscribeDC(t *testing.T, e *env, pubSID, name string) dcSubscriber {
	t.Helper()
	p, sid := dcSession(t, e, appA, secretA)
	ids := e.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "remote", "sessionId": pubSID, "dataChannelName": name})
	dc, in := negotiated(t, p, name, ids[0], nil)
	return dcSubscriber{pod: e, sid: sid, id: ids[0], dc: dc, in: in}
}

func TestDataChannelSubscriptionOnAnotherPodReceivesEveryMessageInOrder(t *testing.T) {
	pods := newFleet(t, 3, false)
	a, b, c := pods[0], pods[1], pods[2]
	pub, pubSID := dcSession(t, a, appA, secretA)
	ids := a.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "feed"})
	pubDC, _ := negotiated(t, pub, "feed", ids[0], nil)

	subs := []dcSubscriber{subscribeDC(t, b, pubSID, "feed"), subscribeDC(t, b, pubSID, "feed"), subscribeDC(t, c, pubSID, "feed")}
	if sending, _ := a.srv.ChannelRelayStreams(); sending != 2 {
		t.Errorf("pod A sends %d DataChannel relay streams, want 2 (one to B, one to C)", sending)
	}
	if _, receiving := b.srv.ChannelRelayStreams(); receiving != 1 {
		t.Errorf("pod B receives %d DataChannel relay streams for 2 subscribers, want 1", receiving)
	}
	// The relay endpoint is for pods only: without the fleet token, an app
	// secret gets the answer of an unknown path.
	code, _, body := rawCall(t, a.http.URL, "GET", fleet.RelayPrefix+appA+"/"+pubSID+"/datachannels/feed", secretA, "")
	if code != http.StatusNotFound || !strings.Contains(string(body), "not an endpoint") {
		t.Fatalf("DataChannel relay without the fleet token: %d %s", code, body)
	}
	st := b.state(appA, secretA, subs[0].sid)
	if got := dcStatus(st, "remote", subs[0].id); got != session.StatusActive {
		t.Fatalf("subscription on B: status %q, want active (%+v)", got, st.DataChannels)
	}
	for _, d := range st.DataChannels {
		if d.Location == "remote" && d.ID == subs[0].id && (d.SessionID != pubSID || d.DataChannelName != "feed") {
			t.Fatalf("subscription on B lists %+v, want session %s channel feed", d, pubSID)
		}
	}

	// Text and binary messages, one larger than a relay frame; the
	// subscribers must see exactly this sequence.
	big := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff}, 12_000) // 60 KB
	var want []string
	sent := 0
	for i := 0; i < 300; i++ {
		m := fmt.Sprintf("message %03d %s", i, strings.Repeat("x", i%50))
		if i%3 == 0 {
			sendBinary(t, pubDC, []byte(m))
			want = append(want, "bin:"+m)
		} else {
			sendText(t, pubDC, m)
			want = append(want, "str:"+m)
		}
		sent += len(m)
		if i == 150 {
			sendBinary(t, pubDC, big)
			want = append(want, "bin:"+string(big))
			sent += len(big)
		}
		for pubDC.BufferedAmount() > 1<<20 {
			time.Sleep(time.Millisecond)
		}
	}
	for i, s := range subs {
		waitFor(t, 20*time.Second, fmt.Sprintf("subscriber %d has all %d messages", i, len(want)), func() bool { return len(s.in.all()) >= len(want) })
		if got := s.in.all(); !slices.Equal(got, want) {
			t.Fatalf("subscriber %d: %d messages, first difference at %d", i, len(got), firstDifference(got, want))
		}
	}

	// Metering: the publisher's bytes are ingress on A; the relay is not
	// egress on A nor ingress on B; B and C count what they sent to their
	// own subscribers.
	waitFor(t, 5*time.Second, "egress counted on B and C", func() bool {
		egB, _ := egressOf(b)
		egC, _ := egressOf(c)
		return egB == uint64(2*sent) && egC == uint64(sent)
	})
	egA, inA := egressOf(a)
	egB, inB := egressOf(b)
	if egA != 0 || inA != uint64(sent) {
		t.Errorf("pod A: egress %d (want 0: relays are internal), ingress %d (want the %d bytes published)", egA, inA, sent)
	}
	if egB != uint64(2*sent) || inB != 0 {
		t.Errorf("pod B: egress %d (want %d for 2 subscribers), ingress %d (want 0)", egB, 2*sent, inB)
	}

	// One subscriber on B leaves: the other still receives over the same relay.
	b.dcOK("PUT", appA, secretA, subs[0].sid, "close", map[string]any{"id": subs[0].id})
	subs[0].in.waitClosed(t, "closed subscription on B")
	sendText(t, pubDC, "after one left")
	subs[1].in.waitMsg(t, "after one left", true)
	subs[2].in.waitMsg(t, "after one left", true)
	if subs[0].in.has("after one left", true) {
		t.Fatal("a closed subscription on B still receives")
	}

	// The publisher closes its channel on A: the subscriptions on B and C
	// end as they would on one pod, and every relay stream is gone.
	a.dcOK("PUT", appA, secretA, pubSID, "close", map[string]any{"id": ids[0]})
	subs[1].in.waitClosed(t, "subscriber on B after the publisher closed")
	subs[2].in.waitClosed(t, "subscriber on C after the publisher closed")
	if s := c.state(appA, secretA, subs[2].sid); dcStatus(s, "remote", subs[2].id) != session.StatusInactive {
		t.Fatalf("subscription on C after the publication closed: %+v", s.DataChannels)
	}
	waitFor(t, 10*time.Second, "DataChannel relay streams gone", func() bool {
		sa, _ := a.srv.ChannelRelayStreams()
		_, rb := b.srv.ChannelRelayStreams()
		_, rc := c.srv.ChannelRelayStreams()
		return sa == 0 && rb == 0 && rc == 0
	})
}

func firstDifference(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// holdsReply asks datachannels/update (no change) whether the session's
// subscription to (pubSID, name) holds canReply.
func holdsReply(t *testing.T, e *env, sid, pubSID, name string) bool {
	t.Helper()
	st, out, raw := e.dcCall("PUT", appA, secretA, sid, "update", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": name}}})
	if st != http.StatusOK || len(out.DataChannels) != 1 || out.DataChannels[0].CanReply == nil {
		t.Fatalf("datachannels/update: %d %s", st, raw)
	}
	return *out.DataChannels[0].CanReply
}

func TestDataChannelReplyFromAnotherPodReachesPublisher(t *testing.T) {
	pods := newFleet(t, 3, false)
	a, b, c := pods[0], pods[1], pods[2]
	pub, pubSID := dcSession(t, a, appA, secretA)
	ids := a.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "chat"})
	pubDC, pubIn := negotiated(t, pub, "chat", ids[0], nil)

	// B subscribes with canReply, C without.
	pb, sidB := dcSession(t, b, appA, secretA)
	st, out, raw := b.dcCall("POST", appA, secretA, sidB, "new", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "chat", "canReply": true}}})
	if st != http.StatusOK || len(out.DataChannels) != 1 || out.DataChannels[0].ID == nil ||
		out.DataChannels[0].CanReply == nil || !*out.DataChannels[0].CanReply {
		t.Fatalf("subscribe with canReply across pods: want the grant, got %d %s", st, raw)
	}
	dcB, inB := negotiated(t, pb, "chat", *out.DataChannels[0].ID, nil)
	subC := subscribeDC(t, c, pubSID, "chat")

	sendText(t, pubDC, "question?")
	inB.waitMsg(t, "question?", true)
	subC.in.waitMsg(t, "question?", true)

	var replied int
	sendText(t, dcB, "answer from B")
	replied += len("answer from B")
	pubIn.waitMsg(t, "answer from B", true)
	big := bytes.Repeat([]byte{9, 8, 7}, 10_000)
	sendBinary(t, dcB, big)
	replied += len(big)
	pubIn.waitMsg(t, string(big), false)

	// C takes the grant: B loses it (told by A through the relay) and
	// its messages stop reaching the publisher; C's start.
	if !holdsReply(t, b, sidB, pubSID, "chat") {
		t.Fatal("B's subscription does not hold canReply")
	}
	st, out, raw = c.dcCall("PUT", appA, secretA, subC.sid, "update", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "chat", "canReply": true}}})
	if st != http.StatusOK || out.DataChannels[0].CanReply == nil || !*out.DataChannels[0].CanReply {
		t.Fatalf("grant to C: %d %s", st, raw)
	}
	waitFor(t, 10*time.Second, "B told it lost canReply", func() bool { return !holdsReply(t, b, sidB, pubSID, "chat") })
	sendText(t, dcB, "B without the grant")
	sendText(t, subC.dc, "answer from C")
	replied += len("answer from C")
	pubIn.waitMsg(t, "answer from C", true)
	// B's message was sent before C's; give its relay path time anyway.
	time.Sleep(300 * time.Millisecond)
	if pubIn.has("B without the grant", true) {
		t.Fatal("a subscriber on another pod that lost canReply still reached the publisher")
	}

	// The publisher's pod counts the replies as egress to its publisher,
	// and nothing for the relays.
	waitFor(t, 5*time.Second, "reply egress on A", func() bool { eg, _ := egressOf(a); return eg == uint64(replied) })

	// A channel that is not published there is not found, as on one pod.
	st, out, raw = b.dcCall("POST", appA, secretA, sidB, "new", map[string]any{"dataChannels": []map[string]any{
		{"location": "remote", "sessionId": pubSID, "dataChannelName": "missing"}}})
	if st != http.StatusOK || out.DataChannels[0].ErrorCode != "not_found_track_error" || out.DataChannels[0].ID != nil {
		t.Fatalf("subscribe to a missing channel on another pod: %d %s", st, raw)
	}
}

func TestKillingPublisherPodEndsDataChannelSubscriptionsOnOtherPods(t *testing.T) {
	// Injected clocks: no background sweep goroutine, so every relay
	// goroutine left on B would be a leak.
	pods := newFleet(t, 2, true)
	a, b := pods[0], pods[1]
	pub, pubSID := dcSession(t, a, appA, secretA)
	ids := a.dcOK("POST", appA, secretA, pubSID, "new", map[string]any{"location": "local", "dataChannelName": "feed"})
	pubDC, _ := negotiated(t, pub, "feed", ids[0], nil)
	sub := subscribeDC(t, b, pubSID, "feed")
	sendText(t, pubDC, "before")
	sub.in.waitMsg(t, "before", true)

	start := time.Now()
	if err := a.srv.Close(); err != nil {
		t.Fatal(err)
	}
	a.http.Close()
	sub.in.waitClosed(t, "subscriber on B after pod A died")
	t.Logf("subscription on B closed %v after pod A closed", time.Since(start).Round(time.Millisecond))
	if s := b.state(appA, secretA, sub.sid); dcStatus(s, "remote", sub.id) != session.StatusInactive {
		t.Fatalf("subscription on B after pod A died: %+v", s.DataChannels)
	}
	waitFor(t, 10*time.Second, "DataChannel relay gone on B", func() bool {
		_, receiving := b.srv.ChannelRelayStreams()
		return receiving == 0
	})
	left := func() []string {
		return append(relayGoroutines(), goroutinesIn("session.(*Manager).remoteDCPub")...)
	}
	if !waitUntil(10*time.Second, func() bool { return len(left()) == 0 }) {
		t.Fatalf("relay goroutines left:\n%s", strings.Join(left(), "\n\n"))
	}
	// B still serves DataChannels.
	p, sid := dcSession(t, b, appA, secretA)
	again := b.dcOK("POST", appA, secretA, sid, "new", map[string]any{"location": "local", "dataChannelName": "feed"})
	if dc, _ := negotiated(t, p, "feed", again[0], nil); dc.ReadyState() != webrtc.DataChannelStateOpen {
		t.Fatal("new channel on B not open")
	}
}

// waitUntil polls cond until it holds or d passed.
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// goroutinesIn lists goroutines whose stack mentions fn.
func goroutinesIn(fn string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
	}
	return out
}
