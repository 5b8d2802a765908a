package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
)

// sfuProcessEnv makes the test binary run as the switchboard binary
// itself (main, with its signal handling) before any test starts, so the
// process test below signals a real `switchboard sfu` process without a
// separate build.
const sfuProcessEnv = "SWITCHBOARD_TEST_RUN_MAIN"

func init() {
	if os.Getenv(sfuProcessEnv) == "1" {
		main()
		os.Exit(0)
	}
}

// procLog collects a child process's stderr.
type procLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *procLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *procLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func within(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s within %v: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sfuProcess is a running `switchboard sfu` child process.
type sfuProcess struct {
	cmd    *exec.Cmd
	base   string
	log    *procLog
	exited chan error
}

// startSFUProcess runs `switchboard sfu` with the config at path on
// httpAddr (and a free UDP port on 127.0.0.1), waits until /ready answers
// 200, and kills it at the end of the test if it is still running.
func startSFUProcess(t *testing.T, path, httpAddr, podName string, extra ...string) *sfuProcess {
	t.Helper()
	args := append([]string{"sfu", "--config", path, "--listen", httpAddr, "--udp-ip", "127.0.0.1",
		"--udp-port", fmt.Sprint(freePort(t, "udp")), "--advertise", "127.0.0.1", "--pod-name", podName}, extra...)
	p := &sfuProcess{cmd: exec.Command(os.Args[0], args...), base: "http://" + httpAddr, log: &procLog{}, exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), sfuProcessEnv+"=1")
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		err := p.cmd.Wait()
		close(done)
		p.exited <- err
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", podName, p.log.String())
		}
	})
	within(t, 60*time.Second, podName+" ready", func() error {
		if st, body := apiCall(t, "GET", p.base+"/ready", "", nil); st != http.StatusOK {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	return p
}

// connectClient opens a session with a connected DataChannel client
// through base and returns the client and the session ID.
func connectClient(t *testing.T, base, app, secret string) (*webrtc.PeerConnection, string) {
	t.Helper()
	pc := loopbackPeer(t)
	var created struct {
		SessionID          string `json:"sessionId"`
		SessionDescription struct {
			SDP string `json:"sdp"`
		} `json:"sessionDescription"`
	}
	st, body := apiCall(t, "POST", base+"/v1/apps/"+app+"/sessions/new", secret,
		map[string]any{"sessionDescription": map[string]string{"type": "offer", "sdp": pc.LocalDescription().SDP}})
	if st != http.StatusCreated || json.Unmarshal(body, &created) != nil {
		t.Fatalf("sessions/new: %d %s", st, body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: created.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	within(t, 15*time.Second, "client connected", func() error {
		if s := pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
	return pc, created.SessionID
}

// podConfig writes a pod configuration with one app (1 s reconnect
// window) reporting to hubURL, and returns its path.
func podConfig(t *testing.T, hubURL, app, secret string, drain time.Duration, fleet *config.Fleet) string {
	t.Helper()
	sum := sha256.Sum256([]byte(secret))
	cfg := &config.Pod{Version: "v1", Serial: 1, Pool: "default/p", Hub: hubURL, HubToken: "hub-token",
		Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478, DrainTimeoutSeconds: int(drain / time.Second)},
		Apps: []config.App{{ID: app, Name: "default/a", SecretSHA256: hex.EncodeToString(sum[:]),
			Sessions: config.SessionLimit{ReconnectWindowSeconds: 1}}},
		Fleet: fleet}
	path := filepath.Join(t.TempDir(), config.FileName)
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestHub(t *testing.T, app string) (*hub.Ledger, string) {
	t.Helper()
	ledger := hub.NewLedger(hub.LedgerOptions{})
	ledger.SetApp(app, hub.DefaultBilling)
	ledger.SetReady()
	srv := httptest.NewServer((&hub.Server{Ledger: ledger, Configs: hub.NewConfigStore(), Token: "hub-token"}).Handler())
	t.Cleanup(srv.Close)
	return ledger, srv.URL
}

// SIGTERM to a running `switchboard sfu` with a live session: the pod
// turns unready, tells the hub it drains (with its deadline) at once,
// keeps serving the session, refuses new ones (no peer to place them on),
// and exits as soon as the client has left, long before the 60 s timeout.
func TestSIGTERMDrainsTheSFUProcess(t *testing.T) {
	const appA, secret, drainTimeout = "0123456789abcdef0123456789abcdef", "secret-a", 60 * time.Second
	ledger, hubURL := newTestHub(t, appA)
	path := podConfig(t, hubURL, appA, secret, drainTimeout, nil)
	p := startSFUProcess(t, path, fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp")), "sfu-0")
	base := p.base
	pc, sid := connectClient(t, base, appA, secret)
	sessionURL := base + "/v1/apps/" + appA + "/sessions/" + sid

	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "/ready answers 503", func() error {
		if st, body := apiCall(t, "GET", base+"/ready", "", nil); st != http.StatusServiceUnavailable || !strings.Contains(string(body), `"draining":true`) {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	within(t, 3*time.Second, "the hub sees the pod draining with its deadline", func() error {
		pods := ledger.Pods("default/p")
		if len(pods) != 1 || !pods[0].Draining || pods[0].DrainDeadline == nil {
			return fmt.Errorf("pods %+v", pods)
		}
		if want := sigAt.Add(drainTimeout); pods[0].DrainDeadline.Before(want.Add(-5*time.Second)) || pods[0].DrainDeadline.After(want.Add(5*time.Second)) {
			return fmt.Errorf("deadline %v, want about %v", pods[0].DrainDeadline, want)
		}
		return nil
	})
	t.Logf("hub saw the drain %v after SIGTERM", time.Since(sigAt).Round(time.Millisecond))
	if st, body := apiCall(t, "GET", sessionURL, secret, nil); st != http.StatusOK {
		t.Fatalf("the live session while draining: %d %s", st, body)
	}
	if st, body := apiCall(t, "POST", base+"/v1/apps/"+appA+"/sessions/new", secret, nil); st != http.StatusServiceUnavailable ||
		!strings.Contains(string(body), "temporarily_unavailable_error") {
		t.Fatalf("new session on a draining pod without peers: %d %s", st, body)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\nswitchboard_draining 1\n", "\nswitchboard_sessions{app=\"" + appA + "\"} 1\n"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Fatalf("/metrics while draining lacks %q", strings.TrimSpace(want))
		}
	}
	select {
	case err := <-p.exited:
		t.Fatalf("the process exited during the call: %v", err)
	case <-time.After(time.Second):
	}

	// The client leaves; the session ends after its 1 s reconnect window
	// and the process stops.
	leftAt := time.Now()
	_ = pc.Close()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit within 20 s of the session ending (drain timeout 60 s)")
	}
	t.Logf("process exited %v after the client left, %v after SIGTERM", time.Since(leftAt).Round(time.Millisecond), time.Since(sigAt).Round(time.Millisecond))
	log := p.log.String()
	for _, want := range []string{`"msg":"drain started","sessions":1`, `"msg":"drain finished","sessions":0`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %s", want)
		}
	}
	if p := ledger.Pods("default/p"); len(p) != 1 || !p[0].Stopped || !p[0].Draining || p[0].Sessions != 0 {
		t.Fatalf("pod status after the final report: %+v, want stopped, draining, no session", p)
	}
}

// Two `switchboard sfu` processes in one fleet: after SIGTERM, pod 0
// places new sessions on pod 1 (the client gets the normal 201 from pod 0),
// keeps its own call until the client leaves, and every client request is
// counted once in the hub, whichever pod served it.
func TestSIGTERMPodPlacesNewSessionsOnItsPeer(t *testing.T) {
	const appA, secret = "0123456789abcdef0123456789abcdef", "secret-a"
	ledger, hubURL := newTestHub(t, appA)
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp")), fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))}
	path := podConfig(t, hubURL, appA, secret, 60*time.Second, &config.Fleet{Token: "fleet-token-0123456789abcdef",
		Peers: []config.FleetPeer{{Ordinal: 0, Address: addrs[0]}, {Ordinal: 1, Address: addrs[1]}}})
	pods := []*sfuProcess{
		startSFUProcess(t, path, addrs[0], "p-sfu-0", "--pod-ordinal", "0"),
		startSFUProcess(t, path, addrs[1], "p-sfu-1", "--pod-ordinal", "1"),
	}
	requests := 0 // client API calls, each to be counted once
	pc, sid := connectClient(t, pods[0].base, appA, secret)
	requests++
	if o, ok := fleet.Owner(sid); !ok || o != 0 {
		t.Fatalf("first session on pod %d, want 0 (a tie stays on the entry pod)", o)
	}
	if err := pods[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "pod 0 unready", func() error {
		if st, body := apiCall(t, "GET", pods[0].base+"/ready", "", nil); st != http.StatusServiceUnavailable {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	var placed struct {
		SessionID string `json:"sessionId"`
	}
	st, body := apiCall(t, "POST", pods[0].base+"/v1/apps/"+appA+"/sessions/new", secret, nil)
	requests++
	if st != http.StatusCreated || json.Unmarshal(body, &placed) != nil {
		t.Fatalf("new session through the draining pod: %d %s", st, body)
	}
	if o, _ := fleet.Owner(placed.SessionID); o != 1 {
		t.Fatalf("new session through the draining pod 0 placed on %d, want 1", o)
	}
	for _, p := range pods {
		st, body := apiCall(t, "GET", p.base+"/v1/apps/"+appA+"/sessions/"+placed.SessionID, secret, nil)
		requests++
		if st != http.StatusOK {
			t.Fatalf("placed session through %s: %d %s", p.base, st, body)
		}
	}
	if st, body := apiCall(t, "GET", pods[1].base+"/v1/apps/"+appA+"/sessions/"+sid, secret, nil); st != http.StatusOK {
		t.Fatalf("draining pod's session through pod 1: %d %s", st, body)
	}
	requests++
	_ = pc.Close()
	select {
	case err := <-pods[0].exited:
		if err != nil {
			t.Fatalf("pod 0 exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pod 0 did not exit within 20 s of its session ending")
	}
	// Pod 1 drains too: its placed session never connected and expires.
	if err := pods[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-pods[1].exited:
		if err != nil {
			t.Fatalf("pod 1 exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pod 1 did not exit")
	}
	u, _ := ledger.Usage(appA)
	if u.Totals.Requests != int64(requests) {
		t.Fatalf("the hub counted %d requests from both pods, the client made %d", u.Totals.Requests, requests)
	}
}
