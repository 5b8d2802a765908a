//go:build cluster

package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"
)

// checkTURN gets TURN credentials with the app's TURN key through the API
// Service (generate-ice-servers) and allocates a relay with them on the
// pool's TURN Service: the TURN pods accept the key the operator generated.
func checkTURN(t *testing.T, e env, apiBase, secretName string) {
	t.Helper()
	keyID := e.secretValue(t, secretName, "turnKeyId")
	token := e.secretValue(t, secretName, "turnKeyToken")
	req, err := http.NewRequest("POST", apiBase+"/v1/turn/keys/"+keyID+"/credentials/generate-ice-servers", bytes.NewReader([]byte(`{"ttl": 600}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("generate-ice-servers: %d %s", res.StatusCode, raw)
	}
	var out struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("generate-ice-servers: %v: %s", err, raw)
	}
	var user, pass string
	var urls []string
	for _, s := range out.ICEServers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") {
				urls = append(urls, u)
				user, pass = s.Username, s.Credential
			}
		}
	}
	want := "turn:" + e.pool + "-turn." + e.namespace + ".svc:"
	if len(urls) == 0 || user == "" || pass == "" || !strings.HasPrefix(urls[0], want) {
		t.Fatalf("generate-ice-servers gave no turn: URL on %s* with credentials: %s", want, raw)
	}
	// The netns has no cluster DNS: reach the TURN Service by its cluster IP.
	svc := strings.TrimSpace(e.kubectl(t, "get", "service", e.pool+"-turn", "-o",
		`jsonpath={.spec.clusterIP}:{.spec.ports[?(@.protocol=="UDP")].port}`))
	conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: svc, TURNServerAddr: svc, Conn: conn,
		Username: user, Password: pass, Realm: "switchboard", LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("TURN allocation on %s with the app's credentials: %v", svc, err)
	}
	defer relay.Close()
	var turnPod struct {
		Items []podInfo `json:"items"`
	}
	e.getJSON(t, &turnPod, "pods", "-l", "calls.switchboard.dev/pool="+e.pool+",app.kubernetes.io/component=turn")
	var ips []string
	for _, p := range turnPod.Items {
		ips = append(ips, p.Status.PodIP)
	}
	host, _, _ := net.SplitHostPort(relay.LocalAddr().String())
	if !slices.Contains(ips, host) {
		t.Fatalf("relayed address %s is not a TURN pod's address %v", relay.LocalAddr(), ips)
	}
	t.Logf("TURN: %s from generate-ice-servers; allocation through %s relays on %s", urls[0], svc, relay.LocalAddr())
}
