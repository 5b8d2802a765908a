package sfu_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromium finds Debian's chromium; `make test` installs it. Like the demo
// browser test, a missing browser fails unless SWITCHBOARD_SKIP_BROWSER=1.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("SWITCHBOARD_SKIP_BROWSER") == "1" {
		t.Skip("SWITCHBOARD_SKIP_BROWSER=1 and no chromium")
	}
	t.Fatal("chromium not found (run `make chromium`, or set SWITCHBOARD_SKIP_BROWSER=1 to skip browser tests)")
	return ""
}

// simulcastPage publishes the fake camera in three layers (a = full size,
// b = half, c = quarter) like echo-simulcast, pulls it on a second session
// with preferredRid "c", then moves to "a" and "b" with tracks/update. For
// each step it records the width of the decoded frames, then POSTs the log.
const simulcastPage = `<!doctype html><html><body><video id=v autoplay muted playsinline></video><script>
const base = location.origin + "/v1/apps/%s";
const H = {Authorization: "Bearer %s"};
const api = async (method, path, body) => (await fetch(base + path, {method, headers: H, body: body ? JSON.stringify(body) : undefined})).json();
const report = (r) => fetch("/result", {method: "POST", body: JSON.stringify(r)});
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
(async () => {
  const log = {steps: []};
  try {
    const cam = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
    const pub = new RTCPeerConnection();
    const t = pub.addTransceiver(cam.getVideoTracks()[0], {direction: "sendonly", sendEncodings: [
      {rid: "a", scaleResolutionDownBy: 1}, {rid: "b", scaleResolutionDownBy: 2}, {rid: "c", scaleResolutionDownBy: 4}]});
    await pub.setLocalDescription(await pub.createOffer());
    const s1 = (await api("POST", "/sessions/new")).sessionId;
    const r1 = await api("POST", "/sessions/" + s1 + "/tracks/new", {sessionDescription: pub.localDescription,
      tracks: [{location: "local", mid: t.mid, trackName: "cam"}]});
    await pub.setRemoteDescription(r1.sessionDescription);
    const sub = new RTCPeerConnection();
    sub.ontrack = e => { document.getElementById("v").srcObject = new MediaStream([e.track]); };
    const s2 = (await api("POST", "/sessions/new")).sessionId;
    const r2 = await api("POST", "/sessions/" + s2 + "/tracks/new", {tracks: [{location: "remote", sessionId: s1, trackName: "cam", simulcast: {preferredRid: "c"}}]});
    const mid = r2.tracks[0].mid;
    await sub.setRemoteDescription(r2.sessionDescription);
    await sub.setLocalDescription(await sub.createAnswer());
    await api("PUT", "/sessions/" + s2 + "/renegotiate", {sessionDescription: sub.localDescription});
    const video = async () => {
      let v = {};
      (await sub.getStats()).forEach(x => { if (x.type === "inbound-rtp" && x.kind === "video") v = x; });
      return {width: v.frameWidth || 0, frames: v.framesDecoded || 0};
    };
    // Wait until the decoded width is the one wanted and frames keep coming.
    const settle = async (rid, want) => {
      const until = Date.now() + 15000;
      let s = await video();
      while (Date.now() < until) {
        await sleep(250);
        const n = await video();
        if (n.width === want && n.frames > s.frames + 5) { s = n; break; }
        if (n.width !== want) s = n;
      }
      log.steps.push({rid, width: s.width, frames: s.frames});
    };
    await settle("c", 320);
    for (const [rid, want] of [["a", 1280], ["b", 640], ["c", 320]]) {
      await api("PUT", "/sessions/" + s2 + "/tracks/update", {tracks: [{location: "remote", mid, sessionId: s1, trackName: "cam", simulcast: {preferredRid: rid}}]});
      await settle(rid, want);
    }
  } catch (e) { log.error = String(e); }
  await report(log);
})();
</script></body></html>`

// runChromePage serves page (with %s placeholders for the app ID and
// secret) next to the API, opens it in headless chromium and decodes what
// the page POSTs to /result into out.
func runChromePage(t *testing.T, e *env, page string, out any) {
	t.Helper()
	bin := chromium(t)
	got := make(chan []byte, 1)
	mux := http.NewServeMux()
	mux.Handle("/v1/", e.srv.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, page, appA, secretA)
	})
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		select {
		case got <- raw:
		default:
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--no-default-browser-check", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--user-data-dir="+t.TempDir(),
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
		"--autoplay-policy=no-user-gesture-required",
		"--disable-features=MediaRouter,DialMediaRouteProvider,WebRtcHideLocalIpsWithMdns,Translate,OptimizationHints",
		"--remote-debugging-port=0", srv.URL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // chromium and its helpers, all started here
		_ = cmd.Wait()
	}()
	select {
	case raw := <-got:
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("page reported %q: %v", raw, err)
		}
	case <-ctx.Done():
		t.Fatalf("no result from the page within 90 s; chromium said:\n%s", log.String())
	}
}

func TestChromeSimulcastFollowsPreferredRid(t *testing.T) {
	e := newEnv(t, envOpt{})
	type step struct {
		Rid    string
		Width  int
		Frames int
	}
	var result struct {
		Steps []step
		Error string
	}
	runChromePage(t, e, simulcastPage, &result)
	if result.Error != "" || len(result.Steps) != 4 {
		t.Fatalf("page: %+v", result)
	}
	want := []step{{"c", 320, 0}, {"a", 1280, 0}, {"b", 640, 0}, {"c", 320, 0}}
	prev := 0
	for i, s := range result.Steps {
		if s.Rid != want[i].Rid || s.Width != want[i].Width || s.Frames <= prev {
			t.Fatalf("step %d: decoded %+v, want rid %s at width %d with frames still decoding; all steps %+v",
				i, s, want[i].Rid, want[i].Width, result.Steps)
		}
		prev = s.Frames
	}
	t.Logf("decoded widths per preferredRid: %+v", result.Steps)
}

// partytracksPage uses one PeerConnection for everything, as partytracks
// does: publish microphone and camera, pull both back on the same session,
// then close the pulled video and the published camera the partytracks way
// (transceiver.stop(), then tracks/close with force:false and the offer,
// then setRemoteDescription of the answer, which must not throw).
const partytracksPage = `<!doctype html><html><body><script>
const base = location.origin + "/v1/apps/%s";
const H = {Authorization: "Bearer %s"};
const api = async (method, path, body) => (await fetch(base + path, {method, headers: H, body: body ? JSON.stringify(body) : undefined})).json();
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
(async () => {
  const log = {};
  try {
    const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    const pc = new RTCPeerConnection();
    const ta = pc.addTransceiver(media.getAudioTracks()[0], {direction: "sendonly"});
    const tv = pc.addTransceiver(media.getVideoTracks()[0], {direction: "sendonly"});
    await pc.setLocalDescription(await pc.createOffer());
    const sid = (await api("POST", "/sessions/new")).sessionId;
    const r1 = await api("POST", "/sessions/" + sid + "/tracks/new", {sessionDescription: pc.localDescription,
      tracks: [{location: "local", mid: ta.mid, trackName: "mic"}, {location: "local", mid: tv.mid, trackName: "cam"}]});
    await pc.setRemoteDescription(r1.sessionDescription);
    const r2 = await api("POST", "/sessions/" + sid + "/tracks/new", {tracks: [
      {location: "remote", sessionId: sid, trackName: "mic"}, {location: "remote", sessionId: sid, trackName: "cam"}]});
    await pc.setRemoteDescription(r2.sessionDescription);
    await pc.setLocalDescription(await pc.createAnswer());
    await api("PUT", "/sessions/" + sid + "/renegotiate", {sessionDescription: pc.localDescription});
    log.mids = r2.tracks.map(t => t.mid);
    const inbound = async (kind) => {
      let v = {};
      (await pc.getStats()).forEach(x => { if (x.type === "inbound-rtp" && x.kind === kind) v = x; });
      return v;
    };
    for (let i = 0; i < 60 && !((await inbound("video")).framesDecoded > 5); i++) await sleep(250);
    log.framesBefore = (await inbound("video")).framesDecoded || 0;

    const pulledVideo = pc.getTransceivers().find(t => t.mid === r2.tracks[1].mid);
    const pulledMid = pulledVideo.mid;
    pulledVideo.stop();
    await pc.setLocalDescription(await pc.createOffer());
    const r3 = await api("PUT", "/sessions/" + sid + "/tracks/close", {tracks: [{mid: pulledMid}], force: false, sessionDescription: pc.localDescription});
    await pc.setRemoteDescription(r3.sessionDescription);
    log.closePulled = r3.tracks;

    const camMid = tv.mid;
    tv.stop();
    await pc.setLocalDescription(await pc.createOffer());
    const r4 = await api("PUT", "/sessions/" + sid + "/tracks/close", {tracks: [{mid: camMid}], force: false, sessionDescription: pc.localDescription});
    await pc.setRemoteDescription(r4.sessionDescription);
    log.closeCam = r4.tracks;

    const a1 = (await inbound("audio")).packetsReceived || 0;
    await sleep(1000);
    log.audioPackets = ((await inbound("audio")).packetsReceived || 0) - a1;
    log.state = await api("GET", "/sessions/" + sid);
    log.signaling = pc.signalingState;
  } catch (e) { log.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(log)});
})();
</script></body></html>`

func TestChromeOnePeerConnectionPublishesPullsAndClosesLikePartytracks(t *testing.T) {
	e := newEnv(t, envOpt{})
	var r struct {
		Error        string
		Mids         []string
		FramesBefore int
		ClosePulled  []map[string]string
		CloseCam     []map[string]string
		AudioPackets int
		State        struct {
			Tracks []map[string]string
		}
		Signaling string
	}
	runChromePage(t, e, partytracksPage, &r)
	if r.Error != "" {
		t.Fatalf("page failed: %+v", r)
	}
	if strings.Join(r.Mids, ",") != "2,3" || r.FramesBefore <= 5 {
		t.Fatalf("pull of own tracks: mids %v, %d frames decoded", r.Mids, r.FramesBefore)
	}
	if len(r.ClosePulled) != 1 || r.ClosePulled[0]["errorCode"] != "" || len(r.CloseCam) != 1 || r.CloseCam[0]["errorCode"] != "" {
		t.Fatalf("close results: %v %v", r.ClosePulled, r.CloseCam)
	}
	if r.AudioPackets < 20 || r.Signaling != "stable" {
		t.Fatalf("after closing video: %d audio packets in 1 s, signaling %s", r.AudioPackets, r.Signaling)
	}
	status := map[string]string{}
	for _, tr := range r.State.Tracks {
		status[tr["location"]+" "+tr["trackName"]] = tr["status"]
	}
	want := map[string]string{"local mic": "active", "local cam": "inactive", "remote mic": "active", "remote cam": "inactive"}
	for k, v := range want {
		if status[k] != v {
			t.Fatalf("GET session: %v, want %v", status, want)
		}
	}
}

// whipWhepPage is the whip-whep-server pattern: publish with autoDiscover
// (server-chosen track names), then subscribe with a recvonly client offer
// (pull into client-offered m-lines), no renegotiation on either side.
const whipWhepPage = `<!doctype html><html><body><script>
const base = location.origin + "/v1/apps/%s";
const H = {Authorization: "Bearer %s"};
const api = async (method, path, body) => (await fetch(base + path, {method, headers: H, body: body ? JSON.stringify(body) : undefined})).json();
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
(async () => {
  const log = {};
  try {
    const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    const pub = new RTCPeerConnection();
    media.getTracks().forEach(t => pub.addTransceiver(t, {direction: "sendonly"}));
    await pub.setLocalDescription(await pub.createOffer());
    const s1 = (await api("POST", "/sessions/new")).sessionId;
    const r1 = await api("POST", "/sessions/" + s1 + "/tracks/new", {autoDiscover: true, sessionDescription: pub.localDescription});
    await pub.setRemoteDescription(r1.sessionDescription);
    log.published = r1.tracks;

    const sub = new RTCPeerConnection();
    sub.addTransceiver("audio", {direction: "recvonly"});
    sub.addTransceiver("video", {direction: "recvonly"});
    await sub.setLocalDescription(await sub.createOffer());
    const s2 = (await api("POST", "/sessions/new")).sessionId;
    const r2 = await api("POST", "/sessions/" + s2 + "/tracks/new", {sessionDescription: sub.localDescription,
      tracks: r1.tracks.map(t => ({location: "remote", sessionId: s1, trackName: t.trackName, kind: t.kind}))});
    await sub.setRemoteDescription(r2.sessionDescription);
    log.pulled = r2.tracks;
    log.renegotiate = r2.requiresImmediateRenegotiation;
    const inbound = async (kind) => {
      let v = {};
      (await sub.getStats()).forEach(x => { if (x.type === "inbound-rtp" && x.kind === kind) v = x; });
      return v;
    };
    for (let i = 0; i < 60 && !((await inbound("video")).framesDecoded > 5); i++) await sleep(250);
    log.frames = (await inbound("video")).framesDecoded || 0;
    log.audioPackets = (await inbound("audio")).packetsReceived || 0;
  } catch (e) { log.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(log)});
})();
</script></body></html>`

func TestChromeWhipAutoDiscoverAndWhepPullIntoOffer(t *testing.T) {
	e := newEnv(t, envOpt{})
	var r struct {
		Error        string
		Published    []map[string]string
		Pulled       []map[string]string
		Renegotiate  bool
		Frames       int
		AudioPackets int
	}
	runChromePage(t, e, whipWhepPage, &r)
	if r.Error != "" || len(r.Published) != 2 || len(r.Pulled) != 2 || r.Renegotiate {
		t.Fatalf("page: %+v", r)
	}
	for i, p := range r.Pulled {
		if p["errorCode"] != "" || p["mid"] != fmt.Sprint(i) || p["trackName"] != r.Published[i]["trackName"] {
			t.Fatalf("pulled %d: %v (published %v)", i, p, r.Published)
		}
	}
	if r.Frames <= 5 || r.AudioPackets == 0 {
		t.Fatalf("media did not decode: %d frames, %d audio packets", r.Frames, r.AudioPackets)
	}
}
