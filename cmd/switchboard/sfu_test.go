package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func sfuConfig(apps map[string]string) string {
	out := `{"version":"v","pool":"default/p","media":{"exposure":"Direct","udpPort":3478},"apps":[`
	first := true
	for id, secret := range apps {
		sum := sha256.Sum256([]byte(secret))
		if !first {
			out += ","
		}
		first = false
		out += fmt.Sprintf(`{"id":%q,"name":"default/x","secretSHA256":%q}`, id, hex.EncodeToString(sum[:]))
	}
	return out + "]}"
}

func TestSFUCommandServesReloadsAndStops(t *testing.T) {
	const appA, appB = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	dir := t.TempDir()
	path := filepath.Join(dir, "switchboard.json")
	if err := os.WriteFile(path, []byte(sfuConfig(map[string]string{appA: "secret-a"})), 0o600); err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSFU(ctx, []string{"--config", path, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--udp-port", fmt.Sprint(udpPort), "--advertise", "127.0.0.1", "--config-poll", "100ms", "--log-level", "warn"})
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	newSession := func(app, secret string) int {
		req, _ := http.NewRequest("POST", base+"/v1/apps/"+app+"/sessions/new", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for newSession(appA, "secret-a") != 201 {
		if time.Now().After(deadline) {
			t.Fatal("sfu command did not serve sessions/new")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := newSession(appB, "secret-b"); st != 401 {
		t.Fatalf("app B before reload: %d", st)
	}
	// A broken file keeps the last good config; a good one is applied.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if st := newSession(appA, "secret-a"); st != 201 {
		t.Fatalf("after a broken file: %d", st)
	}
	if err := os.WriteFile(path, []byte(sfuConfig(map[string]string{appB: "secret-b"})), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for newSession(appB, "secret-b") != 201 {
		if time.Now().After(deadline) {
			t.Fatal("new app not applied within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := newSession(appA, "secret-a"); st != 401 {
		t.Fatalf("removed app still served: %d", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sfu command did not stop")
	}
}
