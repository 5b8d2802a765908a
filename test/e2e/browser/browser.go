// Package browser launches Debian's chromium headless for the browser tests
// and the SDP fixture capture: fake camera and microphone, a fresh profile,
// and every background feature that could send traffic off the machine
// turned off. It imports nothing of Switchboard.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package puts the browser.
const DefaultPath = "/usr/bin/chromium"

// ErrMissing means no chromium binary was found; `make chromium` installs it.
var ErrMissing = errors.New("chromium not found: run make chromium")

// Path returns the chromium binary to use: $SWITCHBOARD_CHROMIUM when set,
// else DefaultPath.
func Path() (string, error) {
	p := os.Getenv("SWITCHBOARD_CHROMIUM")
	if p == "" {
		p = DefaultPath
	}
	if _, err := exec.LookPath(p); err != nil {
		return "", fmt.Errorf("%w (looked for %s)", ErrMissing, p)
	}
	return p, nil
}

// Flags are the chromium switches used by every launch. Headless with fake
// media devices that need no permission prompt; no sandbox because the
// tests run as root; and no background networking, sync, component update,
// QUIC, media-router discovery or mDNS host-candidate obfuscation, so the
// browser talks only to the loopback server under test.
var Flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"no-default-browser-check", "disable-background-networking", "disable-component-update",
	"disable-sync", "disable-breakpad", "disable-domain-reliability", "disable-default-apps",
	"disable-extensions", "disable-dev-shm-usage", "mute-audio",
	"disable-background-timer-throttling", "disable-renderer-backgrounding",
	"disable-backgrounding-occluded-windows",
	"use-fake-device-for-media-stream", "use-fake-ui-for-media-stream",
	"allow-loopback-in-peer-connection",
	"autoplay-policy=no-user-gesture-required",
	"disable-features=MediaRouter,DialMediaRouteProvider,WebRtcHideLocalIpsWithMdns,Translate,OptimizationHints",
	"window-size=1280,1000",
}

// New starts chromium with a fresh profile in userDataDir and returns a
// chromedp context for one tab. Cancel the returned func to close the
// browser; it does not remove userDataDir.
func New(parent context.Context, userDataDir string) (context.Context, context.CancelFunc, error) {
	path, err := Path()
	if err != nil {
		return nil, nil, err
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.UserDataDir(userDataDir)}
	for _, f := range Flags {
		name, value, hasValue := strings.Cut(f, "=")
		if hasValue {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	// Start the browser now so a launch failure surfaces here.
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		return nil, nil, fmt.Errorf("start chromium %s: %w", path, err)
	}
	return ctx, func() { cancelTab(); cancelAlloc() }, nil
}
