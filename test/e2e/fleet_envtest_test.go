package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// The fleet as a user gets it from the operator: an envtest API server, the
// `switchboard manager` process (operator and hub), an SFUPool of three
// replicas and two CallsApps; then three `switchboard sfu` processes started
// from the StatefulSet's pod template and the config Secret the operator
// rendered, each on its own loopback address. The harness plays the parts
// of the cluster that envtest lacks: the StatefulSet controller (it creates
// the Pod objects from the template), the kubelet (it resolves the
// downward-API environment, starts the container's command, reports
// readiness from /ready, sends SIGTERM when a pod is deleted) and cluster
// DNS (see mapFleet).

const (
	fleetNS           = "default"
	fleetPoolName     = "demo"
	fleetAppName      = "app"
	fleetOtherAppName = "other"
	fleetReplicas     = 3
	fleetDrainTimeout = 60 * time.Second
	// fleetReconnectWindow is the apps' session reconnect window: a
	// session whose client left is collected this long after, so each
	// subtest starts on an idle fleet without waiting the default 30 s.
	fleetReconnectWindow = 3 * time.Second
	fleetNodeName        = "loopback-node"
	fleetNodeIP          = "127.0.0.1"
	fleetClientIP        = "127.0.0.10"
)

// fleetHarness is one running fleet; see the comment at the top.
type fleetHarness struct {
	bin         string
	dir         string
	env         *envtest.Environment
	c           client.Client
	manager     *osProc
	hubAddr     string
	dnsURL      string // the hub as pods reach it: a proxy applying mapFleet
	pool        *v1alpha1.SFUPool
	sts         *appsv1.StatefulSet
	app         appCreds // the CallsApp of the pool
	other       appCreds // a second CallsApp of the pool
	configPath  string   // the rendered Secret's content as mounted (mapFleet applied)
	pods        []*fleetPod
	stopKubelet chan struct{}
	kubeletDone chan struct{}
	kubeletLog  lockedBuf
}

// fleetPod is one SFU pod: a Pod object and, while it runs, its process.
// Its loopback address and API port stay the same across restarts, as a
// StatefulSet pod's DNS name does.
type fleetPod struct {
	ordinal int
	name    string
	ip      string
	port    int
	url     string

	mu       sync.Mutex
	proc     *osProc
	ready    bool // as last written into the Pod's Ready condition
	deleting bool // the Pod object was deleted; the kubelet sent SIGTERM
}

func (p *fleetPod) running() *osProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// osProc is a child process with its output kept for failure messages.
type osProc struct {
	cmd    *exec.Cmd
	logs   lockedBuf
	exited chan struct{}
}

func startProc(t *testing.T, name, bin string, args, env []string) *osProc {
	t.Helper()
	p := &osProc{exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	// Die with the test binary, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p
}

func (p *osProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *osProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// getOK reports whether GET url answers 200.
func getOK(u string) bool {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// startOperatorFleet brings the whole fleet up; everything stops when t
// ends.
func startOperatorFleet(t *testing.T) *fleetHarness {
	t.Helper()
	began := time.Now()
	root := repoRoot(t)
	h := &fleetHarness{dir: t.TempDir(), stopKubelet: make(chan struct{}), kubeletDone: make(chan struct{})}

	// The API server starts while the binary builds.
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	h.env = &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets, Scheme: scheme, ControlPlaneStartTimeout: 3 * time.Minute,
	}
	envErr := make(chan error, 1)
	go func() { _, err := h.env.Start(); envErr <- err }()
	envStarted := sync.OnceValue(func() error { return <-envErr })
	t.Cleanup(func() {
		if envStarted() != nil {
			return
		}
		if err := h.env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	h.bin = buildSwitchboard(t)
	if err := envStarted(); err != nil {
		t.Fatalf("start envtest (run make envtest): %v", err)
	}
	var err error
	if h.c, err = client.New(h.env.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	t.Logf("api server up and binary built in %v", time.Since(began).Round(time.Millisecond))

	h.startManager(t)
	h.applyPoolAndApp(t)
	h.readRendered(t)

	// At the end the kubelet's loop stops and the pods are killed, then
	// the manager stops, then the API server.
	go h.kubelet()
	t.Cleanup(func() {
		close(h.stopKubelet)
		<-h.kubeletDone
		for _, p := range h.pods {
			if proc := p.running(); proc != nil {
				proc.kill()
			}
		}
		if t.Failed() {
			t.Logf("kubelet log:\n%s", h.kubeletLog.String())
		}
	})
	for i := range fleetReplicas {
		h.pods = append(h.pods, &fleetPod{ordinal: i, name: h.sts.Name + "-" + strconv.Itoa(i), ip: "127.0.0." + strconv.Itoa(i+2)})
	}
	for _, p := range h.pods {
		p.port = freePort(t, "tcp", p.ip)
		p.url = "http://" + net.JoinHostPort(p.ip, strconv.Itoa(p.port))
	}
	if err := h.writeMountedConfig(); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.pods {
		h.createPod(t, p)
		h.startPod(t, p)
	}
	h.waitPodsReady(t)
	t.Logf("fleet of %d pods ready %v after start", fleetReplicas, time.Since(began).Round(time.Millisecond))
	return h
}

// startManager runs `switchboard manager` against the API server with its
// hub on loopback, and the name-mapping front of the hub (mapFleet).
func (h *fleetHarness) startManager(t *testing.T) {
	t.Helper()
	kubeconfig := filepath.Join(h.dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, h.env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	h.hubAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "tcp", "127.0.0.1")))
	probeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "tcp", "127.0.0.1")))

	// Pods reach the hub through this proxy, which rewrites the fleet
	// section of the configs the hub serves exactly as the mounted file is
	// rewritten (mapFleet); everything else passes unchanged.
	target := &url.URL{Scheme: "http", Host: h.hubAddr}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(res *http.Response) error {
		if res.Request.URL.Path != hub.ConfigPath || res.StatusCode != http.StatusOK {
			return nil
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		var doc map[string]json.RawMessage
		var pod config.Pod
		if err := json.Unmarshal(raw, &doc); err != nil {
			return err
		}
		if err := json.Unmarshal(doc["config"], &pod); err != nil {
			return err
		}
		h.mapFleet(&pod)
		if doc["config"], err = json.Marshal(&pod); err != nil {
			return err
		}
		if raw, err = json.Marshal(doc); err != nil {
			return err
		}
		res.Body = io.NopCloser(bytes.NewReader(raw))
		res.ContentLength = int64(len(raw))
		res.Header.Set("Content-Length", strconv.Itoa(len(raw)))
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dns := &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = dns.Serve(ln) }()
	t.Cleanup(func() { _ = dns.Close() })
	h.dnsURL = "http://" + ln.Addr().String()

	h.manager = startProc(t, "manager", h.bin, []string{"manager", "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "0", "--health-probe-bind-address", probeAddr,
		"--hub-bind-address", h.hubAddr, "--hub-url", h.dnsURL},
		[]string{"POD_NAMESPACE=" + fleetNS, "PATH=" + os.Getenv("PATH")})
	t.Cleanup(func() {
		_ = h.manager.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.manager.exited:
		case <-time.After(15 * time.Second):
			h.manager.kill()
		}
		if t.Failed() {
			t.Logf("manager logs:\n%s", h.manager.logs.String())
		}
	})
	if !waitFor(60*time.Second, func() bool { return getOK("http://" + probeAddr + "/readyz") }) {
		t.Fatalf("manager not ready:\n%s", h.manager.logs.String())
	}
}

// applyPoolAndApp applies what a user applies: an SFUPool of three
// replicas (media port chosen free on the pods' loopback addresses) and two
// CallsApps on it.
func (h *fleetHarness) applyPoolAndApp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	udpPort := 0
	for udpPort == 0 {
		p := freePort(t, "udp", "127.0.0.2")
		if p < 1024 {
			continue
		}
		free := true
		for i := 3; i < 2+fleetReplicas; i++ {
			c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0."+strconv.Itoa(i), strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			c.Close()
		}
		if free {
			udpPort = p
		}
	}
	h.pool = &v1alpha1.SFUPool{
		ObjectMeta: metav1.ObjectMeta{Name: fleetPoolName, Namespace: fleetNS},
		Spec: v1alpha1.SFUPoolSpec{
			Replicas:     ptr.To(int32(fleetReplicas)),
			Media:        v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureDirect, UDPPort: int32(udpPort)},
			DrainTimeout: &metav1.Duration{Duration: fleetDrainTimeout},
		},
	}
	if err := h.c.Create(ctx, h.pool); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{fleetAppName, fleetOtherAppName} {
		if err := h.c.Create(ctx, &v1alpha1.CallsApp{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNS},
			Spec: v1alpha1.CallsAppSpec{PoolRef: v1alpha1.PoolReference{Name: fleetPoolName},
				Sessions: v1alpha1.SessionLimitsSpec{ReconnectWindow: &metav1.Duration{Duration: fleetReconnectWindow}}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// readRendered waits for the StatefulSet and the config Secret holding
// both apps and the hub, and reads the apps' credentials as a user does.
func (h *fleetHarness) readRendered(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	creds := func(name string) (appCreds, error) {
		var app v1alpha1.CallsApp
		if err := h.c.Get(ctx, types.NamespacedName{Namespace: fleetNS, Name: name}, &app); err != nil {
			return appCreds{}, err
		}
		if app.Status.AppID == "" || app.Status.CredentialsSecretName == "" {
			return appCreds{}, fmt.Errorf("callsapp %s status has no app ID or credentials Secret yet", name)
		}
		var sec corev1.Secret
		if err := h.c.Get(ctx, types.NamespacedName{Namespace: fleetNS, Name: app.Status.CredentialsSecretName}, &sec); err != nil {
			return appCreds{}, err
		}
		return appCreds{app.Status.AppID, string(sec.Data[v1alpha1.SecretKeyAppSecret])}, nil
	}
	rendered := func() error {
		var err error
		if h.app, err = creds(fleetAppName); err != nil {
			return err
		}
		if h.other, err = creds(fleetOtherAppName); err != nil {
			return err
		}
		var sec corev1.Secret
		if err := h.c.Get(ctx, types.NamespacedName{Namespace: fleetNS, Name: render.ConfigSecretName(h.pool)}, &sec); err != nil {
			return err
		}
		pod, err := config.Parse(sec.Data[config.FileName])
		if err != nil {
			return err
		}
		if len(pod.Apps) != 2 || pod.Hub == "" {
			return fmt.Errorf("rendered config has %d apps, hub %q", len(pod.Apps), pod.Hub)
		}
		// The fleet section: a token, peers through the headless Service,
		// the pool's ordinals.
		f := pod.Fleet
		template := render.SFUName(h.pool) + "-{ordinal}." + render.InternalServiceName(h.pool) + "." + fleetNS + ".svc:" + strconv.Itoa(render.HTTPPort)
		if f == nil || len(f.Token) < 16 || f.PeerTemplate != template || !slices.Equal(f.Ordinals, []int{0, 1, 2}) {
			return fmt.Errorf("rendered fleet section %+v, want a token, peer template %s and ordinals [0 1 2]", redactToken(f), template)
		}
		var sts appsv1.StatefulSet
		if err := h.c.Get(ctx, types.NamespacedName{Namespace: fleetNS, Name: render.SFUName(h.pool)}, &sts); err != nil {
			return err
		}
		if ptr.Deref(sts.Spec.Replicas, 0) != fleetReplicas {
			return fmt.Errorf("statefulset has %d replicas", ptr.Deref(sts.Spec.Replicas, 0))
		}
		h.sts = &sts
		return nil
	}
	var lastErr error
	if !waitFor(30*time.Second, func() bool { lastErr = rendered(); return lastErr == nil }) {
		t.Fatalf("operator did not render the pool: %v\nmanager logs:\n%s", lastErr, h.manager.logs.String())
	}
}

// redactToken is f without its token, for failure messages.
func redactToken(f *config.Fleet) *config.Fleet {
	if f == nil {
		return nil
	}
	c := *f
	c.Token = fmt.Sprintf("(%d characters)", len(c.Token))
	return &c
}

// writeMountedConfig writes the config Secret's current content, as the
// kubelet mounts it, with the fleet mapped (mapFleet).
func (h *fleetHarness) writeMountedConfig() error {
	var sec corev1.Secret
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: fleetNS, Name: render.ConfigSecretName(h.pool)}, &sec); err != nil {
		return err
	}
	// Decoded as is (no defaults filled in), so only the peers differ from
	// the Secret.
	var pod config.Pod
	if err := json.Unmarshal(sec.Data[config.FileName], &pod); err != nil {
		return err
	}
	h.mapFleet(&pod)
	raw, err := json.Marshal(&pod)
	if err != nil {
		return err
	}
	h.configPath = filepath.Join(h.dir, "config", config.FileName)
	if err := os.MkdirAll(filepath.Dir(h.configPath), 0o700); err != nil {
		return err
	}
	return os.WriteFile(h.configPath, raw, 0o600)
}

// mapFleet is the one deviation from what the operator rendered. In a
// cluster, pods find each other through the peer template's DNS names
// (<pool>-sfu-<n>.<pool>-sfu-internal.<ns>.svc:8080, the headless
// Service); loopback processes have no cluster DNS and cannot all listen on
// 8080, so every pod of the pool is listed as a static peer on its loopback
// address (static peers win over the template, docs/fleet.md). The mounted
// file and the hub's answers (through the proxy in front of the hub) get
// the same mapping.
func (h *fleetHarness) mapFleet(pod *config.Pod) {
	if pod.Fleet == nil {
		return // readRendered insists on a fleet section
	}
	pod.Fleet.Peers = nil
	for i := range fleetReplicas {
		ip := "127.0.0." + strconv.Itoa(i+2)
		addr := ""
		if i < len(h.pods) {
			addr = net.JoinHostPort(ip, strconv.Itoa(h.pods[i].port))
		}
		pod.Fleet.Peers = append(pod.Fleet.Peers, config.FleetPeer{Ordinal: i, Address: addr})
	}
}

// createPod does the StatefulSet controller's part: a Pod named after the
// ordinal from the template, and the scheduler's (a node) and the
// kubelet's first status (Running, the pod's IP, not ready).
func (h *fleetHarness) createPod(t *testing.T, p *fleetPod) {
	t.Helper()
	ctx := context.Background()
	tmpl := h.sts.Spec.Template
	labels := map[string]string{}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	labels[appsv1.StatefulSetPodNameLabel] = p.name
	labels[appsv1.PodIndexLabel] = strconv.Itoa(p.ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: fleetNS, Labels: labels, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(h.sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = fleetNodeName
	pod.Spec.Hostname, pod.Spec.Subdomain = p.name, h.sts.Spec.ServiceName
	if err := h.c.Create(ctx, pod); err != nil {
		t.Fatalf("create pod %s: %v", p.name, err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}},
		HostIP: fleetNodeIP, HostIPs: []corev1.HostIP{{IP: fleetNodeIP}}, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now}},
	}
	if err := h.c.Status().Update(ctx, pod); err != nil {
		t.Fatalf("set status of pod %s: %v", p.name, err)
	}
	p.mu.Lock()
	p.ready, p.deleting = false, false
	p.mu.Unlock()
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// startPod does the kubelet's part: the container's command with its args
// and environment as rendered, $(VAR) references and downward-API fields
// resolved from the Pod object. Overridden for loopback: --listen (the
// pod's own address and a free port instead of :8080 on every address),
// --config (where the Secret is "mounted") and --udp-ip (several pods on
// one host bind their media port to their own address).
func (h *fleetHarness) startPod(t *testing.T, p *fleetPod) {
	t.Helper()
	var pod corev1.Pod
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: fleetNS, Name: p.name}, &pod); err != nil {
		t.Fatalf("get pod %s: %v", p.name, err)
	}
	ctr := pod.Spec.Containers[0]
	if len(ctr.Command) != 1 || ctr.Command[0] != render.Binary {
		t.Fatalf("sfu container command %v, want [%s]", ctr.Command, render.Binary)
	}
	fields := map[string]string{
		"metadata.name": pod.Name, "metadata.namespace": pod.Namespace,
		"status.podIP": pod.Status.PodIP, "status.hostIP": pod.Status.HostIP, "spec.nodeName": pod.Spec.NodeName,
	}
	vars := map[string]string{}
	var env []string
	for _, e := range ctr.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("env %s: only downward-API fields are resolved here", e.Name)
			}
			var ok bool
			if v, ok = fields[e.ValueFrom.FieldRef.FieldPath]; !ok {
				t.Fatalf("env %s: unknown field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	var args []string
	overridden := map[string]bool{}
	for _, a := range ctr.Args {
		a = envRef.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := vars[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
		switch {
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=" + net.JoinHostPort(p.ip, strconv.Itoa(p.port))
			overridden["listen"] = true
		case strings.HasPrefix(a, "--config="):
			if strings.TrimPrefix(a, "--config=") != render.ConfigPath {
				t.Fatalf("sfu reads its config from %s, the Secret is mounted at %s", a, render.ConfigPath)
			}
			a = "--config=" + h.configPath
			overridden["config"] = true
		}
		args = append(args, a)
	}
	if !overridden["listen"] || !overridden["config"] {
		t.Fatalf("rendered sfu args %v lack --listen or --config", ctr.Args)
	}
	args = append(args, "--udp-ip="+p.ip)
	proc := startProc(t, p.name, h.bin, args, env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs:\n%s", p.name, proc.logs.String())
		}
	})
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()
	if !waitFor(20*time.Second, func() bool { return getOK(p.url + "/health") }) {
		t.Fatalf("%s not healthy (args %v):\n%s", p.name, args, proc.logs.String())
	}
}

// kubelet mirrors each running pod's /ready into its Ready condition, and
// once a deleted pod's process has exited, removes the Pod object.
func (h *fleetHarness) kubelet() {
	defer close(h.kubeletDone)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-h.stopKubelet:
			return
		case <-tick.C:
		}
		for _, p := range h.pods {
			p.mu.Lock()
			proc, was, deleting := p.proc, p.ready, p.deleting
			p.mu.Unlock()
			if proc == nil {
				continue
			}
			if deleting && !proc.alive() {
				// Containers stopped: the kubelet confirms the deletion.
				err := h.c.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: p.name}},
					client.GracePeriodSeconds(0))
				if err != nil && !apierrors.IsNotFound(err) {
					fmt.Fprintf(&h.kubeletLog, "delete %s: %v\n", p.name, err)
					continue
				}
				p.mu.Lock()
				p.proc, p.ready = nil, false
				p.mu.Unlock()
				continue
			}
			ready := proc.alive() && getOK(p.url+"/ready")
			if ready == was {
				continue
			}
			if err := h.setReady(p.name, ready); err != nil {
				fmt.Fprintf(&h.kubeletLog, "set %s ready=%v: %v\n", p.name, ready, err)
				continue
			}
			fmt.Fprintf(&h.kubeletLog, "%s %s ready=%v\n", time.Now().Format("15:04:05.000"), p.name, ready)
			p.mu.Lock()
			p.ready = ready
			p.mu.Unlock()
		}
	}
}

func (h *fleetHarness) setReady(name string, ready bool) error {
	ctx := context.Background()
	var pod corev1.Pod
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: fleetNS, Name: name}, &pod); err != nil {
		return err
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	return h.c.Status().Update(ctx, &pod)
}

// waitPodsReady waits until every pod is ready and the SFUPool says so.
func (h *fleetHarness) waitPodsReady(t *testing.T) {
	t.Helper()
	var pool v1alpha1.SFUPool
	if !waitFor(30*time.Second, func() bool {
		if err := h.c.Get(context.Background(), client.ObjectKeyFromObject(h.pool), &pool); err != nil {
			return false
		}
		return ptr.Deref(pool.Status.ReadyReplicas, 0) == fleetReplicas
	}) {
		t.Fatalf("sfupool shows %d of %d pods ready; kubelet log:\n%s", ptr.Deref(pool.Status.ReadyReplicas, 0), fleetReplicas, h.kubeletLog.String())
	}
}

// ensureRunning brings back pods an earlier test stopped: a deleted pod is
// recreated from the template (the StatefulSet controller), a killed
// container restarted (the kubelet).
func (h *fleetHarness) ensureRunning(t *testing.T) {
	t.Helper()
	restarted := false
	for _, p := range h.pods {
		if proc := p.running(); proc != nil && proc.alive() {
			continue
		}
		p.mu.Lock()
		deleting := p.deleting
		p.mu.Unlock()
		if deleting {
			if !waitFor(10*time.Second, func() bool { return p.running() == nil }) {
				t.Fatalf("deleted pod %s not gone", p.name)
			}
			h.createPod(t, p)
		}
		h.startPod(t, p)
		restarted = true
	}
	if restarted {
		h.waitPodsReady(t)
	}
}

// deletePod is `kubectl delete pod` (graceful) followed by the kubelet's
// SIGTERM to the container.
func (h *fleetHarness) deletePod(t *testing.T, p *fleetPod) {
	t.Helper()
	if err := h.c.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: p.name}}); err != nil {
		t.Fatalf("delete pod %s: %v", p.name, err)
	}
	p.mu.Lock()
	p.deleting = true
	proc := p.proc
	p.mu.Unlock()
	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
}

// killPod is a crash: SIGKILL, no chance to drain or report.
func (h *fleetHarness) killPod(p *fleetPod) {
	if proc := p.running(); proc != nil {
		proc.kill()
	}
}

// owner is the ordinal a session ID names (its last 4 hex characters,
// docs/fleet.md).
func owner(t *testing.T, sid string) int {
	t.Helper()
	if len(sid) != 32 {
		t.Fatalf("session ID %q is not 32 characters", sid)
	}
	n, err := strconv.ParseUint(sid[28:], 16, 16)
	if err != nil {
		t.Fatalf("session ID %q: %v", sid, err)
	}
	return int(n)
}

// fleetClient is the Calls client's HTTP client. It connects from an
// address of its own, as a client outside the cluster does: the pods'
// calls to each other leave from 127.0.0.1, and each pod keeps its per-app
// quota per client IP.
var fleetClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fleetClientIP)}, Timeout: 5 * time.Second}).DialContext,
	},
}

// appCreds are a CallsApp's ID and secret, read from its Secret.
type appCreds struct{ id, secret string }

// call does one Calls API request as the pool's app on pod p and returns
// status, Content-Type and body.
func (h *fleetHarness) call(t *testing.T, p *fleetPod, method, path string, body any) (int, string, []byte) {
	t.Helper()
	return h.callAs(t, p, h.app, method, path, body)
}

func (h *fleetHarness) callAs(t *testing.T, p *fleetPod, app appCreds, method, path string, body any) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, p.url+"/v1/apps/"+app.id+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+app.secret)
	res, err := fleetClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Content-Type"), raw
}

// sessionOn creates a session that lives on pod p: sessions/new sent to p
// while p is among the least loaded stays there. The pods' views of each
// other's load are up to a poll old; when one was stale and the session
// went to another pod, the test waits for fresh views and asks again (the
// stray session has no client and is collected after the reconnect
// window).
func (h *fleetHarness) sessionOn(t *testing.T, p *fleetPod) string {
	t.Helper()
	var placed []string
	for range 3 {
		sid, _ := h.newSession(t, p, nil)
		o := owner(t, sid)
		if o == p.ordinal {
			if len(placed) > 0 {
				t.Logf("sessions/new sent to %s went to pods %v first (views of the load not yet fresh)", p.name, placed)
			}
			return sid
		}
		placed = append(placed, strconv.Itoa(o))
		h.waitViews()
	}
	loads := ""
	for _, q := range h.pods {
		loads += fmt.Sprintf(" %s: %v sessions;", q.name, h.podStats(t, q).sessions)
	}
	t.Fatalf("sessions/new sent to %s three times went to pods %v;%s", p.name, placed, loads)
	return ""
}

// newSession is sessions/new sent to pod p; it returns the session ID.
func (h *fleetHarness) newSession(t *testing.T, p *fleetPod, body any) (string, *sdpBody) {
	t.Helper()
	st, _, raw := h.call(t, p, "POST", "/sessions/new", body)
	var out struct {
		SessionID          string   `json:"sessionId"`
		SessionDescription *sdpBody `json:"sessionDescription"`
	}
	if st != http.StatusCreated || json.Unmarshal(raw, &out) != nil || len(out.SessionID) != 32 {
		t.Fatalf("sessions/new on %s: %d %s", p.name, st, raw)
	}
	return out.SessionID, out.SessionDescription
}

// Video frames: a VP8-shaped header (key frames carry the start code, so
// the SFU sees them as key frames) followed by the frame number and bytes
// derived from it. A frame of 2,500 bytes spans three RTP packets, so a
// subscriber checks that whole frames are reassembled intact.
const frameSize = 2500

func videoFrame(n uint32, key bool) []byte {
	b := make([]byte, frameSize)
	if key {
		b[0] = 0x10 // P bit clear: key frame; show_frame
		copy(b[3:], []byte{0x9d, 0x01, 0x2a, 16, 0, 16, 0})
	} else {
		b[0] = 0x11
	}
	binary.BigEndian.PutUint32(b[10:], n)
	for i := 14; i < len(b); i++ {
		b[i] = byte(uint32(i)*31 + n)
	}
	return b
}

// checkFrame reports whether b is an intact frame and whether it is a key frame.
func checkFrame(b []byte) (ok, key bool) {
	if len(b) != frameSize {
		return false, false
	}
	n := binary.BigEndian.Uint32(b[10:])
	key = b[0]&0x01 == 0
	return bytes.Equal(b, videoFrame(n, key)), key
}

// publisher sends VP8 tracks at 30 frames per second: a key frame first
// and whenever a PLI asks for one, delta frames otherwise.
type publisher struct {
	pc   *webrtc.PeerConnection
	sid  string
	mids []string // one per track, in the order of the names
	plis atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

// publish opens a session on pod p and publishes one video track per name.
func (h *fleetHarness) publish(t *testing.T, p *fleetPod, names ...string) *publisher {
	t.Helper()
	pub := &publisher{pc: loopbackPeer(t), stop: make(chan struct{})}
	type sending struct {
		track   *webrtc.TrackLocalStaticSample
		keyNext atomic.Bool
	}
	var out []*sending
	var reqTracks []map[string]string
	var trs []*webrtc.RTPTransceiver
	for _, name := range names {
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, name, "stream-"+name)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := pub.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		s := &sending{track: track}
		s.keyNext.Store(true)
		out = append(out, s)
		trs = append(trs, tr)
	}
	offer, err := pub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	sdp := localSDP(t, pub.pc, offer)
	for i, tr := range trs {
		pub.mids = append(pub.mids, tr.Mid())
		reqTracks = append(reqTracks, map[string]string{"location": "local", "mid": tr.Mid(), "trackName": names[i]})
	}
	pub.sid = h.sessionOn(t, p)
	var res tracksResp
	st, _, raw := h.call(t, p, "POST", "/sessions/"+pub.sid+"/tracks/new", map[string]any{"sessionDescription": sdp, "tracks": reqTracks})
	if st != http.StatusOK || json.Unmarshal(raw, &res) != nil || len(res.Tracks) != len(names) || res.SessionDescription == nil {
		t.Fatalf("publish %v on %s: %d %s", names, p.name, st, raw)
	}
	for _, tr := range res.Tracks {
		if tr.ErrorCode != "" {
			t.Fatalf("publish %v on %s: %s", names, p.name, raw)
		}
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	for i, tr := range trs {
		s := out[i]
		pub.done.Add(1)
		go func() {
			defer pub.done.Done()
			for {
				pkts, _, err := tr.Sender().ReadRTCP()
				if err != nil {
					return
				}
				for _, pk := range pkts {
					if _, ok := pk.(*rtcp.PictureLossIndication); ok {
						pub.plis.Add(1)
						s.keyNext.Store(true)
					}
				}
			}
		}()
	}
	pub.done.Add(1)
	go func() {
		defer pub.done.Done()
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-pub.stop:
				return
			case <-tick.C:
			}
			for _, s := range out {
				_ = s.track.WriteSample(media.Sample{Data: videoFrame(n, s.keyNext.Swap(false)), Duration: 33 * time.Millisecond})
			}
		}
	}()
	t.Cleanup(pub.end)
	return pub
}

// end is the user hanging up: stop sending and close the PeerConnection.
func (pub *publisher) end() {
	select {
	case <-pub.stop:
		return
	default:
	}
	close(pub.stop)
	_ = pub.pc.Close()
	pub.done.Wait()
}

// subscriber pulls tracks and reassembles their frames.
type subscriber struct {
	pc         *webrtc.PeerConnection
	sid        string
	mids       []string     // the pulled tracks, in the order of the names
	frames     atomic.Int64 // intact frames, all tracks
	bad        atomic.Int64 // corrupted frames
	keyframes  atomic.Int64
	keyedTrack atomic.Int64  // tracks that delivered a key frame
	deltaFirst atomic.Int64  // tracks whose first intact frame was a delta frame
	askedKey   atomic.Int64  // PLIs sent because only delta frames came
	ssrc       atomic.Uint32 // of the first track received
}

// newSubscriber is a client that reassembles the frames of the video
// tracks it receives and checks each one. Like a browser's video receiver,
// it asks for a key frame (PLI) when a track has had only delta frames for
// a while: it cannot decode those.
func newSubscriber(t *testing.T) *subscriber {
	t.Helper()
	sub := &subscriber{pc: loopbackPeer(t)}
	sub.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sub.ssrc.CompareAndSwap(0, uint32(tr.SSRC()))
		sb := samplebuilder.New(64, &codecs.VP8Packet{}, 90000)
		var firstDelta, lastAsk time.Time
		frames, keyed := 0, false
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(pkt)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				ok, key := checkFrame(s.Data)
				if !ok {
					sub.bad.Add(1)
					continue
				}
				if frames++; frames == 1 && !key {
					sub.deltaFirst.Add(1)
				}
				sub.frames.Add(1)
				if key {
					sub.keyframes.Add(1)
					if !keyed {
						keyed = true
						sub.keyedTrack.Add(1)
					}
					continue
				}
				if keyed {
					continue
				}
				now := time.Now()
				if firstDelta.IsZero() {
					firstDelta = now
				}
				if now.Sub(firstDelta) >= keyframeWait && now.Sub(lastAsk) >= keyframeWait {
					lastAsk = now
					sub.askedKey.Add(1)
					_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
				}
			}
		}
	})
	return sub
}

// keyframeWait is how long a subscriber with only delta frames waits
// before it asks for a key frame (libwebrtc waits 200 ms).
const keyframeWait = 300 * time.Millisecond

// subscribe opens a session on pod p and pulls (pubSID, names) into it,
// sending tracks/new and renegotiate through pod via (p itself or another
// pod, which forwards them to the owner).
func (h *fleetHarness) subscribe(t *testing.T, p, via *fleetPod, pubSID string, names ...string) *subscriber {
	t.Helper()
	sub := newSubscriber(t)
	sub.sid = h.sessionOn(t, p)
	var reqTracks []map[string]string
	for _, name := range names {
		reqTracks = append(reqTracks, map[string]string{"location": "remote", "sessionId": pubSID, "trackName": name})
	}
	var res tracksResp
	st, _, raw := h.call(t, via, "POST", "/sessions/"+sub.sid+"/tracks/new", map[string]any{"tracks": reqTracks})
	if st != http.StatusOK || json.Unmarshal(raw, &res) != nil || len(res.Tracks) != len(names) || res.SessionDescription == nil {
		t.Fatalf("pull %v into a session on %s through %s: %d %s", names, p.name, via.name, st, raw)
	}
	for _, tr := range res.Tracks {
		if tr.ErrorCode != "" {
			t.Fatalf("pull %v through %s: %s", names, via.name, raw)
		}
		sub.mids = append(sub.mids, tr.Mid)
	}
	if err := sub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: res.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := sub.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, raw := h.call(t, via, "PUT", "/sessions/"+sub.sid+"/renegotiate", map[string]any{"sessionDescription": localSDP(t, sub.pc, ans)}); st != http.StatusOK {
		t.Fatalf("renegotiate through %s: %d %s", via.name, st, raw)
	}
	return sub
}

// waitFrames waits until the subscriber has n more intact frames than it
// had and every pulled track has delivered a key frame.
func (sub *subscriber) waitFrames(t *testing.T, who string, n int64, timeout time.Duration) {
	t.Helper()
	from := sub.frames.Load()
	tracks := int64(len(sub.mids))
	if !waitFor(timeout, func() bool { return sub.frames.Load() >= from+n && sub.keyedTrack.Load() == tracks }) {
		t.Fatalf("subscriber %s: %d intact frames, %d of %d tracks with a key frame (asked for one %d times) in %v, want %d more frames; %d corrupted",
			who, sub.frames.Load()-from, sub.keyedTrack.Load(), tracks, sub.askedKey.Load(), timeout, n, sub.bad.Load())
	}
	if b := sub.bad.Load(); b != 0 {
		t.Fatalf("subscriber %s: %d corrupted frames", who, b)
	}
	if d := sub.deltaFirst.Load(); d > 0 {
		// sfu/forward starts a down track on the key frame it asked for
		// when it was bound, which may be written before the
		// subscriber's transport is up and lost; reported, tolerated here
		// because a browser asks again as this client does.
		t.Logf("subscriber %s: %d tracks began with a delta frame; it asked for a key frame %d times", who, d, sub.askedKey.Load())
	}
}

// trackStatus reads the status of the session's track with mid from GET
// session on pod p.
func (h *fleetHarness) trackStatus(t *testing.T, p *fleetPod, sid, mid string) string {
	t.Helper()
	st, _, raw := h.call(t, p, "GET", "/sessions/"+sid, nil)
	var out struct {
		Tracks []struct {
			Mid    string `json:"mid"`
			Status string `json:"status"`
		} `json:"tracks"`
	}
	if st != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("GET session %s on %s: %d %s", sid, p.name, st, raw)
	}
	for _, tr := range out.Tracks {
		if tr.Mid == mid {
			return tr.Status
		}
	}
	return ""
}

// TestOperatorRenderedFleetActsAsOneSFU runs the fleet tests of issue 6 on
// one fleet the operator rendered (see fleetHarness). Each subtest starts
// from an idle fleet with every pod running. Where a subtest needs a
// session on a given pod it sends sessions/new to that pod while the pod
// is among the least loaded (placement keeps a session on the entry pod on
// a tie) and checks the pod the session ID names (sessionOn).
func TestOperatorRenderedFleetActsAsOneSFU(t *testing.T) {
	h := startOperatorFleet(t)
	a, b, c := h.pods[0], h.pods[1], h.pods[2]

	t.Run("PublisherOnAReachesSubscribersOnBAndCAndA", func(t *testing.T) {
		h.waitIdle(t)
		pub := h.publish(t, a, "cam")
		// B's subscriber negotiates entirely through C, C's through A.
		subB := h.subscribe(t, b, c, pub.sid, "cam")
		subC := h.subscribe(t, c, a, pub.sid, "cam")
		subB.waitFrames(t, "on B", 30, 20*time.Second)
		subC.waitFrames(t, "on C", 30, 20*time.Second)
		// Every pod now has one session and the pods' views of each
		// other's load are fresh: a second session stays on A.
		h.waitViews()
		subA := h.subscribe(t, a, a, pub.sid, "cam")
		subA.waitFrames(t, "on A", 30, 20*time.Second)
		for _, p := range []*fleetPod{a, b, c} {
			if st := h.trackStatus(t, p, subB.sid, subB.mids[0]); st != "active" {
				t.Fatalf("GET of B's session through %s: pulled track %q, want active", p.name, st)
			}
		}
	})

	t.Run("CallForSessionOnAnotherPodAnswersAsOwner", func(t *testing.T) {
		h.ensureRunning(t)
		sid, _ := h.newSession(t, a, nil)
		own := h.pods[owner(t, sid)]
		gone := strings.Repeat("0", 28) + fmt.Sprintf("%04x", own.ordinal) // well-formed, the owner's, never created
		cases := []struct {
			name, method, path string
			app                appCreds
			body               any
		}{
			{"get session", "GET", "/sessions/" + sid, h.app, nil},
			{"bad body", "PUT", "/sessions/" + sid + "/renegotiate", h.app, "{not json"},
			{"no answer pending", "PUT", "/sessions/" + sid + "/renegotiate", h.app, `{"sessionDescription":{"type":"answer","sdp":"v=0"}}`},
			{"wrong secret", "GET", "/sessions/" + sid, appCreds{h.app.id, "not-the-secret"}, nil},
			{"other app's secret", "GET", "/sessions/" + sid, appCreds{h.app.id, h.other.secret}, nil},
			{"session of another app", "GET", "/sessions/" + sid, h.other, nil},
			{"unknown session", "GET", "/sessions/" + gone, h.app, nil},
			{"close unknown mid", "PUT", "/sessions/" + sid + "/tracks/close", h.app, `{"tracks":[{"mid":"9"}],"force":true}`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				stO, ctO, bodyO := h.callAs(t, own, tc.app, tc.method, tc.path, tc.body)
				if len(bodyO) == 0 {
					t.Fatalf("owner answered %d with an empty body", stO)
				}
				for _, p := range h.pods {
					if p == own {
						continue
					}
					st, ct, body := h.callAs(t, p, tc.app, tc.method, tc.path, tc.body)
					if st != stO || ct != ctO || !bytes.Equal(body, bodyO) {
						t.Fatalf("owner %s answered %d %s %s; %s answered %d %s %s", own.name, stO, ctO, bodyO, p.name, st, ct, body)
					}
				}
			})
		}
	})

	t.Run("KeyframeRequestFromSubscriberOnBReachesPublisherOnA", func(t *testing.T) {
		h.waitIdle(t)
		pub := h.publish(t, a, "screen")
		sub := h.subscribe(t, b, b, pub.sid, "screen")
		sub.waitFrames(t, "on B", 15, 20*time.Second)
		// Quiet period: once the subscriber has its key frame nobody asks
		// for another (the SFU's own request when the pull started is
		// debounced, 500 ms).
		time.Sleep(time.Second)
		plis, keys := pub.plis.Load(), sub.keyframes.Load()
		time.Sleep(1500 * time.Millisecond)
		if n := pub.plis.Load(); n != plis {
			t.Fatalf("publisher got %d PLIs while nobody asked", n-plis)
		}
		if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: sub.ssrc.Load()}}); err != nil {
			t.Fatal(err)
		}
		asked := time.Now()
		if !waitFor(10*time.Second, func() bool { return pub.plis.Load() > plis }) {
			t.Fatal("the PLI of the subscriber on B did not reach the publisher on A")
		}
		reached := time.Since(asked)
		if !waitFor(10*time.Second, func() bool { return sub.keyframes.Load() > keys }) {
			t.Fatal("no key frame reached the subscriber on B after its PLI")
		}
		t.Logf("PLI from B reached the publisher on A in %v; the key frame was back on B in %v",
			reached.Round(time.Millisecond), time.Since(asked).Round(time.Millisecond))
	})

	t.Run("DataChannelPublishedOnAReachesSubscribersOnBAndC", func(t *testing.T) {
		h.waitIdle(t)
		pub := h.dcEndpoint(t, a, a)
		pubDC, _ := h.openChannel(t, pub, a, map[string]any{"location": "local", "dataChannelName": "chat"})
		subB := h.dcEndpoint(t, b, c) // negotiated entirely through C
		subC := h.dcEndpoint(t, c, c)
		_, inB := h.openChannel(t, subB, c, map[string]any{"location": "remote", "sessionId": pub.sid, "dataChannelName": "chat"})
		_, inC := h.openChannel(t, subC, c, map[string]any{"location": "remote", "sessionId": pub.sid, "dataChannelName": "chat"})
		var want []string
		for i := range 100 {
			m := fmt.Sprintf("message %03d %s", i, strings.Repeat("x", i))
			if err := pubDC.SendText(m); err != nil {
				t.Fatal(err)
			}
			want = append(want, m)
		}
		for who, in := range map[string]*dcInbox{"on B": inB, "on C": inC} {
			if !waitFor(10*time.Second, func() bool { return len(in.get()) >= len(want) }) {
				t.Fatalf("subscriber %s got %d of %d messages", who, len(in.get()), len(want))
			}
			if got := in.get(); !slices.Equal(got, want) {
				t.Fatalf("subscriber %s got the messages out of order or changed: first %q", who, got[0])
			}
		}
	})

	t.Run("DrainingPodAKeepsItsCallWhileNewSessionsLandOnBAndC", func(t *testing.T) {
		h.waitIdle(t)
		pub := h.publish(t, a, "talk")
		subB := h.subscribe(t, b, b, pub.sid, "talk")
		subC := h.subscribe(t, c, c, pub.sid, "talk")
		subB.waitFrames(t, "on B", 30, 20*time.Second)
		subC.waitFrames(t, "on C", 30, 20*time.Second)

		sigterm := time.Now()
		h.deletePod(t, a)
		if !waitFor(5*time.Second, func() bool { return !getOK(a.url + "/ready") }) {
			t.Fatal("pod A still ready 5 s after SIGTERM")
		}
		// New sessions land on B or C, whichever pod they are sent to.
		for _, p := range h.pods {
			sid, _ := h.newSession(t, p, nil)
			if owner(t, sid) == a.ordinal {
				t.Fatalf("a new session sent to %s landed on the draining pod A", p.name)
			}
		}
		// The SFUPool shows A draining with its one session and a deadline.
		var shown v1alpha1.PoolPod
		if !waitFor(20*time.Second, func() bool {
			var pool v1alpha1.SFUPool
			if err := h.c.Get(context.Background(), client.ObjectKeyFromObject(h.pool), &pool); err != nil {
				return false
			}
			for _, p := range pool.Status.Pods {
				if p.Name == a.name {
					shown = p
				}
			}
			return shown.Draining && !shown.Ready && shown.DrainDeadline != nil && shown.Sessions == 1
		}) {
			t.Fatalf("sfupool status of pod A: %+v; want draining, not ready, with 1 session and a deadline", shown)
		}
		deadline := sigterm.Add(fleetDrainTimeout)
		if d := shown.DrainDeadline.Sub(deadline); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("sfupool shows pod A's drain deadline %v, want about %v", shown.DrainDeadline, deadline)
		}
		t.Logf("sfupool status %v after SIGTERM: %s draining, %d session, deadline %s",
			time.Since(sigterm).Round(time.Millisecond), shown.Name, shown.Sessions, shown.DrainDeadline.UTC().Format(time.RFC3339))

		// The call goes on: media reaches B and C, A's session answers.
		subB.waitFrames(t, "on B while A drains", 60, 10*time.Second)
		subC.waitFrames(t, "on C while A drains", 60, 10*time.Second)
		if st := h.trackStatus(t, b, pub.sid, pub.mids[0]); st != "active" {
			t.Fatalf("the draining pod's publication: %q through B, want active", st)
		}
		stopped := func() bool { proc := a.running(); return proc == nil || !proc.alive() }
		if stopped() {
			t.Fatal("pod A stopped with its call still on")
		}
		// The client ends the call: A has nothing left and stops, well
		// before its deadline.
		ended := time.Now()
		pub.end()
		if !waitFor(fleetReconnectWindow+15*time.Second, stopped) {
			t.Fatalf("pod A still running %v after its call ended", time.Since(ended).Round(time.Millisecond))
		}
		if time.Now().After(deadline) {
			t.Fatal("pod A ran to its drain deadline")
		}
		t.Logf("pod A stopped %v after the call ended, %v after SIGTERM (drain timeout %v)",
			time.Since(ended).Round(time.Millisecond), time.Since(sigterm).Round(time.Millisecond), fleetDrainTimeout)
		h.waitDrainEvents(t, a)
	})

	t.Run("KillingPodALeavesPullsOnBInactiveAndNothingLeaks", func(t *testing.T) {
		h.waitIdle(t)
		before := h.podStats(t, b)
		// Three tracks, so B runs three relay streams: a leak per relay
		// stands out of the goroutine count's noise.
		tracks := []string{"kill-0", "kill-1", "kill-2"}
		pub := h.publish(t, a, tracks...)
		subB := h.subscribe(t, b, b, pub.sid, tracks...)
		subC := h.subscribe(t, c, c, pub.sid, tracks...)
		subB.waitFrames(t, "on B", 60, 20*time.Second)
		subC.waitFrames(t, "on C", 60, 20*time.Second)
		h.waitViews()
		subB2 := h.subscribe(t, b, b, pub.sid, tracks...)
		subB2.waitFrames(t, "2 on B", 60, 20*time.Second)
		during := h.podStats(t, b)
		if during.pulled != 6 {
			t.Fatalf("pod B shows %v pulled tracks, want 6", during.pulled)
		}

		killed := time.Now()
		h.killPod(a)
		if !waitFor(30*time.Second, func() bool {
			for _, s := range []*subscriber{subB, subB2} {
				for _, mid := range s.mids {
					if h.trackStatus(t, b, s.sid, mid) != "inactive" {
						return false
					}
				}
			}
			return true
		}) {
			t.Fatalf("pulls on B not inactive 30 s after pod A was killed: %q", h.trackStatus(t, b, subB.sid, subB.mids[0]))
		}
		t.Logf("pulls on B inactive %v after pod A was killed", time.Since(killed).Round(time.Millisecond))
		// Calls for the dead pod's sessions answer as for an ended session.
		if st, _, body := h.call(t, c, "GET", "/sessions/"+pub.sid, nil); st != http.StatusGone {
			t.Fatalf("GET of a session of the dead pod through C: %d %s", st, body)
		}
		// The clients hang up; B collects their sessions after the
		// reconnect window and must be back where it was before the call.
		for _, s := range []*subscriber{subB, subB2, subC} {
			_ = s.pc.Close()
		}
		ended := time.Now()
		var after podStats
		var rule string
		back := func(final bool) bool {
			after = h.podStats(t, b)
			var memOK bool
			memOK, rule = memoryBack(before, after, ended, final)
			return memOK && after.sessions == 0 && after.pulled == 0 && after.goroutines <= before.goroutines+goroutineTolerance
		}
		settled := waitFor(20*time.Second, func() bool { return back(false) }) || back(true)
		t.Logf("pod B before the call: %s; during: %s; after: %s (goroutines within %d; memory: %s)",
			before, during, after, goroutineTolerance, rule)
		if !settled {
			t.Fatal("pod B did not return to its baseline after pod A died and the call ended")
		}
		// B still serves.
		h.newSession(t, b, nil)
	})

	t.Run("FleetKeepsServingWithoutTheManager", func(t *testing.T) {
		h.waitIdle(t)
		// The manager (operator and hub) dies; the pods keep their last
		// configuration and each other.
		h.manager.kill()
		time.Sleep(2 * time.Second) // the pods' hub polls fail meanwhile
		pub := h.publish(t, a, "after-manager")
		sub := h.subscribe(t, b, c, pub.sid, "after-manager")
		sub.waitFrames(t, "on B without the manager", 30, 20*time.Second)
		for _, p := range h.pods {
			if !getOK(p.url + "/ready") {
				t.Fatalf("%s unready without the manager", p.name)
			}
		}
	})
}

// dcPeer is a client with a DataChannel transport to its session.
type dcPeer struct {
	pc  *webrtc.PeerConnection
	sid string
}

// dcEndpoint opens a session on pod p and establishes its DataChannel
// transport through pod via (Calls datachannels/establish without an
// offer). It answers "setup:active" as browsers do.
func (h *fleetHarness) dcEndpoint(t *testing.T, p, via *fleetPod) *dcPeer {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	d := &dcPeer{pc: pc}
	d.sid = h.sessionOn(t, p)
	var res struct {
		SessionDescription *sdpBody `json:"sessionDescription"`
	}
	st, _, raw := h.call(t, via, "POST", "/sessions/"+d.sid+"/datachannels/establish",
		map[string]any{"dataChannel": map[string]any{"location": "remote", "dataChannelName": "server-events"}})
	if st != http.StatusOK || json.Unmarshal(raw, &res) != nil || res.SessionDescription == nil || res.SessionDescription.Type != "offer" {
		t.Fatalf("datachannels/establish through %s: %d %s", via.name, st, raw)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: res.SessionDescription.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, raw := h.call(t, via, "PUT", "/sessions/"+d.sid+"/renegotiate", map[string]any{"sessionDescription": localSDP(t, pc, ans)}); st != http.StatusOK {
		t.Fatalf("renegotiate through %s: %d %s", via.name, st, raw)
	}
	if !waitFor(10*time.Second, func() bool { return pc.ConnectionState() == webrtc.PeerConnectionStateConnected }) {
		t.Fatalf("DataChannel session on %s not connected: %s", p.name, pc.ConnectionState())
	}
	return d
}

// dcInbox collects a channel's text messages in arrival order.
type dcInbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *dcInbox) get() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

// openChannel asks for one channel (datachannels/new through pod via) and
// opens the client's side of it with the id the SFU allocated.
func (h *fleetHarness) openChannel(t *testing.T, d *dcPeer, via *fleetPod, item map[string]any) (*webrtc.DataChannel, *dcInbox) {
	t.Helper()
	var res struct {
		DataChannels []struct {
			ID        *uint16 `json:"id"`
			ErrorCode string  `json:"errorCode"`
		} `json:"dataChannels"`
	}
	st, _, raw := h.call(t, via, "POST", "/sessions/"+d.sid+"/datachannels/new", map[string]any{"dataChannels": []map[string]any{item}})
	if st != http.StatusOK || json.Unmarshal(raw, &res) != nil || len(res.DataChannels) != 1 || res.DataChannels[0].ID == nil || res.DataChannels[0].ErrorCode != "" {
		t.Fatalf("datachannels/new %v through %s: %d %s", item, via.name, st, raw)
	}
	yes := true
	dc, err := d.pc.CreateDataChannel(fmt.Sprint(item["dataChannelName"]), &webrtc.DataChannelInit{Negotiated: &yes, ID: res.DataChannels[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	in := &dcInbox{}
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		in.mu.Lock()
		in.msgs = append(in.msgs, string(m.Data))
		in.mu.Unlock()
	})
	if !waitFor(10*time.Second, func() bool { return dc.ReadyState() == webrtc.DataChannelStateOpen }) {
		t.Fatalf("channel %v not open: %s", item, dc.ReadyState())
	}
	return dc, in
}

// waitDrainEvents waits for the SFUPool's DrainStarted Event about pod p
// and its DrainFinished Event saying the sessions ended before the drain
// timeout, as `kubectl events` shows them.
func (h *fleetHarness) waitDrainEvents(t *testing.T, p *fleetPod) {
	t.Helper()
	var seen []string
	if !waitFor(20*time.Second, func() bool {
		var list eventsv1.EventList
		if err := h.c.List(context.Background(), &list, client.InNamespace(fleetNS)); err != nil {
			return false
		}
		seen = seen[:0]
		started, finished := false, false
		for _, e := range list.Items {
			if e.Regarding.Kind != "SFUPool" || e.Regarding.Name != fleetPoolName || !strings.Contains(e.Note, p.name+" ") {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Note)
			started = started || e.Reason == "DrainStarted"
			finished = finished || e.Reason == "DrainFinished" && strings.Contains(e.Note, "ended before the drain timeout")
		}
		return started && finished
	}) {
		t.Fatalf("no DrainStarted and DrainFinished (sessions ended in time) Events for %s; events: %q", p.name, seen)
	}
	t.Logf("events: %q", seen)
}

// waitIdle brings back pods an earlier subtest stopped and waits until no
// pod has a session left (the earlier subtests' clients have hung up) and
// the pods' views of each other's load are fresh.
func (h *fleetHarness) waitIdle(t *testing.T) {
	t.Helper()
	h.ensureRunning(t)
	var left []string
	if !waitFor(fleetReconnectWindow+15*time.Second, func() bool {
		left = left[:0]
		for _, p := range h.pods {
			if n := h.podStats(t, p).sessions; n != 0 {
				left = append(left, fmt.Sprintf("%s: %v", p.name, n))
			}
		}
		return len(left) == 0
	}) {
		t.Fatalf("sessions left from earlier subtests: %v", left)
	}
	h.waitViews()
}

// waitViews waits until every pod has polled its peers' load since the
// last change (pods poll once a second, docs/fleet.md).
func (h *fleetHarness) waitViews() { time.Sleep(1200 * time.Millisecond) }

// goroutineTolerance allows for goroutines that come and go with the
// hub's long poll, the usage reporter, the fleet's load polls and idle
// HTTP connections (measured: B ends one below its baseline, its
// connections with the dead A gone). A leak of one goroutine per relay
// stream (three) exceeds it.
const goroutineTolerance = 1

// memoryBack compares a pod's memory after a call with before it. The heap
// in use holds garbage until the next collection, which may come late on
// an idle pod: once the pod has collected since the call ended, the heap
// must be within 25% + 1 MiB of before; without such a collection (final
// check) within the collector's own slack, twice the heap before (GOGC
// 100). The resident set (no Go metrics exported) must be within 8 MiB.
func memoryBack(before, after podStats, ended time.Time, final bool) (bool, string) {
	if after.goroutines < 0 {
		return after.memory <= before.memory+8<<20, "resident set within 8 MiB"
	}
	if after.lastGC >= float64(ended.UnixNano())/1e9 {
		return after.memory <= before.memory*1.25+1<<20, "collected since the call ended: heap within 25% + 1 MiB"
	}
	if final {
		return after.memory <= 2*before.memory, "no collection since the call ended: heap within twice its size before"
	}
	return false, "waiting for a collection"
}

// podStats is what a pod's /metrics says about its load and runtime.
type podStats struct {
	sessions   float64 // switchboard_sessions, all apps
	pulled     float64 // switchboard_tracks{location="remote"} of the app
	goroutines int     // go_goroutines; -1 when not exported
	memory     float64 // go_memstats_heap_inuse_bytes, or the resident set (see podStats)
	lastGC     float64 // go_memstats_last_gc_time_seconds
	source     string
}

func (s podStats) String() string {
	g := "goroutines not exported"
	if s.goroutines >= 0 {
		g = strconv.Itoa(s.goroutines) + " goroutines"
	}
	return fmt.Sprintf("%v sessions, %v pulled tracks, %s, %.1f MiB %s", s.sessions, s.pulled, g, s.memory/(1<<20), s.source)
}

// podStats reads the pod's /metrics.
func (h *fleetHarness) podStats(t *testing.T, p *fleetPod) podStats {
	t.Helper()
	res, err := fleetClient.Get(p.url + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", p.name, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	val := func(series string) (float64, bool) {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, series+" "); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	st := podStats{goroutines: -1, source: "heap in use"}
	st.pulled, _ = val(`switchboard_tracks{app="` + h.app.id + `",location="remote"}`)
	for _, app := range []appCreds{h.app, h.other} {
		n, _ := val(`switchboard_sessions{app="` + app.id + `"}`)
		st.sessions += n
	}
	g, ok := val("go_goroutines")
	if !ok {
		t.Fatalf("%s's /metrics has no go_goroutines", p.name)
	}
	st.goroutines = int(g)
	st.memory, _ = val("go_memstats_heap_inuse_bytes")
	st.lastGC, _ = val("go_memstats_last_gc_time_seconds")
	return st
}
