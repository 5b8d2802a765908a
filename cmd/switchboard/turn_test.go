package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func freeTCPUDPPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

const turnTestConfig = `{"version":"v1","pool":"default/p","media":{"exposure":"Direct","udpPort":3478},
"turn":{"enabled":true,"realm":"switchboard","urls":["turn:127.0.0.1:3478?transport=udp"]},
"apps":[{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"d/a","secretSHA256":"%[1]s",
"turnKey":{"id":"k1","tokenSHA256":"%[1]s","hmacSecret":"s"}}]}`

// TestTURNCommandServesBindingAndHealth starts `switchboard turn` on
// loopback: a STUN Binding request is answered, /health and /ready are 200,
// and the command returns cleanly when its context ends.
func TestTURNCommandServesBindingAndHealth(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchboard.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(turnTestConfig, strings.Repeat("a", 64))), 0o600); err != nil {
		t.Fatal(err)
	}
	port, health := freeTCPUDPPort(t), freeTCPUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runTURN(ctx, []string{"--config", cfg, "--listen-ip", "127.0.0.1",
			"--udp", fmt.Sprint(port), "--tcp", fmt.Sprint(port), "--tls", "0",
			"--public-ip", "127.0.0.1", "--health-listen", fmt.Sprintf("127.0.0.1:%d", health)})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("turn command returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("turn command did not stop")
		}
	}()

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", health))
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode == 200 {
				body = string(b)
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "ready\n" {
		t.Fatalf("/ready never answered 200 (last body %q)", body)
	}
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no Binding response: %v", err)
	}
	m := &stun.Message{Raw: buf[:n]}
	var xa stun.XORMappedAddress
	if err := m.Decode(); err != nil || xa.GetFrom(m) != nil {
		t.Fatalf("bad Binding response: %v", err)
	}
	if xa.String() != c.LocalAddr().String() {
		t.Fatalf("mapped %s, want %s", xa.String(), c.LocalAddr())
	}
}
