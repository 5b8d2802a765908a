package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// newSessionStatus calls sessions/new as a Calls client does and returns the
// HTTP status.
func newSessionStatus(t *testing.T, baseURL, appID, secret string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/apps/"+appID+"/sessions/new", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sessions/new: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// waitFor polls cond every 100 ms until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func TestDevAppliesAddedAndRemovedCallsAppsWithin5s(t *testing.T) {
	bin := buildSwitchboard(t)
	apps := t.TempDir()
	sample, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "samples", "calls_v1alpha1_callsapp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(apps, "first.yaml"), sample, 0o644); err != nil {
		t.Fatal(err)
	}
	dev := startDevWithApps(t, bin, apps, t.TempDir())
	defer dev.stop(t)
	firstID := dev.appIDs[0]
	firstSecret := secretLine.FindStringSubmatch(dev.output())[1]
	if got := newSessionStatus(t, dev.baseURL, firstID, firstSecret); got != http.StatusCreated {
		t.Fatalf("sessions/new for the first app = %d, want 201", got)
	}

	// Add a second app: it gets credentials and serves within 5 s.
	second := `apiVersion: calls.switchboard.dev/v1alpha1
kind: CallsApp
metadata:
  name: second
  namespace: team
spec:
  poolRef:
    name: demo
`
	if err := os.WriteFile(filepath.Join(apps, "second.yaml"), []byte(second), 0o644); err != nil {
		t.Fatal(err)
	}
	added := regexp.MustCompile(`(?m)^\s*added\s+team/second\n\s*app ID\s+([0-9a-f]{32})\n\s*secret\s+([0-9a-f]{64})`)
	var m []string
	if !waitFor(5*time.Second, func() bool { m = added.FindStringSubmatch(dev.output()); return m != nil }) {
		t.Fatalf("team/second not reported as added within 5 s:\n%s", dev.output())
	}
	if got := newSessionStatus(t, dev.baseURL, m[1], m[2]); got != http.StatusCreated {
		t.Errorf("sessions/new for the added app = %d, want 201", got)
	}

	// Remove the first app: its secret stops working within 5 s.
	if err := os.Remove(filepath.Join(apps, "first.yaml")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool {
		return newSessionStatus(t, dev.baseURL, firstID, firstSecret) == http.StatusUnauthorized
	}) {
		t.Errorf("removed app still accepted 5 s after its file was deleted:\n%s", dev.output())
	}
	if !strings.Contains(dev.output(), "removed    default/demo-app") {
		t.Errorf("removal not reported:\n%s", dev.output())
	}

	// A broken file keeps the running apps.
	if err := os.WriteFile(filepath.Join(apps, "broken.yaml"), []byte("kind: CallsApp\napiVersion: calls.switchboard.dev/v1alpha1\nspec: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if got := newSessionStatus(t, dev.baseURL, m[1], m[2]); got != http.StatusCreated {
		t.Errorf("with a broken YAML file beside it, sessions/new for team/second = %d, want 201", got)
	}
	if !strings.Contains(dev.output(), "apps not reloaded") {
		t.Errorf("broken YAML not reported:\n%s", dev.output())
	}
}
