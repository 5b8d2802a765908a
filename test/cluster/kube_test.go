//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// env is what run.sh tells the test binary.
type env struct {
	namespace, pool, app string
	replicas             int
	drainTimeout         time.Duration
	timings              string
}

func loadEnv(t *testing.T) env {
	t.Helper()
	get := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s is not set: run this binary through hack/e2e/run.sh (make test-e2e)", k)
		}
		return v
	}
	e := env{namespace: get("E2E_NAMESPACE"), pool: get("E2E_POOL"), app: get("E2E_APP"), timings: os.Getenv("E2E_TIMINGS")}
	var err error
	if e.replicas, err = strconv.Atoi(get("E2E_REPLICAS")); err != nil || e.replicas < 1 {
		t.Fatalf("E2E_REPLICAS=%q: want a positive number", os.Getenv("E2E_REPLICAS"))
	}
	if e.drainTimeout, err = time.ParseDuration(get("E2E_DRAIN_TIMEOUT")); err != nil {
		t.Fatalf("E2E_DRAIN_TIMEOUT: %v", err)
	}
	return e
}

// kubectl runs kubectl (on PATH inside the netns, KUBECONFIG set by
// in-netns) and returns its standard output.
func kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (e env) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(append([]string{"-n", e.namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getJSON reads one object into out.
func (e env) getJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	raw := e.kubectl(t, append(append([]string{"get"}, args...), "-o", "json")...)
	if err := json.Unmarshal([]byte(raw), out); err != nil {
		t.Fatalf("kubectl get %v: %v", args, err)
	}
}

// secretValue reads one key of a Secret, base64-decoded.
func (e env) secretValue(t *testing.T, name, key string) string {
	t.Helper()
	var s struct {
		Data map[string]string `json:"data"`
	}
	e.getJSON(t, &s, "secret", name)
	raw, err := base64.StdEncoding.DecodeString(s.Data[key])
	if err != nil || len(raw) == 0 {
		t.Fatalf("secret %s has no %s (keys: %v)", name, key, keys(s.Data))
	}
	return string(raw)
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// appStatus is the part of CallsApp status the test reads.
type appStatus struct {
	Status struct {
		AppID                 string `json:"appID"`
		Endpoint              string `json:"endpoint"`
		CredentialsSecretName string `json:"credentialsSecretName"`
		Live                  *struct {
			Sessions int64 `json:"sessions"`
			Tracks   int64 `json:"tracks"`
		} `json:"live"`
		Usage *struct {
			EgressBytes    int64  `json:"egressBytes"`
			SFUEgressBytes int64  `json:"sfuEgressBytes"`
			IngressBytes   int64  `json:"ingressBytes"`
			Egress         string `json:"egress"`
		} `json:"usage"`
	} `json:"status"`
}

// poolStatus is the part of SFUPool status the test reads.
type poolStatus struct {
	Status struct {
		ReadyReplicas    *int32 `json:"readyReplicas"`
		DesiredReplicas  *int32 `json:"desiredReplicas"`
		DrainingReplicas int32  `json:"drainingReplicas"`
		Sessions         *int64 `json:"sessions"`
		Pods             []struct {
			Name          string `json:"name"`
			Ready         bool   `json:"ready"`
			Draining      bool   `json:"draining"`
			DrainDeadline string `json:"drainDeadline"`
			Sessions      int64  `json:"sessions"`
		} `json:"pods"`
	} `json:"status"`
}

// podInfo is the part of a Pod the test reads.
type podInfo struct {
	Metadata struct {
		Name              string  `json:"name"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

func (p podInfo) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// pod returns the pod, or false when it does not exist.
func (e env) pod(t *testing.T, name string) (podInfo, bool) {
	t.Helper()
	out, err := kubectl("-n", e.namespace, "get", "pod", name, "-o", "json", "--ignore-not-found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return podInfo{}, false
	}
	var p podInfo
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return p, true
}

// timings records the test's phases for run.sh's table.
type timings struct {
	mu    sync.Mutex
	path  string
	start time.Time
	name  string
}

func (tm *timings) begin(t *testing.T, name string) {
	t.Helper()
	tm.end(t)
	tm.mu.Lock()
	tm.name, tm.start = name, time.Now()
	tm.mu.Unlock()
	t.Logf("---- %s", name)
}

func (tm *timings) end(t *testing.T) {
	t.Helper()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.name == "" {
		return
	}
	d := time.Since(tm.start).Seconds()
	t.Logf("---- %s: %.1fs", tm.name, d)
	if tm.path != "" {
		f, err := os.OpenFile(tm.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s\t%.1f\n", tm.name, d)
			f.Close()
		}
	}
	tm.name = ""
}

// eventually polls cond every 500 ms until it returns nil or d passes, then
// fails with the last error.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
