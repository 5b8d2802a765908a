package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/turn"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// turnClient allocates on server with a credential; the allocation is
// released when the test ends.
func turnClient(t *testing.T, server, username, password string) (*pionturn.Client, net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: username, Password: password, Realm: turn.DefaultRealm, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	return c, relay, err
}

// A credential revoked through one pod's credentials API (a `switchboard
// sfu` pod, wired as in production) is refused by both TURN pods of the
// pool within 5 s, and the allocations it already held on them are
// closed: the revocation travels pod → hub → every TURN pod's long-poll.
// With the hub gone the pods keep refusing it, and a TURN pod started
// then refuses it too, from the persisted list in its config mount.
func TestRevokeThroughOnePodIsRefusedByEveryTURNPod(t *testing.T) {
	const appA, appSecret, apiToken, hubToken = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "app-secret", "turn-api-token", "hub-token"
	ledger := hub.NewLedger(hub.LedgerOptions{})
	ledger.SetApp(appA, hub.DefaultBilling)
	ledger.SetReady()
	configs := hub.NewConfigStore()
	var hubHandler atomic.Pointer[http.Handler] // nil: the manager is down
	setHub := func(h http.Handler) { hubHandler.Store(&h) }
	setHub((&hub.Server{Ledger: ledger, Configs: configs, Token: hubToken}).Handler())
	hubSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := hubHandler.Load(); h != nil && *h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "manager down", http.StatusBadGateway)
	}))
	defer hubSrv.Close()

	turnPorts := []int{freeTCPUDPPort(t), freeTCPUDPPort(t)}
	pod := &config.Pod{
		Version: "v1", Pool: "default/p", Hub: hubSrv.URL, HubToken: hubToken,
		Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478},
		TURN: config.TURN{Enabled: true, Realm: turn.DefaultRealm, AllowedPeerCIDRs: []string{"127.0.0.1/32"}, URLs: []string{
			fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", turnPorts[0]), fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", turnPorts[1])}},
		Apps: []config.App{{ID: appA, Name: "default/a", SecretSHA256: sha256Hex(appSecret),
			TURNKey: &config.TURNKey{ID: "k1", TokenSHA256: sha256Hex(apiToken), HMACSecret: "hmac-secret"}}},
	}
	pod.Default()
	if err := pod.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := configs.Set(pod.Pool, pod, 1); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(pod)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var done []chan error
	defer func() {
		cancel()
		for _, d := range done {
			select {
			case err := <-d:
				if err != nil {
					t.Errorf("pod returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("pod did not stop")
			}
		}
	}()
	for _, port := range turnPorts {
		d := make(chan error, 1)
		done = append(done, d)
		go func() {
			d <- runTURN(ctx, []string{"--config", cfgPath, "--listen-ip", "127.0.0.1", "--udp", fmt.Sprint(port),
				"--tcp", "0", "--tls", "0", "--drain-timeout", "0s", "--public-ip", "127.0.0.1", "--health-listen", ""})
		}()
	}
	httpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	d := make(chan error, 1)
	done = append(done, d)
	go func() {
		d <- runSFU(ctx, []string{"--config", cfgPath, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--udp-port", fmt.Sprint(udpPort), "--advertise", "127.0.0.1", "--log-level", "warn", "--pod-name", "sfu-0"})
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d/v1/turn/keys/k1/credentials/", httpPort)

	// A credential from the API, and a live allocation with it on each
	// TURN pod, each with a peer that has a permission and gets data.
	var ice struct {
		ICEServers []turn.ICEServer `json:"iceServers"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, api+"generate-ice-servers", nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			err = json.NewDecoder(res.Body).Decode(&ice)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusCreated && err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("generate-ice-servers never answered 201: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cred := ice.ICEServers[len(ice.ICEServers)-1]
	type live struct {
		server string
		peer   *net.UDPConn // connected to the allocation's relay address
	}
	var allocs []live
	for _, port := range turnPorts {
		server := fmt.Sprintf("127.0.0.1:%d", port)
		var relay net.PacketConn
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, relay, err = turnClient(t, server, cred.Username, cred.Credential); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("allocate on %s: %v", server, err)
			}
		}
		peer, err := net.DialUDP("udp4", nil, relay.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil { // permission + data
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := peer.Read(buf); err != nil || string(buf[:n]) != "hello" {
			t.Fatalf("relay on %s did not work before the revocation: %q %v", server, buf[:n], err)
		}
		allocs = append(allocs, live{server, peer})
	}

	// Revoke through the SFU pod.
	sent := time.Now()
	req, _ := http.NewRequest(http.MethodPost, api+url.PathEscape(cred.Username)+"/revoke", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	revoked := time.Now()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke answered %d", res.StatusCode)
	}

	for i, a := range allocs {
		// The live allocation's relay socket is closed: the peer's
		// datagrams bounce (ICMP port unreachable, ECONNREFUSED on its
		// connected socket).
		var closedAfter time.Duration
		buf := make([]byte, 64)
		for closedAfter == 0 {
			if time.Since(revoked) > 5*time.Second {
				t.Fatalf("TURN pod %d (%s) still holds the revoked allocation 5 s after the 204", i+1, a.server)
			}
			_, _ = a.peer.Write([]byte("ping"))
			_ = a.peer.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if _, err := a.peer.Read(buf); errors.Is(err, syscall.ECONNREFUSED) {
				closedAfter = time.Since(revoked)
			}
		}
		// A new Allocate with the revoked credential is refused.
		if _, _, err := turnClient(t, a.server, cred.Username, cred.Credential); err == nil {
			t.Fatalf("TURN pod %d accepted an Allocate with the revoked credential", i+1)
		}
		refusedAfter := time.Since(revoked)
		if refusedAfter > 5*time.Second {
			t.Fatalf("TURN pod %d refused the revoked credential only %s after the 204", i+1, refusedAfter)
		}
		t.Logf("TURN pod %d: live allocation closed within %s of the 204 (the revoke call took %s), Allocate refused %s after the 204", i+1,
			closedAfter, revoked.Sub(sent).Round(time.Microsecond), refusedAfter.Round(time.Microsecond))
	}
	if got := configs.Revocations().List(pod.Pool); len(got) != 1 || got[0].Username != cred.Username {
		t.Fatalf("hub holds %+v, want the revoked username", got)
	}

	// A fresh credential of the same key (legacy generate) for the checks
	// below: it proves a pod serves while the revoked one is refused.
	req, _ = http.NewRequest(http.MethodPost, api+"generate", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var legacy struct {
		ICEServers turn.ICEServer `json:"iceServers"`
	}
	if err := json.NewDecoder(res.Body).Decode(&legacy); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("generate: %d %v", res.StatusCode, err)
	}
	_ = res.Body.Close()
	fresh := legacy.ICEServers
	// servesOnlyFresh: the pod at server allocates for the fresh
	// credential (waiting up to 10 s for it to start) and refuses the
	// revoked one.
	servesOnlyFresh := func(server, when string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, _, err = turnClient(t, server, fresh.Username, fresh.Credential); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: a fresh credential was refused on %s: %v", when, server, err)
		}
		if _, _, err := turnClient(t, server, cred.Username, cred.Credential); err == nil {
			t.Fatalf("%s: %s accepted the revoked credential", when, server)
		}
	}

	// The hub goes away (manager restart): the pods keep refusing, and a
	// TURN pod that starts meanwhile finds the list the manager persisted
	// in the config Secret, mounted beside its configuration file.
	persisted := configs.Revocations().Snapshot(pod.Pool)
	if err := os.WriteFile(filepath.Join(dir, hub.RevocationsFileName), persisted, 0o600); err != nil {
		t.Fatal(err)
	}
	setHub(nil)
	hubSrv.CloseClientConnections() // end the parked long-polls
	port3 := freeTCPUDPPort(t)
	d3 := make(chan error, 1)
	done = append(done, d3)
	go func() {
		d3 <- runTURN(ctx, []string{"--config", cfgPath, "--listen-ip", "127.0.0.1", "--udp", fmt.Sprint(port3),
			"--tcp", "0", "--tls", "0", "--drain-timeout", "0s", "--public-ip", "127.0.0.1", "--health-listen", ""})
	}()
	servers := []string{allocs[0].server, allocs[1].server, fmt.Sprintf("127.0.0.1:%d", port3)}
	for _, server := range servers {
		servesOnlyFresh(server, "hub down")
	}

	// The manager is back with a store restored from what it persisted.
	restarted := hub.NewConfigStore()
	if err := restarted.Set(pod.Pool, pod, 1); err != nil {
		t.Fatal(err)
	}
	l, err := hub.ParseRevocationList(persisted)
	if err != nil {
		t.Fatal(err)
	}
	restarted.Revocations().Merge(pod.Pool, l.Revocations)
	setHub((&hub.Server{Ledger: ledger, Configs: restarted, Token: hubToken}).Handler())
	time.Sleep(1500 * time.Millisecond) // the pods' polls find it again
	for _, server := range servers {
		servesOnlyFresh(server, "hub restarted")
	}
}
