package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"

	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/turn"
)

// syncBuffer collects the dev server's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	devBaseLine  = regexp.MustCompile(`(?m)^\s*base URL\s+(http://\S+)/v1$`)
	devTURNLine  = regexp.MustCompile(`(?m)^TURN server on (127\.0\.0\.1:\d+) \(UDP and TCP\)$`)
	devKeyLine   = regexp.MustCompile(`(?m)^\s*TURN key\s+([0-9a-f]{32})$`)
	devTokenLine = regexp.MustCompile(`(?m)^\s*TURN token\s+(\S+)$`)
)

// startDevInProcess runs `switchboard dev` with the sample CallsApp on free
// loopback ports and returns its output once it is ready.
func startDevInProcess(t *testing.T, extra ...string) (string, <-chan error) {
	t.Helper()
	sample, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "calls_v1alpha1_callsapp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	apps := t.TempDir()
	if err := os.WriteFile(filepath.Join(apps, "app.yaml"), sample, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{"--listen", "127.0.0.1:0", "--udp-port", "0", "--apps", apps, "--state-dir", t.TempDir()}, extra...)
	go func() { done <- runDevTo(ctx, args, out) }()
	stopped := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("switchboard dev exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("switchboard dev did not stop within 15 s of its context ending")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), devReady) {
		select {
		case err := <-done:
			t.Fatalf("switchboard dev exited before it was ready: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("switchboard dev not ready after 30 s:\n%s", out.String())
		}
	}
	go func() { stopped <- <-done }()
	return out.String(), done
}

func devPost(t *testing.T, u, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

// stunBinding sends a Binding request over network to addr and returns the
// XOR-MAPPED-ADDRESS of the success response.
func stunBinding(t *testing.T, network, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial TURN %s %s: %v", network, addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no Binding response over %s from %s: %v", network, addr, err)
	}
	res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := res.Decode(); err != nil {
		t.Fatalf("Binding response over %s: %v", network, err)
	}
	var mapped stun.XORMappedAddress
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("Binding over %s answered %s", network, res.Type)
	}
	if err := mapped.GetFrom(res); err != nil {
		t.Fatalf("Binding response over %s without XOR-MAPPED-ADDRESS: %v", network, err)
	}
	if mapped.String() != conn.LocalAddr().String() {
		t.Fatalf("Binding over %s mapped %s, want our address %s", network, mapped, conn.LocalAddr())
	}
	return mapped.String()
}

func devAllocate(t *testing.T, server, username, password string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: username, Password: password, Realm: turn.DefaultRealm, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		return err
	}
	return relay.Close()
}

// `switchboard dev` runs a TURN server beside the API: it prints the sample
// app's TURN key and token, answers generate-ice-servers with URLs of that
// server, the server answers STUN Binding on UDP and TCP and accepts the
// credential, and a revoke through the API is refused by the server at once.
func TestDevServesTURNCredentialsAndRelay(t *testing.T) {
	out, _ := startDevInProcess(t, "--turn-port", "0")
	base, turnAddr, key, token := devBaseLine.FindStringSubmatch(out), devTURNLine.FindStringSubmatch(out),
		devKeyLine.FindStringSubmatch(out), devTokenLine.FindStringSubmatch(out)
	if base == nil || turnAddr == nil || key == nil || token == nil {
		t.Fatalf("dev did not print its base URL, TURN server, TURN key and token:\n%s", out)
	}
	if !strings.Contains(out, "/v1/turn/keys/"+key[1]+"/credentials/generate-ice-servers") {
		t.Errorf("dev output has no generate-ice-servers example:\n%s", out)
	}

	st, raw := devPost(t, base[1]+"/v1/turn/keys/"+key[1]+"/credentials/generate-ice-servers", token[1])
	if st != http.StatusCreated {
		t.Fatalf("generate-ice-servers: %d %s", st, raw)
	}
	var body struct {
		ICEServers []turn.ICEServer `json:"iceServers"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("generate-ice-servers body %s: %v", raw, err)
	}
	addr := turnAddr[1]
	want := []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}
	if len(body.ICEServers) != 2 || strings.Join(body.ICEServers[0].URLs, ",") != "stun:"+addr ||
		strings.Join(body.ICEServers[1].URLs, ",") != strings.Join(want, ",") || body.ICEServers[1].Username == "" {
		t.Fatalf("iceServers = %+v, want stun:%s then %v with a credential", body.ICEServers, addr, want)
	}

	stunBinding(t, "udp4", addr)
	stunBinding(t, "tcp4", addr)

	cred := body.ICEServers[1]
	if err := devAllocate(t, addr, cred.Username, cred.Credential); err != nil {
		t.Fatalf("dev TURN refused the credential its API issued: %v", err)
	}
	st, raw = devPost(t, base[1]+"/v1/turn/keys/"+key[1]+"/credentials/"+url.PathEscape(cred.Username)+"/revoke", token[1])
	if st != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	if err := devAllocate(t, addr, cred.Username, cred.Credential); err == nil {
		t.Fatal("dev TURN still allocates for a revoked username")
	}
}

// --turn-port -1 runs dev without TURN: no TURN lines, and the credentials
// API answers the app's valid TURN token with 503 turn_unavailable.
func TestDevWithoutTURN(t *testing.T) {
	stateDir := t.TempDir()
	out, _ := startDevInProcess(t, "--turn-port", "-1", "--state-dir", stateDir)
	if devTURNLine.MatchString(out) || devKeyLine.MatchString(out) || strings.Contains(out, "turn/keys") {
		t.Fatalf("dev printed TURN details with TURN disabled:\n%s", out)
	}
	base := devBaseLine.FindStringSubmatch(out)
	if base == nil {
		t.Fatalf("no base URL:\n%s", out)
	}
	state, err := openDevState(stateDir)
	if err != nil || len(state.Apps) != 1 {
		t.Fatalf("dev state: %v %+v", err, state)
	}
	var creds render.AppCredentials
	for _, data := range state.Apps {
		raw := map[string][]byte{}
		for k, v := range data {
			raw[k] = []byte(v)
		}
		creds = render.CredentialsFromSecretData(raw)
	}
	st, raw := devPost(t, base[1]+"/v1/turn/keys/"+creds.TURNKeyID+"/credentials/generate-ice-servers", creds.TURNKeyToken)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"turn_unavailable"`) {
		t.Fatalf("generate-ice-servers without TURN: %d %s, want 503 turn_unavailable", st, raw)
	}
}
