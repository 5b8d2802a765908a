package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/metering"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/ratelimit"
)

// loopbackPeer is a Pion client on loopback with one DataChannel, enough
// for ICE, DTLS and SCTP to carry bytes both ways.
func loopbackPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.CreateDataChannel("server-events", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc
}

func apiCall(t *testing.T, method, url, secret string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The end-to-end check: the operator with its hub and a running
// `switchboard sfu` against a real API server; a client connects; `kubectl get
// callsapps` shows its session and egress; the admin API lowers the app's
// rate limit and the running sfu enforces it within 5 s.
func TestKubectlGetCallsAppsShowsSessionsAndEgressFromARunningSFU(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "bin", "k8s")
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets, Scheme: scheme, ControlPlaneStartTimeout: 3 * time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest (run make envtest): %v", err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The manager as runManager wires it (controllers, hub keys, hub),
	// built here because controller names may be registered only once per
	// process and TestManagerCommand… runs runManager in this one.
	hubAddr := freeAddr(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: crconfig.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	hubToken, adminKey, err := metering.LoadOrCreateKeys(ctx, mgr.GetAPIReader(), mgr.GetClient(), "default", "switchboard-hub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metering.Setup(mgr, metering.Options{Addr: hubAddr, HubToken: hubToken, AdminKey: adminKey}); err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupWith(ctx, mgr, controllers.Options{HubURL: "http://" + hubAddr, HubToken: hubToken}); err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-mgrDone; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	// A short drain: the test ends with a client still connected, and the
	// SFU would otherwise keep its session for the default 5 minutes.
	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
		Spec: v1alpha1.SFUPoolSpec{DrainTimeout: &metav1.Duration{Duration: time.Second}}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &v1alpha1.CallsApp{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
		Spec: v1alpha1.CallsAppSpec{PoolRef: v1alpha1.PoolReference{Name: "demo"}}}); err != nil {
		t.Fatal(err)
	}
	// What the kubelet would mount: the pool's config Secret, once it
	// holds the app.
	var podConfig []byte
	var appID string
	waitFor(t, "pool config with the app", func() error {
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "demo-config"}, &s); err != nil {
			return err
		}
		p, err := config.Parse(s.Data[config.FileName])
		if err != nil {
			return err
		}
		if len(p.Apps) != 1 || p.Hub == "" {
			return fmt.Errorf("config has %d apps, hub %q", len(p.Apps), p.Hub)
		}
		podConfig, appID = s.Data[config.FileName], p.Apps[0].ID
		return nil
	})
	var creds corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "app-credentials"}, &creds); err != nil {
		t.Fatal(err)
	}
	secret := string(creds.Data[v1alpha1.SecretKeyAppSecret])
	cfgPath := filepath.Join(t.TempDir(), config.FileName)
	if err := os.WriteFile(cfgPath, podConfig, 0o600); err != nil {
		t.Fatal(err)
	}

	httpAddr := freeAddr(t)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpPort := udp.LocalAddr().(*net.UDPAddr).Port
	_ = udp.Close()
	sfuCtx, stopSFU := context.WithCancel(ctx)
	sfuDone := make(chan error, 1)
	go func() {
		// The rendered config has a fleet section, which needs the pod's
		// ordinal ($POD_NAME in a StatefulSet, not set here).
		sfuDone <- runSFU(sfuCtx, []string{"--config", cfgPath, "--listen", httpAddr, "--udp-port", fmt.Sprint(udpPort),
			"--advertise", "127.0.0.1", "--pod-name", "demo-sfu-0", "--pod-ordinal", "0", "--log-level", "warn"})
	}()
	defer func() { stopSFU(); <-sfuDone }()
	base := "http://" + httpAddr + "/v1/apps/" + appID

	// A client opens a session with a DataChannel and connects.
	pc := loopbackPeer(t)
	var created struct {
		SessionID          string `json:"sessionId"`
		SessionDescription struct {
			Type string `json:"type"`
			SDP  string `json:"sdp"`
		} `json:"sessionDescription"`
	}
	waitFor(t, "sessions/new", func() error {
		code, body := apiCall(t, "POST", base+"/sessions/new", secret,
			map[string]any{"sessionDescription": map[string]string{"type": "offer", "sdp": pc.LocalDescription().SDP}})
		if code != http.StatusCreated {
			return fmt.Errorf("%d %s", code, body)
		}
		return json.Unmarshal(body, &created)
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: created.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "client connected", func() error {
		if s := pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})

	// kubectl shows the live session and the egress the pod reported.
	waitFor(t, "kubectl get callsapps shows the session and egress", func() error {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "get", "callsapps", "-n", "default").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			return fmt.Errorf("output %q", out)
		}
		header, row := strings.Fields(lines[0]), lines[1]
		cols := splitColumns(lines[0], row)
		if cols["SESSIONS"] != "1" || cols["EGRESS"] == "" || cols["EGRESS"] == "0 B" || cols["COST"] != "$0.00" {
			return fmt.Errorf("columns %v (header %v)", cols, header)
		}
		t.Logf("kubectl get callsapps:\n%s", out)
		return nil
	})

	waitFor(t, "kubectl get sfupools shows the session", func() error {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "get", "sfupools", "-n", "default").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			return fmt.Errorf("output %q", out)
		}
		if cols := splitColumns(lines[0], lines[1]); cols["SESSIONS"] != "1" {
			return fmt.Errorf("columns %v", cols)
		}
		return nil
	})

	// The admin API lowers the limit; the running sfu enforces it.
	var hubSecret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "switchboard-hub"}, &hubSecret); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+hubAddr+"/admin/apps/"+appID, strings.NewReader(`{"rate_limit": 2}`))
	req.Header.Set("X-Admin-API-Key", string(hubSecret.Data[metering.SecretKeyAdminKey]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin POST: %d", resp.StatusCode)
	}
	posted := time.Now()
	for {
		limited := false
		for range 5 {
			code, body := apiCall(t, "GET", base+"/sessions/"+created.SessionID, secret, nil)
			if code == http.StatusTooManyRequests {
				if string(body) != ratelimit.AppLimitedBody {
					t.Fatalf("429 body %s", body)
				}
				limited = true
			}
		}
		if limited {
			break
		}
		if time.Since(posted) > 5*time.Second {
			t.Fatal("the running sfu did not enforce the new limit within 5 s of the admin POST")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("new limit enforced %v after the admin POST", time.Since(posted).Round(time.Millisecond))
}

// splitColumns maps kubectl's header names to the row's values by column
// position (values such as "1.2 kB" contain spaces).
func splitColumns(header, row string) map[string]string {
	out := map[string]string{}
	fields := strings.Fields(header)
	for i, name := range fields {
		start := strings.Index(header, name)
		end := len(row)
		if i+1 < len(fields) {
			end = strings.Index(header, fields[i+1])
		}
		if start >= len(row) {
			break
		}
		out[name] = strings.TrimSpace(row[start:min(end, len(row))])
	}
	return out
}
