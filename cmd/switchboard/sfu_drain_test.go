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

// SIGTERM to a running `switchboard sfu` with a live session: the pod
// turns unready, tells the hub it drains (with its deadline) at once,
// keeps serving the session, refuses new ones (no peer to place them on),
// and exits as soon as the client has left, long before the 60 s timeout.
func TestSIGTERMDrainsTheSFUProcess(t *testing.T) {
	const appA, secret, drainTimeout = "0123456789abcdef0123456789abcdef", "secret-a", 60 * time.Second
	ledger := hub.NewLedger(hub.LedgerOptions{})
	ledger.SetApp(appA, hub.DefaultBilling)
	ledger.SetReady()
	hubSrv := httptest.NewServer((&hub.Server{Ledger: ledger, Configs: hub.NewConfigStore(), Token: "hub-token"}).Handler())
	defer hubSrv.Close()
	sum := sha256.Sum256([]byte(secret))
	cfg := &config.Pod{Version: "v1", Serial: 1, Pool: "default/p", Hub: hubSrv.URL, HubToken: "hub-token",
		Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478, DrainTimeoutSeconds: int(drainTimeout / time.Second)},
		Apps: []config.App{{ID: appA, Name: "default/a", SecretSHA256: hex.EncodeToString(sum[:]),
			Sessions: config.SessionLimit{ReconnectWindowSeconds: 1}}}}
	path := filepath.Join(t.TempDir(), config.FileName)
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	cmd := exec.Command(os.Args[0], "sfu", "--config", path, "--listen", httpAddr,
		"--udp-ip", "127.0.0.1", "--udp-port", fmt.Sprint(freePort(t, "udp")), "--advertise", "127.0.0.1", "--pod-name", "sfu-0")
	cmd.Env = append(os.Environ(), sfuProcessEnv+"=1")
	var stderr procLog
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sfu process log:\n%s", stderr.String())
		}
	}()
	base := "http://" + httpAddr
	within(t, 60*time.Second, "sfu process ready", func() error {
		if st, body := apiCall(t, "GET", base+"/ready", "", nil); st != http.StatusOK {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})

	// A client connects a session.
	pc := loopbackPeer(t)
	var created struct {
		SessionID          string `json:"sessionId"`
		SessionDescription struct {
			SDP string `json:"sdp"`
		} `json:"sessionDescription"`
	}
	st, body := apiCall(t, "POST", base+"/v1/apps/"+appA+"/sessions/new", secret,
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
	sessionURL := base + "/v1/apps/" + appA + "/sessions/" + created.SessionID

	sigAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "/ready answers 503", func() error {
		if st, body := apiCall(t, "GET", base+"/ready", "", nil); st != http.StatusServiceUnavailable || !strings.Contains(string(body), `"draining":true`) {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	within(t, 3*time.Second, "the hub sees the pod draining with its deadline", func() error {
		p := ledger.Pods("default/p")
		if len(p) != 1 || !p[0].Draining || p[0].DrainDeadline == nil {
			return fmt.Errorf("pods %+v", p)
		}
		if want := sigAt.Add(drainTimeout); p[0].DrainDeadline.Before(want.Add(-5*time.Second)) || p[0].DrainDeadline.After(want.Add(5*time.Second)) {
			return fmt.Errorf("deadline %v, want about %v", p[0].DrainDeadline, want)
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
	case err := <-exited:
		t.Fatalf("the process exited during the call: %v", err)
	case <-time.After(time.Second):
	}

	// The client leaves; the session ends after its 1 s reconnect window
	// and the process stops.
	leftAt := time.Now()
	_ = pc.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit within 20 s of the session ending (drain timeout 60 s)")
	}
	t.Logf("process exited %v after the client left, %v after SIGTERM", time.Since(leftAt).Round(time.Millisecond), time.Since(sigAt).Round(time.Millisecond))
	log := stderr.String()
	for _, want := range []string{`"msg":"drain started","sessions":1`, `"msg":"drain finished","sessions":0`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %s", want)
		}
	}
	if p := ledger.Pods("default/p"); len(p) != 1 || !p[0].Stopped || !p[0].Draining || p[0].Sessions != 0 {
		t.Fatalf("pod status after the final report: %+v, want stopped, draining, no session", p)
	}
}
