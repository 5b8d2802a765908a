package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
)

// A running `switchboard sfu` follows the hub's config, enforces the app
// limit with the exact 429 body, and its final report on SIGTERM lands in
// the manager's ledger.
func TestSFUCommandEnforcesAppLimitsAndReportsUsageToTheHub(t *testing.T) {
	const appA = "0123456789abcdef0123456789abcdef"
	ledger := hub.NewLedger(hub.LedgerOptions{})
	ledger.SetApp(appA, hub.DefaultBilling)
	ledger.SetReady()
	store := hub.NewConfigStore()
	hubSrv := httptest.NewServer((&hub.Server{Ledger: ledger, Configs: store, Token: "hub-token"}).Handler())
	defer hubSrv.Close()

	sum := sha256.Sum256([]byte("secret-a"))
	render := func(version string, serial int64, limit int) *config.Pod {
		return &config.Pod{Version: version, Serial: serial, Pool: "default/p", Hub: hubSrv.URL, HubToken: "hub-token",
			Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478},
			Apps: []config.App{{ID: appA, Name: "default/a", SecretSHA256: hex.EncodeToString(sum[:]),
				RateLimit: config.RateLimit{AuthenticatedPerSecond: limit}}}}
	}
	path := filepath.Join(t.TempDir(), config.FileName)
	raw, _ := json.Marshal(render("v1", 1, 1000))
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// The operator has since lowered the limit; the hub already serves it.
	if err := store.Set("default/p", render("v2", 2, 2), 1); err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSFU(ctx, []string{"--config", path, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--udp-port", fmt.Sprint(udpPort), "--advertise", "127.0.0.1", "--pod-name", "sfu-0", "--log-level", "warn"})
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	newSession := func() (int, string) {
		req, _ := http.NewRequest("POST", base+"/v1/apps/"+appA+"/sessions/new", nil)
		req.Header.Set("Authorization", "Bearer secret-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Wait until the pod serves and runs the hub's v2 (limit 2 per second):
	// a burst of 5 in one window then gets some 429s, with the exact body.
	deadline := time.Now().Add(10 * time.Second)
	var created, limited int
	for limited == 0 {
		if time.Now().After(deadline) {
			t.Fatal("sfu did not enforce the hub's limit within 10 s")
		}
		created, limited = 0, 0
		for range 5 {
			code, body := newSession()
			switch code {
			case 201:
				created++
			case 429:
				limited++
				if body != ratelimit.AppLimitedBody {
					t.Fatalf("429 body %s", body)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if created > 4 {
		t.Fatalf("burst of 5 at limit 2/s: %d created", created)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `switchboard_egress_bytes_total{app="`+appA+`",source="sfu"}`) {
		t.Fatalf("/metrics has no egress counter for the app:\n%s", metrics)
	}
	cancel() // SIGTERM
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	u, _ := ledger.Usage(appA)
	// The last burst's answers (201 or 429) are all counted; a request made
	// before the pod listened got no answer and counts nowhere.
	if u.Totals.RateLimitedApp < int64(limited) || u.Totals.Requests < int64(created+limited) {
		t.Fatalf("ledger after the final report: %+v, want ≥ %d app throttles and ≥ %d requests", u.Totals, limited, created+limited)
	}
	if p := ledger.Pods("default/p"); len(p) != 1 || !p[0].Stopped || p[0].ConfigVersion != "v2" || p[0].Pod != "sfu-0" {
		t.Fatalf("pod status %+v, want sfu-0 stopped running v2", p)
	}
}
