package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/turn"
)

// countingConn counts the bytes a TURN client's socket receives.
type countingConn struct {
	net.PacketConn
	read atomic.Int64
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	c.read.Add(int64(n))
	return n, a, err
}

// `switchboard turn` reports its bytes to the hub like an SFU pod: a client
// allocates with an app's credential, and after SIGTERM the hub's ledger
// has the app's TURN egress (no more than the client's socket received,
// which includes the unauthenticated 401) and ingress, and the pod, named
// by $POD_NAME, as a stopped turn pod.
func TestTURNCommandReportsUsageToTheHub(t *testing.T) {
	const appA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	ledger := hub.NewLedger(hub.LedgerOptions{})
	ledger.SetApp(appA, hub.DefaultBilling)
	ledger.SetReady()
	hubSrv := httptest.NewServer((&hub.Server{Ledger: ledger, Configs: hub.NewConfigStore(), Token: "hub-token"}).Handler())
	defer hubSrv.Close()

	cfgJSON := fmt.Sprintf(turnTestConfig, strings.Repeat("a", 64))
	cfgJSON = strings.Replace(cfgJSON, `"pool":"default/p",`, `"pool":"default/p","hub":"`+hubSrv.URL+`","hubToken":"hub-token",`, 1)
	cfg := filepath.Join(t.TempDir(), "switchboard.json")
	if err := os.WriteFile(cfg, []byte(cfgJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "turn-0")
	port := freeTCPUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runTURN(ctx, []string{"--config", cfg, "--listen-ip", "127.0.0.1",
			"--udp", fmt.Sprint(port), "--tcp", "0", "--tls", "0", "--drain-timeout", "0s",
			"--public-ip", "127.0.0.1", "--health-listen", ""})
	}()

	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := &countingConn{PacketConn: raw}
	defer conn.Close()
	cred, err := turn.Issue(&turn.Key{ID: "k1", AppID: appA, HMACSecret: []byte("s")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	server := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: cred.Username, Password: cred.Password, Realm: turn.DefaultRealm, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	var relay net.PacketConn
	deadline := time.Now().Add(10 * time.Second)
	for relay == nil {
		if relay, err = c.Allocate(); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("allocate: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A CreatePermission (answered, whether or not the policy allows the
	// peer) is client traffic on the allocation: ingress.
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_, _ = relay.WriteTo([]byte("ping"), peer.LocalAddr())
	_ = relay.Close() // Refresh with lifetime 0
	c.Close()
	received := conn.read.Load()

	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("turn command did not stop")
	}
	u, _ := ledger.Usage(appA)
	if u.Totals.EgressTURNBytes <= 0 || u.Totals.EgressTURNBytes > received || u.Totals.EgressSFUBytes != 0 {
		t.Fatalf("ledger totals %+v; want TURN egress in (0, %d] (what the client received) and no SFU egress", u.Totals, received)
	}
	if u.Totals.IngressBytes <= 0 {
		t.Fatalf("ledger totals %+v; want TURN ingress", u.Totals)
	}
	if p := ledger.Pods("default/p"); len(p) != 1 || !p[0].Stopped || p[0].Pod != "turn-0" || p[0].Kind != "turn" || p[0].ConfigVersion != "v1" {
		t.Fatalf("pod status %+v, want turn-0, kind turn, stopped, running v1", p)
	}
	t.Logf("TURN egress %d of %d bytes the client received, ingress %d", u.Totals.EgressTURNBytes, received, u.Totals.IngressBytes)
}
