package sfu_test

import (
	"strings"
	"testing"
)

// echoDataChannelsPage runs both flows of Cloudflare's echo-datachannels
// example in Chrome. Session 1 opens its own non-negotiated "server-events"
// and sends its offer to establish (answered at once); session 2 asks the
// SFU for an offer and receives "server-events" through ondatachannel.
// Session 1 publishes "chat"; session 2 subscribes with canReply and
// answers. Every outcome is POSTed back.
const echoDataChannelsPage = `<!doctype html><html><body><script>
const base = location.origin + "/v1/apps/%s";
const H = {Authorization: "Bearer %s"};
const api = async (method, path, body) => (await fetch(base + path, {method, headers: H, body: body ? JSON.stringify(body) : undefined})).json();
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const opened = (ch) => new Promise((res, rej) => {
  if (ch.readyState === "open") return res();
  ch.onopen = () => res();
  setTimeout(() => rej(new Error(ch.label + " not open after 10 s")), 10000);
});
const est = {dataChannel: {location: "remote", dataChannelName: "server-events"}};
(async () => {
  const log = {pubGot: [], subGot: []};
  try {
    const pc1 = new RTCPeerConnection();
    const own = pc1.createDataChannel("server-events");
    await pc1.setLocalDescription(await pc1.createOffer());
    const s1 = (await api("POST", "/sessions/new")).sessionId;
    const e1 = await api("POST", "/sessions/" + s1 + "/datachannels/establish", Object.assign({sessionDescription: pc1.localDescription}, est));
    log.establish1 = {renegotiate: e1.requiresImmediateRenegotiation, type: e1.sessionDescription.type, id: e1.dataChannel.id};
    await pc1.setRemoteDescription(e1.sessionDescription);
    await opened(own);
    own.send("dropped by the SFU");

    const pc2 = new RTCPeerConnection();
    const inband = new Promise(res => { pc2.ondatachannel = (ev) => res(ev.channel); });
    const s2 = (await api("POST", "/sessions/new")).sessionId;
    const e2 = await api("POST", "/sessions/" + s2 + "/datachannels/establish", est);
    log.establish2 = {renegotiate: e2.requiresImmediateRenegotiation, type: e2.sessionDescription.type, id: e2.dataChannel.id};
    await pc2.setRemoteDescription(e2.sessionDescription);
    await pc2.setLocalDescription(await pc2.createAnswer());
    await api("PUT", "/sessions/" + s2 + "/renegotiate", {sessionDescription: pc2.localDescription});
    const se = await inband;
    await opened(se);
    log.inband = {label: se.label, id: se.id};

    const p = await api("POST", "/sessions/" + s1 + "/datachannels/new", {dataChannels: [{location: "local", dataChannelName: "chat"}]});
    const pubCh = pc1.createDataChannel("chat", {negotiated: true, id: p.dataChannels[0].id});
    pubCh.binaryType = "arraybuffer";
    pubCh.onmessage = (ev) => log.pubGot.push(typeof ev.data === "string" ? "str:" + ev.data : "bin:" + Array.from(new Uint8Array(ev.data)).join(","));
    const s = await api("POST", "/sessions/" + s2 + "/datachannels/new", {dataChannels: [{location: "remote", sessionId: s1, dataChannelName: "chat", canReply: true}]});
    const subCh = pc2.createDataChannel("chat", {negotiated: true, id: s.dataChannels[0].id});
    subCh.binaryType = "arraybuffer";
    subCh.onmessage = (ev) => log.subGot.push(typeof ev.data === "string" ? "str:" + ev.data : "bin:" + Array.from(new Uint8Array(ev.data)).join(","));
    log.ids = {pub: p.dataChannels[0].id, sub: s.dataChannels[0].id, canReply: s.dataChannels[0].canReply};
    await Promise.all([opened(pubCh), opened(subCh)]);

    pubCh.send("hello");
    pubCh.send(new Uint8Array([1, 2, 255]));
    for (let i = 0; i < 40 && log.subGot.length < 2; i++) await sleep(100);
    subCh.send("pong");
    for (let i = 0; i < 40 && log.pubGot.length < 1; i++) await sleep(100);
    log.state2 = await api("GET", "/sessions/" + s2);
  } catch (e) { log.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(log)});
})();
</script></body></html>`

func TestChromeEchoDataChannelsBothEstablishFlows(t *testing.T) {
	e := newEnv(t, envOpt{})
	type est struct {
		Renegotiate bool
		Type        string
		ID          int
	}
	var r struct {
		Error      string
		Establish1 est
		Establish2 est
		Inband     struct {
			Label string
			ID    int
		}
		IDs struct {
			Pub, Sub int
			CanReply bool
		}
		PubGot, SubGot []string
		State2         struct {
			DataChannels []map[string]any
		}
	}
	runChromePage(t, e, echoDataChannelsPage, &r)
	if r.Error != "" {
		t.Fatalf("page failed: %+v", r)
	}
	if r.Establish1.Renegotiate || r.Establish1.Type != "answer" || !r.Establish2.Renegotiate || r.Establish2.Type != "offer" {
		t.Fatalf("establish: with offer %+v, without offer %+v", r.Establish1, r.Establish2)
	}
	if r.Inband.Label != "server-events" {
		t.Fatalf("in-band channel from the SFU: %+v", r.Inband)
	}
	if r.IDs.Pub < 2 || r.IDs.Sub < 2 || !r.IDs.CanReply {
		t.Fatalf("allocated ids: %+v", r.IDs)
	}
	if strings.Join(r.SubGot, " ") != "str:hello bin:1,2,255" {
		t.Fatalf("subscriber received %q, want the text then the binary message", r.SubGot)
	}
	if strings.Join(r.PubGot, " ") != "str:pong" {
		t.Fatalf("publisher received %q, want the canReply answer only", r.PubGot)
	}
	var listed bool
	for _, d := range r.State2.DataChannels {
		if d["dataChannelName"] == "server-events" && d["id"] == float64(r.Inband.ID) && d["status"] == "active" {
			listed = true
		}
	}
	if !listed {
		t.Fatalf("GET session 2 must list server-events with the id Chrome sees (%d): %v", r.Inband.ID, r.State2.DataChannels)
	}
	if r.Establish2.ID != r.Inband.ID {
		t.Fatalf("establish without offer announced server-events id %d, Chrome got %d", r.Establish2.ID, r.Inband.ID)
	}
}
