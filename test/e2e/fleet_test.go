package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

const (
	fleetApp    = "00112233445566778899aabbccddeeff"
	fleetSecret = "fleet-e2e-secret-0123456789abcdef0123456789abcdef"
)

// sfuProc is one `switchboard sfu` process of a fleet on its own loopback
// address.
type sfuProc struct {
	cmd    *exec.Cmd
	url    string
	logs   lockedBuf
	exited chan struct{}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T, network, ip string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startFleet starts n `switchboard sfu` processes on 127.0.0.2, 127.0.0.3,
// … that share one config file with a static peer list.
func startFleet(t *testing.T, n int) []*sfuProc {
	t.Helper()
	bin := buildSwitchboard(t)
	sum := sha256.Sum256([]byte(fleetSecret))
	ips := make([]string, n)
	httpPorts := make([]int, n)
	cfg := config.Pod{Version: "fleet-e2e", Pool: "e2e/fleet", Media: config.Media{Exposure: config.ExposureDirect, UDPPort: 3478},
		Apps:  []config.App{{ID: fleetApp, Name: "e2e/app", SecretSHA256: hex.EncodeToString(sum[:])}},
		Fleet: &config.Fleet{Token: "fleet-e2e-token-0123456789abcdef"}}
	for i := range ips {
		ips[i] = "127.0.0." + strconv.Itoa(i+2)
		httpPorts[i] = freePort(t, "tcp", ips[i])
		cfg.Fleet.Peers = append(cfg.Fleet.Peers, config.FleetPeer{Ordinal: i, Address: ips[i] + ":" + strconv.Itoa(httpPorts[i])})
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), config.FileName)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	procs := make([]*sfuProc, n)
	for i := range procs {
		p := &sfuProc{url: "http://" + cfg.Fleet.Peers[i].Address, exited: make(chan struct{})}
		p.cmd = exec.Command(bin, "sfu", "--config", path, "--listen", cfg.Fleet.Peers[i].Address,
			"--udp-ip", ips[i], "--udp-port", strconv.Itoa(freePort(t, "udp", ips[i])), "--advertise", ips[i],
			"--pod-ordinal", strconv.Itoa(i), "--log-level", "debug")
		p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			<-p.exited
			if t.Failed() {
				t.Logf("pod %d logs:\n%s", i, p.logs.String())
			}
		})
		procs[i] = p
	}
	for i, p := range procs {
		if !waitFor(30*time.Second, func() bool {
			res, err := http.Get(p.url + "/health")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		}) {
			t.Fatalf("pod %d not healthy:\n%s", i, p.logs.String())
		}
	}
	return procs
}

// api does one Calls request and returns status and raw body.
func api(t *testing.T, base, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+"/v1/apps/"+fleetApp+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fleetSecret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

func newSessionOn(t *testing.T, base string) string {
	t.Helper()
	st, raw := api(t, base, "POST", "/sessions/new", nil)
	var out struct {
		SessionID string `json:"sessionId"`
	}
	if st != http.StatusCreated || json.Unmarshal(raw, &out) != nil || len(out.SessionID) != 32 {
		t.Fatalf("sessions/new: %d %s", st, raw)
	}
	return out.SessionID
}

type sdpBody struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type tracksResp struct {
	SessionDescription *sdpBody `json:"sessionDescription"`
	Tracks             []struct {
		Mid       string `json:"mid"`
		ErrorCode string `json:"errorCode"`
	} `json:"tracks"`
}

func loopbackPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func localSDP(t *testing.T, pc *webrtc.PeerConnection, d webrtc.SessionDescription) *sdpBody {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-done
	return &sdpBody{Type: pc.LocalDescription().Type.String(), SDP: pc.LocalDescription().SDP}
}

// e2ePayload is a numbered payload whose bytes all derive from n.
func e2ePayload(n uint32) []byte {
	b := make([]byte, 120)
	binary.BigEndian.PutUint32(b, n)
	for i := 4; i < len(b); i++ {
		b[i] = byte(uint32(i)*13 + n)
	}
	return b
}

// TestFleetProcessesPullAcrossPodsAndForwardCalls runs a fleet the way it
// runs outside Kubernetes: one hand-written config file with static peers,
// no manager and no hub, each pod's ordinal from --pod-ordinal. The fleet
// the operator renders is tested in fleet_envtest_test.go; this test keeps
// the mode without a control plane honest.
func TestFleetProcessesPullAcrossPodsAndForwardCalls(t *testing.T) {
	procs := startFleet(t, 3)
	a, b, c := procs[0], procs[1], procs[2]

	// Publisher on pod A sends Opus packets with checkable payloads.
	pub := loopbackPeer(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	pubSID := newSessionOn(t, a.url)
	var pr tracksResp
	st, raw := api(t, a.url, "POST", "/sessions/"+pubSID+"/tracks/new", map[string]any{
		"sessionDescription": localSDP(t, pub, offer),
		"tracks":             []map[string]string{{"location": "local", "mid": "0", "trackName": "mic"}},
	})
	if st != http.StatusOK || json.Unmarshal(raw, &pr) != nil || pr.Tracks[0].ErrorCode != "" {
		t.Fatalf("push on A: %d %s", st, raw)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: pr.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var sendWG sync.WaitGroup
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 960}, Payload: e2ePayload(n)})
		}
	}()
	defer func() { close(stop); sendWG.Wait() }()

	// Subscriber session on pod B; its tracks/new and renegotiate go to
	// pod C, which forwards them to B.
	sub := loopbackPeer(t)
	var good, bad atomic.Int64
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(p.Payload) == 120 && bytes.Equal(p.Payload, e2ePayload(binary.BigEndian.Uint32(p.Payload))) {
				good.Add(1)
			} else {
				bad.Add(1)
			}
		}
	})
	subSID := newSessionOn(t, b.url)
	var sr tracksResp
	st, raw = api(t, c.url, "POST", "/sessions/"+subSID+"/tracks/new", map[string]any{
		"tracks": []map[string]string{{"location": "remote", "sessionId": pubSID, "trackName": "mic"}},
	})
	if st != http.StatusOK || json.Unmarshal(raw, &sr) != nil || sr.Tracks[0].ErrorCode != "" || sr.SessionDescription == nil {
		t.Fatalf("pull through C: %d %s", st, raw)
	}
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sr.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, raw := api(t, c.url, "PUT", "/sessions/"+subSID+"/renegotiate", map[string]any{"sessionDescription": localSDP(t, sub, ans)}); st != http.StatusOK {
		t.Fatalf("renegotiate through C: %d %s", st, raw)
	}
	if !waitFor(20*time.Second, func() bool { return good.Load() >= 50 }) {
		t.Fatalf("subscriber on B got %d intact packets (%d corrupted)", good.Load(), bad.Load())
	}
	if bad.Load() != 0 {
		t.Fatalf("%d corrupted packets", bad.Load())
	}

	// GET session is the same through every pod.
	stB, bodyB := api(t, b.url, "GET", "/sessions/"+subSID, nil)
	for _, p := range []*sfuProc{a, c} {
		if st, body := api(t, p.url, "GET", "/sessions/"+subSID, nil); st != stB || !bytes.Equal(body, bodyB) {
			t.Fatalf("GET via %s: %d %s; via owner: %d %s", p.url, st, body, stB, bodyB)
		}
	}
	if !bytes.Contains(bodyB, []byte(`"status":"active"`)) {
		t.Fatalf("pull not active on B: %s", bodyB)
	}

	// Kill pod A: the pull on B goes inactive well within the 30 s track timeout.
	killed := time.Now()
	_ = a.cmd.Process.Kill()
	<-a.exited
	if !waitFor(30*time.Second, func() bool {
		_, body := api(t, c.url, "GET", "/sessions/"+subSID, nil)
		return bytes.Contains(body, []byte(`"status":"inactive"`))
	}) {
		_, body := api(t, b.url, "GET", "/sessions/"+subSID, nil)
		t.Fatalf("pull on B still not inactive 30 s after pod A died: %s", body)
	}
	t.Logf("pull inactive %v after pod A was killed", time.Since(killed).Round(time.Millisecond))
	// Calls for A's sessions now answer as for an ended session.
	if st, body := api(t, c.url, "GET", "/sessions/"+pubSID, nil); st != http.StatusGone {
		t.Fatalf("GET of a session of the dead pod: %d %s", st, body)
	}
}
