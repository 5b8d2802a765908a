package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// The dev server runs the manager's side of "config down, usage up" in its
// own process, on its own loopback listener: a hub (config long-poll and
// usage reports, behind a token generated at start), a usage ledger, and the
// admin API over the dev apps. Its SFU takes its configuration, rate limits
// and usage meter from the same hub.Agent as `switchboard sfu`
// (sfu_metering.go), so dev enforces and counts exactly what a pod does.

// devPool names the dev server's one pool in the hub and in usage reports.
const devPool = "dev/local"

// devPodFile is the file in --state-dir holding the dev SFU's rendered
// configuration: the agent starts from it as a pod starts from its mounted
// Secret. It holds TURN HMAC secrets, so it is private to the user.
const devPodFile = "pod.json"

// randomKey returns 32 random bytes in hex, for the admin key and the hub
// token.
func randomKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// devBilling is the app's pricing as the operator reads it from the spec.
func devBilling(app *v1alpha1.CallsApp) hub.Billing {
	b := hub.DefaultBilling
	if app.Spec.Billing.FreeGB != nil {
		b.FreeGB = *app.Spec.Billing.FreeGB
	}
	if p, err := app.Spec.Billing.PricePerGBMicroUSD(); err == nil {
		b.PricePerGBMicroUSD = p
	}
	if app.Spec.Billing.MonthlyEgressCapGB != nil {
		b.MonthlyCapGB = *app.Spec.Billing.MonthlyEgressCapGB
	}
	return b
}

// devOverride is a rate limit set through the admin API. In a cluster the
// admin API patches the CallsApp spec; in dev the spec is the user's YAML,
// which dev does not rewrite, so the override lives in memory: until dev
// stops, or until the YAML's own rate limit for the app changes (the latest
// edit wins, whichever side made it).
type devOverride struct {
	perSecond int
	// yaml is the app's authenticated limit in the YAML when the override
	// was set (0: the default).
	yaml int
}

// devHub holds the dev apps as the admin API and the hub see them. It is
// the admin API's AppStore. Safe for concurrent use: the admin API calls
// it from HTTP handlers, the reloader from the main loop.
type devHub struct {
	net      devNet
	origin   string
	token    string // hub token of the dev SFU's agent
	podFile  string
	configs  *hub.ConfigStore
	ledger   *hub.Ledger
	mu       sync.Mutex
	apps     []devApp
	override map[string]devOverride // by app name
}

func newDevHub(apps []devApp, n devNet, origin, stateDir string) (*devHub, error) {
	token, err := randomKey()
	if err != nil {
		return nil, err
	}
	h := &devHub{net: n, origin: origin, token: token, podFile: filepath.Join(stateDir, devPodFile),
		configs: hub.NewConfigStore(), ledger: hub.NewLedger(hub.LedgerOptions{}), apps: apps,
		override: map[string]devOverride{}}
	for _, a := range apps {
		h.ledger.SetApp(a.creds.AppID, a.billing)
	}
	// Dev keeps no usage across restarts: nothing to restore.
	h.ledger.SetReady()
	if err := h.publishLocked(); err != nil {
		return nil, err
	}
	return h, nil
}

// effectiveLocked is the apps with the admin API's overrides applied.
func (h *devHub) effectiveLocked() []devApp {
	out := make([]devApp, len(h.apps))
	copy(out, h.apps)
	for i, a := range out {
		if o, ok := h.override[a.name]; ok {
			out[i].config.RateLimit.AuthenticatedPerSecond = o.perSecond
		}
	}
	return out
}

// podLocked is the dev SFU's configuration: the apps with overrides, and
// the dev hub to report to.
func (h *devHub) podLocked() *config.Pod {
	pod := devPodConfig(h.effectiveLocked(), h.net)
	pod.Hub, pod.HubToken = h.origin, h.token
	return pod
}

// publishLocked checks the configuration, writes it to the pod file (what
// the agent starts from and falls back to) and serves it from the hub,
// whose long-poll hands it to the agent at once.
func (h *devHub) publishLocked() error {
	pod := h.podLocked()
	check := *pod
	check.Apps = append([]config.App(nil), pod.Apps...)
	check.Default()
	if err := check.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		return fmt.Errorf("dev pod config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(h.podFile), 0o700); err != nil {
		return fmt.Errorf("dev pod config: %w", err)
	}
	tmp := h.podFile + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("dev pod config: %w", err)
	}
	if err := os.Rename(tmp, h.podFile); err != nil {
		return fmt.Errorf("dev pod config: %w", err)
	}
	if err := h.configs.Set(devPool, pod, 1); err != nil {
		return fmt.Errorf("dev pod config: %w", err)
	}
	return nil
}

// setApps replaces the apps after a reload of the YAML: overrides of
// removed apps, and of apps whose YAML limit changed, are dropped; the
// ledger learns new apps and billing and forgets removed apps. On error
// nothing changes.
func (h *devHub) setApps(apps []devApp) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	prevApps, prevOverride := h.apps, h.override
	h.apps, h.override = apps, map[string]devOverride{}
	for _, a := range apps {
		if o, ok := prevOverride[a.name]; ok && o.yaml == a.config.RateLimit.AuthenticatedPerSecond {
			h.override[a.name] = o
		}
	}
	if err := h.publishLocked(); err != nil {
		h.apps, h.override = prevApps, prevOverride
		return err
	}
	keep := map[string]bool{}
	for _, a := range apps {
		keep[a.creds.AppID] = true
		h.ledger.SetApp(a.creds.AppID, a.billing)
	}
	for _, a := range prevApps {
		if !keep[a.creds.AppID] {
			h.ledger.RemoveApp(a.creds.AppID)
		}
	}
	return nil
}

func (h *devHub) findLocked(appID string) (devApp, error) {
	for _, a := range h.effectiveLocked() {
		if a.creds.AppID == appID && appID != "" {
			return a, nil
		}
	}
	return devApp{}, fmt.Errorf("%w: %s", hub.ErrAppNotFound, appID)
}

// adminView is the app as the admin API shows it: the limits in force.
func adminView(a devApp) hub.AdminApp {
	c := a.config
	c.Default()
	return hub.AdminApp{AppID: a.creds.AppID, Name: a.name, RateLimit: c.RateLimit.AuthenticatedPerSecond,
		UnauthenticatedRateLimit: c.RateLimit.UnauthenticatedPerSecond, SessionCallsPerSecond: c.Sessions.CallsPerSecond}
}

// GetApp implements hub.AppStore.
func (h *devHub) GetApp(_ context.Context, appID string) (hub.AdminApp, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, err := h.findLocked(appID)
	if err != nil {
		return hub.AdminApp{}, err
	}
	return adminView(a), nil
}

// SetRateLimit implements hub.AppStore: the new limit is published to the
// hub before it returns, and the SFU's agent applies it within
// milliseconds (its long-poll is waiting for it).
func (h *devHub) SetRateLimit(_ context.Context, appID string, perSecond int) (hub.AdminApp, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, err := h.findLocked(appID)
	if err != nil {
		return hub.AdminApp{}, err
	}
	prev, had := h.override[a.name]
	var yaml int
	for _, y := range h.apps {
		if y.name == a.name {
			yaml = y.config.RateLimit.AuthenticatedPerSecond
		}
	}
	h.override[a.name] = devOverride{perSecond: perSecond, yaml: yaml}
	if err := h.publishLocked(); err != nil {
		if had {
			h.override[a.name] = prev
		} else {
			delete(h.override, a.name)
		}
		return hub.AdminApp{}, err
	}
	a.config.RateLimit.AuthenticatedPerSecond = perSecond
	return adminView(a), nil
}
