package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-rtc/switchboard/test/e2e/browser"
)

// requireChromium fails the test when chromium is missing, unless the
// caller opted out explicitly with SWITCHBOARD_SKIP_BROWSER=1.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := browser.Path(); err != nil {
		if os.Getenv("SWITCHBOARD_SKIP_BROWSER") == "1" {
			t.Skipf("SWITCHBOARD_SKIP_BROWSER=1: %v", err)
		}
		t.Fatalf("%v (or set SWITCHBOARD_SKIP_BROWSER=1 to skip the browser tests)", err)
	}
}

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s: %v", root, err)
	}
	return root
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildSwitchboard builds the binary under test once per test run.
func buildSwitchboard(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "switchboard-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "switchboard")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/switchboard")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/switchboard: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// devServer is a running `switchboard dev` process.
type devServer struct {
	cmd     *exec.Cmd
	demoURL string
	baseURL string
	appIDs  []string
	mu      sync.Mutex
	logs    bytes.Buffer // stdout and stderr, for failure messages
	exited  chan struct{}
	waitErr error // set before exited is closed
}

func (d *devServer) output() string {
	if d == nil {
		return "(external server)"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

type lockedWriter struct{ d *devServer }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	return w.d.logs.Write(p)
}

var (
	demoLine = regexp.MustCompile(`(?m)^\s*demo page\s+(http://\S+)`)
	baseLine = regexp.MustCompile(`(?m)^\s*base URL\s+(http://\S+)`)
	idLine   = regexp.MustCompile(`(?m)^\s*app ID\s+([0-9a-f]{32})\s*$`)
	readyMsg = "switchboard dev is ready"
)

// startDev runs `switchboard dev` on free loopback ports with the sample
// CallsApps and waits until it prints that it is ready.
func startDev(t *testing.T, bin, stateDir string) *devServer {
	t.Helper()
	return startDevWithApps(t, bin, filepath.Join(repoRoot(t), "config", "samples"), stateDir)
}

func startDevWithApps(t *testing.T, bin, appsDir, stateDir string) *devServer {
	t.Helper()
	d := &devServer{exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "dev",
		"--listen", "127.0.0.1:0",
		"--udp-port", "0",
		"--apps", appsDir,
		"--state-dir", stateDir)
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = lockedWriter{d}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start switchboard dev: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			_, _ = lockedWriter{d}.Write(append(sc.Bytes(), '\n'))
			if !signalled && strings.Contains(sc.Text(), readyMsg) {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	select {
	case <-ready:
	case <-d.exited:
		t.Fatalf("switchboard dev exited before it was ready: %v\n%s", d.waitErr, d.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("switchboard dev not ready after 60 s:\n%s", d.output())
	}
	out := d.output()
	if m := demoLine.FindStringSubmatch(out); m != nil {
		d.demoURL = m[1]
	}
	if m := baseLine.FindStringSubmatch(out); m != nil {
		d.baseURL = m[1]
	}
	for _, m := range idLine.FindAllStringSubmatch(out, -1) {
		d.appIDs = append(d.appIDs, m[1])
	}
	if d.demoURL == "" || d.baseURL == "" || len(d.appIDs) == 0 {
		t.Fatalf("switchboard dev did not print a demo page, base URL and app ID:\n%s", out)
	}
	return d
}

// stop sends SIGINT, as Ctrl-C does, and requires a clean exit.
func (d *devServer) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("interrupt switchboard dev: %v", err)
	}
	select {
	case <-d.exited:
		if d.waitErr != nil {
			t.Errorf("switchboard dev after Ctrl-C: %v\n%s", d.waitErr, d.output())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("switchboard dev still running 20 s after Ctrl-C:\n%s", d.output())
	}
}

// pageState is what the demo page exposes as window.switchboardDemo, plus
// the receive statistics of its pulling PeerConnection.
type pageState struct {
	Phase             string   `json:"phase"`
	Error             string   `json:"error"`
	DCError           string   `json:"dcError"`
	DCOpen            bool     `json:"dcOpen"`
	Received          []string `json:"received"`
	FramesDecoded     int      `json:"framesDecoded"`
	FrameWidth        int      `json:"frameWidth"`
	FrameHeight       int      `json:"frameHeight"`
	AudioPackets      int      `json:"audioPackets"`
	PushSessionID     string   `json:"pushSessionId"`
	PullSessionID     string   `json:"pullSessionId"`
	PullICEConnection string   `json:"pullIce"`
}

const readStateJS = `(async () => {
	const d = window.switchboardDemo;
	if (!d) return {phase: 'page loading'};
	const s = {phase: d.phase, error: d.error, dcError: d.dcError, dcOpen: d.dcOpen, received: d.received,
		pushSessionId: d.pushSessionId, pullSessionId: d.pullSessionId,
		framesDecoded: 0, frameWidth: 0, frameHeight: 0, audioPackets: 0, pullIce: ''};
	if (d.pullPC) {
		s.pullIce = d.pullPC.iceConnectionState;
		(await d.pullPC.getStats()).forEach((r) => {
			if (r.type !== 'inbound-rtp') return;
			if (r.kind === 'video') {
				s.framesDecoded += r.framesDecoded || 0;
				s.frameWidth = r.frameWidth || 0;
				s.frameHeight = r.frameHeight || 0;
			}
			if (r.kind === 'audio') s.audioPackets += r.packetsReceived || 0;
		});
	}
	return s;
})()`

func readState(ctx context.Context) (pageState, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[pageState](readStateJS, chromedp.EvalAwaitPromise))
}

// waitState polls the page until ok returns true, the page reports that it
// failed, or the timeout passes, and returns the last state read.
func waitState(ctx context.Context, timeout time.Duration, ok func(pageState) bool) (pageState, bool) {
	deadline := time.Now().Add(timeout)
	var last pageState
	for {
		s, err := readState(ctx)
		if err == nil {
			last = s
			if ok(s) {
				return s, true
			}
			if s.Phase == "failed" {
				return s, false
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDemoPagePublishesPullsAndEchoes(t *testing.T) {
	requireChromium(t)
	var dev *devServer
	demoURL := os.Getenv("SWITCHBOARD_E2E_DEMO_URL")
	if demoURL == "" {
		dev = startDev(t, buildSwitchboard(t), t.TempDir())
		demoURL = dev.demoURL
	} else {
		t.Logf("SWITCHBOARD_E2E_DEMO_URL: testing the demo page at %s", demoURL)
	}

	root, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx, closeBrowser, err := browser.New(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer closeBrowser()

	opened := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(demoURL)); err != nil {
		t.Fatalf("open %s: %v", demoURL, err)
	}

	t.Run("PulledVideoDecodesFramesWithin10s", func(t *testing.T) {
		s, ok := waitState(ctx, 10*time.Second-time.Since(opened), func(s pageState) bool { return s.FramesDecoded > 0 })
		if !ok {
			t.Fatalf("pulled video decoded no frame within 10 s of opening the page: %+v\nserver output:\n%s", s, dev.output())
		}
		t.Logf("first frames decoded %.1f s after opening the page: %d frames, %dx%d",
			time.Since(opened).Seconds(), s.FramesDecoded, s.FrameWidth, s.FrameHeight)
		if s.PushSessionID == s.PullSessionID || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(s.PullSessionID) {
			t.Errorf("sessions: push %q, pull %q; want two distinct 32-hex session IDs", s.PushSessionID, s.PullSessionID)
		}
		if s.FrameWidth == 0 || s.FrameHeight == 0 {
			t.Errorf("decoded video has no frame size: %+v", s)
		}
	})

	t.Run("PulledAudioArrives", func(t *testing.T) {
		if s, ok := waitState(ctx, 10*time.Second, func(s pageState) bool { return s.AudioPackets > 0 }); !ok {
			t.Fatalf("no audio packet received on the pulling session: %+v", s)
		}
	})

	t.Run("DataChannelMessageEchoesToSubscriber", func(t *testing.T) {
		s, _ := waitState(ctx, 20*time.Second, func(s pageState) bool { return s.DCOpen || s.DCError != "" })
		if !s.DCOpen {
			t.Fatalf("DataChannels did not open: %q (phase %s)", s.DCError, s.Phase)
		}
		token := make([]byte, 8)
		_, _ = rand.Read(token)
		msg := "e2e " + hex.EncodeToString(token)
		sent, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf("window.switchboardDemo.send(%q)", msg)))
		if err != nil || !sent {
			t.Fatalf("send on the publisher channel: sent=%v err=%v", sent, err)
		}
		s, ok := waitState(ctx, 5*time.Second, func(s pageState) bool {
			for _, r := range s.Received {
				if r == msg {
					return true
				}
			}
			return false
		})
		if !ok {
			t.Fatalf("message %q sent on session 1 did not arrive on session 2 within 5 s; received %q", msg, s.Received)
		}
	})

	// SWITCHBOARD_E2E_SCREENSHOT=page.png keeps a picture of the page as the
	// test left it, for a person to look at.
	if shot := os.Getenv("SWITCHBOARD_E2E_SCREENSHOT"); shot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(shot, png, 0o644)
		}
		if err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
	if dev != nil {
		dev.stop(t)
	}
}

var secretLine = regexp.MustCompile(`(?m)^\s*secret\s+([0-9a-f]{64})\s*$`)

func TestDevKeepsAppIDAndSecretAcrossRestarts(t *testing.T) {
	bin := buildSwitchboard(t)
	state := t.TempDir()

	first := startDev(t, bin, state)
	firstSecret := secretLine.FindStringSubmatch(first.output())
	first.stop(t)
	second := startDev(t, bin, state)
	secondSecret := secretLine.FindStringSubmatch(second.output())
	second.stop(t)

	if firstSecret == nil || secondSecret == nil {
		t.Fatalf("no 64-hex secret printed:\n%s\n---\n%s", first.output(), second.output())
	}
	if strings.Join(first.appIDs, ",") != strings.Join(second.appIDs, ",") || firstSecret[1] != secondSecret[1] {
		t.Errorf("credentials changed across a restart: app IDs %v then %v, secret equal %v",
			first.appIDs, second.appIDs, firstSecret[1] == secondSecret[1])
	}
	if _, err := os.Stat(filepath.Join(state, "apps.json")); err != nil {
		t.Errorf("state file not kept in --state-dir: %v", err)
	}
}
