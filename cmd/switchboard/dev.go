package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/demo"
	"github.com/switchboard-rtc/switchboard/turn"
)

func init() {
	register("dev", "all in one on localhost: Calls API, SFU and demo page, apps from CallsApp YAML", runDev)
}

// devReady is the last line `switchboard dev` prints once it serves; the
// browser test waits for it.
const devReady = "switchboard dev is ready"

// errNotLoopback refuses to serve the dev mode beyond this machine: the
// demo page hands out app secrets.
var errNotLoopback = errors.New("dev mode listens on loopback only: its demo page hands out app secrets")

type devFlags struct {
	listen   string
	apps     string
	udpPort  int
	turnPort int
	stateDir string
}

func parseDevFlags(args []string) (devFlags, error) {
	var f devFlags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "HTTP address of the API and the demo page (loopback only; port 0 picks one)")
	fs.StringVar(&f.apps, "apps", "config/samples/", "directory of YAML files; every CallsApp document in them becomes an app")
	fs.IntVar(&f.udpPort, "udp-port", 3479, "UDP port of the media (ICE) socket on 127.0.0.1; 0 picks one")
	fs.IntVar(&f.turnPort, "turn-port", config.DefaultTURNPort, "UDP and TCP port of the TURN server on 127.0.0.1; 0 picks one, -1 runs no TURN server")
	fs.StringVar(&f.stateDir, "state-dir", ".switchboard-dev/", "where generated app IDs, secrets and TURN keys are kept across restarts")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: switchboard dev [flags]\n\nRuns the Calls API, the SFU and a demo page in one process on localhost, with\nthe apps of the CallsApp YAML in --apps. No cluster needed.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.udpPort < 0 || f.udpPort > 65535 {
		return f, fmt.Errorf("--udp-port %d out of range", f.udpPort)
	}
	if f.turnPort < -1 || f.turnPort > 65535 {
		return f, fmt.Errorf("--turn-port %d out of range (-1 disables TURN)", f.turnPort)
	}
	return f, nil
}

// loopbackListen checks that addr names a loopback host.
func loopbackListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q: %w", addr, errNotLoopback)
}

// devApp is one app of the dev server: its CallsApp name, its credentials
// and its rendering for the SFU.
type devApp struct {
	name   string
	creds  render.AppCredentials
	config config.App
}

func runDev(ctx context.Context, args []string) error { return runDevTo(ctx, args, os.Stdout) }

// runDevTo runs the dev server and prints what a user needs to out.
func runDevTo(ctx context.Context, args []string, out io.Writer) error {
	f, err := parseDevFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := loopbackListen(f.listen); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	apps, err := loadDevApps(f.apps, f.stateDir)
	if err != nil {
		return err
	}

	udp, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.udpPort)))
	if err != nil {
		return fmt.Errorf("media UDP socket: %w", err)
	}
	dn := devNet{udpPort: udp.LocalAddr().(*net.UDPAddr).Port}
	var turnSrv *turn.Server
	var rev turn.Revocations
	if f.turnPort >= 0 {
		if turnSrv, dn.turnAddr, err = startDevTURN(f.turnPort, devPodConfig(apps, dn), log); err != nil {
			_ = udp.Close()
			return err
		}
		defer func() { _ = turnSrv.Close() }()
		rev = turnSrv.Revocations()
		// The listeners are up now, so the URLs can name the port.
		if err := turnSrv.Update(devPodConfig(apps, dn)); err != nil {
			_ = udp.Close()
			return fmt.Errorf("start turn: %w", err)
		}
	}
	// The SFU owns the UDP socket once New succeeds; closing it twice after a
	// failed New is harmless. Its TURN credentials API writes revocations to
	// the TURN server's own set: a revoked username is refused at once.
	server, err := sfu.New(sfu.Options{Config: devPodConfig(apps, dn), UDPConn: udp,
		AdvertiseIPs: []string{"127.0.0.1"}, Logger: log, TURNRevocations: rev})
	if err != nil {
		_ = udp.Close()
		return fmt.Errorf("start sfu: %w", err)
	}
	defer func() {
		if err := server.Close(); err != nil {
			log.Warn("close sfu", "err", err)
		}
	}()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	origin := "http://" + ln.Addr().String()

	page := demo.Handler(devPageConfig(apps))
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /demo/", page)
	mux.Handle("/", server.Handler())

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	printDevSummary(out, origin, udp.LocalAddr().String(), dn.turnAddr, f.stateDir, apps)

	r := &devReloader{appsDir: f.apps, stateDir: f.stateDir, net: dn, origin: origin,
		server: server, turn: turnSrv, page: page, out: out, log: log, current: apps}
	tick := time.NewTicker(devReloadEvery)
	defer tick.Stop()
	for running := true; running; {
		select {
		case err := <-served:
			return fmt.Errorf("http server: %w", err)
		case <-tick.C:
			r.reload()
		case <-ctx.Done():
			running = false
		}
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	return nil
}

// loadDevApps reads the CallsApps of appsDir, gives each its persisted (or
// new) credentials from stateDir, and renders it as the operator would.
func loadDevApps(appsDir, stateDir string) ([]devApp, error) {
	docs, err := findCallsApps(appsDir)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no CallsApp in %s: add one (see config/samples/) or pass --apps", appsDir)
	}
	state, err := openDevState(stateDir)
	if err != nil {
		return nil, err
	}
	apps := make([]devApp, 0, len(docs))
	seen := map[string]string{}
	for _, d := range docs {
		obj, err := decodeCallsApp(d)
		if err != nil {
			return nil, err
		}
		// Render with empty credentials first only to learn the name the
		// operator gives the app ("namespace/name").
		name := render.App(obj, render.AppCredentials{}).Name
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s: CallsApp %s is already defined in %s", d.Source, name, prev)
		}
		seen[name] = d.Source
		creds, err := state.creds(name)
		if err != nil {
			return nil, err
		}
		apps = append(apps, devApp{name: name, creds: creds, config: render.App(obj, creds)})
	}
	if err := state.save(); err != nil {
		return nil, err
	}
	return apps, nil
}

// devReloadEvery is how often the apps directory is read again; a changed
// CallsApp applies within DESIGN 2.3's 5 s, as in a cluster.
const devReloadEvery = 2 * time.Second

// devNet is where the dev server's media and TURN sockets listen.
type devNet struct {
	udpPort int
	// turnAddr is the TURN server's host:port (UDP and TCP); empty when
	// dev runs without TURN.
	turnAddr string
}

// devTURNRelayIP is the dev TURN server's relay address: everything dev
// runs stays on this machine.
var devTURNRelayIP = netip.MustParseAddr("127.0.0.1")

// devPodConfig is the SFU and TURN configuration of the dev server.
//
// With TURN, the relay may reach 127.0.0.1 (where the SFU's media socket
// is): a pool never allows loopback, but dev listens on loopback only, so
// only local clients can use this relay to reach local ports. TURN.RelayIPs
// stays empty: the relay and the clients share 127.0.0.1, so excluding it
// from SFU metering would exclude every dev client.
func devPodConfig(apps []devApp, n devNet) *config.Pod {
	pod := &config.Pod{
		Pool:  "dev/local",
		Media: config.Media{Exposure: config.ExposureDirect, UDPPort: n.udpPort},
	}
	if n.turnAddr != "" {
		pod.TURN = config.TURN{
			Enabled:          true,
			URLs:             []string{"turn:" + n.turnAddr + "?transport=udp", "turn:" + n.turnAddr + "?transport=tcp"},
			AllowedPeerCIDRs: []string{devTURNRelayIP.String() + "/32"},
		}
	}
	for _, a := range apps {
		pod.Apps = append(pod.Apps, a.config)
	}
	// The version names the content, as the operator's hash does.
	data, _ := json.Marshal(pod.Apps)
	sum := sha256.Sum256(data)
	pod.Version = "dev-" + hex.EncodeToString(sum[:6])
	return pod
}

// devPageConfig is what the demo page offers: every app with its secret.
func devPageConfig(apps []devApp) demo.Config {
	page := demo.Config{APIBase: "/v1"}
	for _, a := range apps {
		page.Apps = append(page.Apps, demo.App{Name: a.name, ID: a.creds.AppID, Secret: a.creds.AppSecret})
	}
	return page
}

// devReloader applies edits of the apps directory while dev runs: new apps
// get credentials and serve at once, changed limits apply to the next call,
// removed apps lose their sessions. A directory that does not load (a YAML
// file half written) keeps the running apps.
type devReloader struct {
	appsDir, stateDir string
	net               devNet
	origin            string
	server            *sfu.Server
	turn              *turn.Server // nil without TURN
	page              *demo.Page
	out               io.Writer
	log               *slog.Logger
	current           []devApp
	lastErr           string
}

func (r *devReloader) reload() {
	apps, err := loadDevApps(r.appsDir, r.stateDir)
	if err != nil {
		if err.Error() != r.lastErr {
			r.log.Warn("apps not reloaded; the running ones stay", "dir", r.appsDir, "err", err)
			r.lastErr = err.Error()
		}
		return
	}
	r.lastErr = ""
	if sameDevApps(r.current, apps) {
		return
	}
	pod := devPodConfig(apps, r.net)
	if err := r.server.SetConfig(pod); err != nil {
		r.log.Warn("apps not reloaded; the running ones stay", "dir", r.appsDir, "err", err)
		return
	}
	if r.turn != nil {
		if err := r.turn.Update(pod); err != nil {
			r.log.Warn("turn keys not reloaded", "err", err)
		}
	}
	r.page.SetConfig(devPageConfig(apps))
	printDevChanges(r.out, r.origin, r.turn != nil, r.current, apps)
	r.current = apps
}

func sameDevApps(a, b []devApp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || !reflect.DeepEqual(a[i].config, b[i].config) {
			return false
		}
	}
	return true
}

// printDevChanges reports a reload: new apps with everything a client
// needs, then changed and removed ones by name.
func printDevChanges(w io.Writer, origin string, withTURN bool, before, after []devApp) {
	old := map[string]devApp{}
	for _, a := range before {
		old[a.name] = a
	}
	var b strings.Builder
	for _, a := range after {
		prev, had := old[a.name]
		delete(old, a.name)
		switch {
		case !had:
			fmt.Fprintf(&b, "  added      %s\n  app ID     %s\n  secret     %s\n", a.name, a.creds.AppID, a.creds.AppSecret)
			if withTURN {
				printTURNKey(&b, a)
			}
			fmt.Fprintf(&b, "  base URL   %s/v1\n", origin)
		case !reflect.DeepEqual(prev.config, a.config):
			fmt.Fprintf(&b, "  updated    %s\n", a.name)
		}
	}
	for _, a := range before {
		if _, gone := old[a.name]; gone {
			fmt.Fprintf(&b, "  removed    %s\n", a.name)
		}
	}
	if b.Len() > 0 {
		fmt.Fprintf(w, "\napps reloaded:\n%s", b.String())
	}
}

// printDevSummary tells the user everything needed to call the API, and
// ends with the ready line.
func printDevSummary(w io.Writer, origin, udpAddr, turnAddr, stateDir string, apps []devApp) {
	fmt.Fprintf(w, "\nswitchboard dev: Calls API, SFU and demo page on %s (media UDP %s)\n", origin, udpAddr)
	if turnAddr != "" {
		fmt.Fprintf(w, "TURN server on %s (UDP and TCP)\n", turnAddr)
	}
	fmt.Fprintln(w)
	for _, a := range apps {
		fmt.Fprintf(w, "  app        %s\n", a.name)
		fmt.Fprintf(w, "  app ID     %s\n", a.creds.AppID)
		fmt.Fprintf(w, "  secret     %s\n", a.creds.AppSecret)
		if turnAddr != "" {
			printTURNKey(w, a)
		}
		fmt.Fprintf(w, "  base URL   %s/v1\n\n", origin)
	}
	fmt.Fprintf(w, "  demo page  %s/\n\n", origin)
	first := apps[0].creds
	fmt.Fprintf(w, "try it:\n  curl -s -X POST -H 'Authorization: Bearer %s' %s/v1/apps/%s/sessions/new\n", first.AppSecret, origin, first.AppID)
	if turnAddr != "" {
		for _, a := range apps {
			if a.config.TURNKey != nil {
				fmt.Fprintf(w, "  curl -s -X POST -H 'Authorization: Bearer %s' %s/v1/turn/keys/%s/credentials/generate-ice-servers\n",
					a.creds.TURNKeyToken, origin, a.creds.TURNKeyID)
				break
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "IDs and secrets are kept in %s (delete it for new ones).\n", filepath.Join(stateDir, devStateFile))
	fmt.Fprintf(w, "%s; press Ctrl-C to stop.\n", devReady)
}

// printTURNKey prints the app's TURN key ID and API token, when TURN is
// enabled for it.
func printTURNKey(w io.Writer, a devApp) {
	if a.config.TURNKey == nil {
		return
	}
	fmt.Fprintf(w, "  TURN key   %s\n", a.creds.TURNKeyID)
	fmt.Fprintf(w, "  TURN token %s\n", a.creds.TURNKeyToken)
}

// startDevTURN runs the dev TURN server on 127.0.0.1:port, UDP and TCP on
// the same port (0 picks one), relaying from 127.0.0.1. It returns the
// server and its host:port.
func startDevTURN(port int, pod *config.Pod, log *slog.Logger) (*turn.Server, string, error) {
	pc, ln, err := turn.ListenShared(devTURNRelayIP.String(), port, 0)
	if err != nil {
		return nil, "", fmt.Errorf("dev turn (--turn-port, -1 disables): %w", err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	srv, err := turn.New(turn.Config{
		PacketConns: []net.PacketConn{pc}, Listeners: []net.Listener{ln},
		RelayIP: devTURNRelayIP, Pod: pod, Logger: log,
	})
	if err != nil {
		_ = pc.Close()
		_ = ln.Close()
		return nil, "", fmt.Errorf("dev turn: %w", err)
	}
	return srv, addr.String(), nil
}
