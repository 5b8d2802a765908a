package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/turn"
)

func sfuTURNConfig(turnURL string) string {
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	return fmt.Sprintf(`{"version":"v","pool":"default/p","media":{"exposure":"Direct","udpPort":3478},
"turn":{"enabled":true,"urls":[%q],"relayIPs":["192.0.2.10"]},
"apps":[{"id":"0123456789abcdef0123456789abcdef","name":"default/x","secretSHA256":%q,
"turnKey":{"id":"abcdefabcdefabcdefabcdefabcdef12","tokenSHA256":%q,"hmacSecret":"hmac"}}]}`,
		turnURL, sum("secret-a"), sum("turn-token"))
}

// `switchboard sfu` serves the Calls TURN credentials API beside the session
// API, with the TURN URLs of its config file, and follows config reloads.
func TestSFUCommandServesTURNCredentials(t *testing.T) {
	const key = "abcdefabcdefabcdefabcdefabcdef12"
	path := filepath.Join(t.TempDir(), "switchboard.json")
	if err := os.WriteFile(path, []byte(sfuTURNConfig("turn:turn.example.test:3478?transport=udp")), 0o600); err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSFU(ctx, []string{"--config", path, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--udp-port", fmt.Sprint(udpPort), "--advertise", "127.0.0.1", "--config-poll", "100ms", "--log-level", "warn"})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("sfu command did not stop")
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	generate := func() (int, []turn.ICEServer) {
		req, _ := http.NewRequest("POST", base+"/v1/turn/keys/"+key+"/credentials/generate-ice-servers", strings.NewReader(`{"ttl":600}`))
		req.Header.Set("Authorization", "Bearer turn-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var body struct {
			ICEServers []turn.ICEServer `json:"iceServers"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.ICEServers
	}
	urlsOf := func(servers []turn.ICEServer) string {
		var all []string
		for _, s := range servers {
			all = append(all, s.URLs...)
		}
		return strings.Join(all, " ")
	}
	var servers []turn.ICEServer
	deadline := time.Now().Add(10 * time.Second)
	for st := 0; st != http.StatusCreated; st, servers = generate() {
		if time.Now().After(deadline) {
			t.Fatalf("sfu command did not answer generate-ice-servers with 201 (last %d)", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := urlsOf(servers); got != "stun:turn.example.test:3478 turn:turn.example.test:3478?transport=udp" || servers[1].Username == "" {
		t.Fatalf("iceServers = %+v", servers)
	}

	req, _ := http.NewRequest("POST", base+"/v1/turn/keys/"+key+"/credentials/"+url.PathEscape(servers[1].Username)+"/revoke", nil)
	req.Header.Set("Authorization", "Bearer turn-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d, want 204", resp.StatusCode)
	}

	if err := os.WriteFile(path, []byte(sfuTURNConfig("turns:turn2.example.test:5349?transport=tcp")), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, servers = generate()
		if urlsOf(servers) == "turns:turn2.example.test:5349?transport=tcp" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TURN URLs not reloaded within 5 s: %+v", servers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
