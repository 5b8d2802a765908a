// Command capture-offers regenerates the real Chrome SDP offers under
// sfu/testdata with Debian's headless chromium and its fake camera and
// microphone:
//
//	go run ./test/e2e/capture-offers            # writes sfu/testdata/chrome-offer-*.sdp
//	go run ./test/e2e/capture-offers -out DIR
//
// The offers are what a browser sends to the Calls API:
//
//   - chrome-offer-av.sdp: sendonly audio then video, one transceiver per
//     getUserMedia track, as the demo page and the Calls "echo" example push.
//   - chrome-offer-simulcast.sdp: sendonly audio, then video with three
//     simulcast encodings (rid a, b, c; full, half and quarter resolution),
//     as the Calls "echo-simulcast" example pushes.
//   - chrome-offer-datachannel.sdp: only an m=application section, from a
//     non-negotiated "server-events" channel, as the DataChannel example
//     offers on sessions/new.
//
// Each is pc.localDescription.sdp right after setLocalDescription, which is
// what the clients send (no trickled candidates yet). Lines end in CRLF as
// Chrome writes them.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-rtc/switchboard/test/e2e/browser"
)

// offerJS builds one offer in the page. It runs inside an async function, so
// it may await and must return the SDP string.
var offers = []struct{ file, js string }{
	{"chrome-offer-av.sdp", `
		const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: {ideal: 640}, height: {ideal: 480}}});
		const pc = new RTCPeerConnection({iceServers: [], bundlePolicy: 'max-bundle'});
		for (const t of stream.getTracks()) pc.addTransceiver(t, {direction: 'sendonly'});
		await pc.setLocalDescription(await pc.createOffer());
		return pc.localDescription.sdp;`},
	{"chrome-offer-simulcast.sdp", `
		const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: {ideal: 1280}, height: {ideal: 720}}});
		const pc = new RTCPeerConnection({iceServers: [], bundlePolicy: 'max-bundle'});
		pc.addTransceiver(stream.getAudioTracks()[0], {direction: 'sendonly'});
		pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly', sendEncodings: [
			{rid: 'a', maxBitrate: 1300000, scaleResolutionDownBy: 1},
			{rid: 'b', maxBitrate: 500000, scaleResolutionDownBy: 2},
			{rid: 'c', maxBitrate: 150000, scaleResolutionDownBy: 4},
		]});
		await pc.setLocalDescription(await pc.createOffer());
		return pc.localDescription.sdp;`},
	{"chrome-offer-datachannel.sdp", `
		const pc = new RTCPeerConnection({iceServers: [], bundlePolicy: 'max-bundle'});
		pc.createDataChannel('server-events');
		await pc.setLocalDescription(await pc.createOffer());
		return pc.localDescription.sdp;`},
}

func main() {
	out := flag.String("out", "sfu/testdata", "directory to write the chrome-offer-*.sdp files into")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "capture-offers:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// getUserMedia needs a secure context: serve a blank page on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>capture</title>")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	dir, err := os.MkdirTemp("", "switchboard-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bctx, closeBrowser, err := browser.New(ctx, dir)
	if err != nil {
		return err
	}
	defer closeBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		return fmt.Errorf("open page: %w", err)
	}
	version, err := chromedp.Run(bctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		return err
	}
	for _, o := range offers {
		sdp, err := chromedp.Run(bctx, chromedp.Evaluate[string]("(async () => {"+o.js+"})()", chromedp.EvalAwaitPromise))
		if err != nil {
			return fmt.Errorf("%s: %w", o.file, err)
		}
		if !strings.HasPrefix(sdp, "v=0\r\n") {
			return fmt.Errorf("%s: not an SDP: %.60q", o.file, sdp)
		}
		path := filepath.Join(out, o.file)
		if err := os.WriteFile(path, []byte(sdp), 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d bytes)\n", path, len(sdp))
	}
	fmt.Printf("browser: %s\n", version)
	return nil
}
