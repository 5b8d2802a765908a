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
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
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
	adminKey string
}

func parseDevFlags(args []string) (devFlags, error) {
	var f devFlags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "HTTP address of the API and the demo page (loopback only; port 0 picks one)")
	fs.StringVar(&f.apps, "apps", "config/samples/", "directory of YAML files; every CallsApp document in them becomes an app")
	fs.IntVar(&f.udpPort, "udp-port", 3479, "UDP port of the media (ICE) socket on 127.0.0.1; 0 picks one")
	fs.IntVar(&f.turnPort, "turn-port", config.DefaultTURNPort, "UDP and TCP port of the TURN server on 127.0.0.1; 0 picks one, -1 runs no TURN server")
	fs.StringVar(&f.stateDir, "state-dir", ".switchboard-dev/", "where generated app IDs, secrets and TURN keys are kept across restarts")
	fs.StringVar(&f.adminKey, "admin-key", "", "X-Admin-API-Key of the admin API (/admin/apps/{appId}); empty generates one at start and prints it")
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
	name    string
	creds   render.AppCredentials
	config  config.App
	billing hub.Billing
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

	adminKey, generatedKey := f.adminKey, false
	if adminKey == "" {
		if adminKey, err = randomKey(); err != nil {
			return err
		}
		generatedKey = true
	}

	// The HTTP listener comes first: the SFU's configuration names it as
	// the hub its agent reports to.
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer func() { _ = ln.Close() }()
	origin := "http://" + ln.Addr().String()

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
	dh, err := newDevHub(apps, dn, origin, f.stateDir)
	if err != nil {
		_ = udp.Close()
		return err
	}
	// Rate limits, request counters and the usage meter: the agent of
	// `switchboard sfu` (sfu_metering.go), fed by the dev hub. It applies
	// every configuration the hub serves to the SFU.
	var server *sfu.Server
	pm, err := startPodMetering(log, dh.podFile, "dev", devReloadEvery, func(c *config.Pod) {
		if err := server.SetConfig(c); err != nil {
			log.Warn("config rejected", "err", err)
		}
	})
	if err != nil {
		_ = udp.Close()
		return err
	}
	// The SFU owns the UDP socket once New succeeds; closing it twice after a
	// failed New is harmless. Its TURN credentials API writes revocations to
	// the TURN server's own set: a revoked username is refused at once.
	cfg := *pm.config()
	server, err = sfu.New(sfu.Options{Config: &cfg, UDPConn: pm.conn(udp), Hooks: pm.hooks(),
		AdvertiseIPs: []string{"127.0.0.1"}, Logger: log, TURNRevocations: rev})
	if err != nil {
		_ = udp.Close()
		return fmt.Errorf("start sfu: %w", err)
	}
	closeSFU := sync.OnceFunc(func() {
		if err := server.Close(); err != nil {
			log.Warn("close sfu", "err", err)
		}
	})
	defer closeSFU()
	pm.observe(server)
	if err := pm.register(server.Registry()); err != nil {
		return fmt.Errorf("register usage metrics: %w", err)
	}

	page := demo.Handler(devPageConfig(apps))
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /demo/", page)
	mux.Handle("/hub/", (&hub.Server{Ledger: dh.ledger, Configs: dh.configs, Token: dh.token, Logger: log}).Handler())
	mux.Handle(hub.AdminPathPrefix, (&hub.Admin{Key: adminKey, Apps: dh, Ledger: dh.ledger, Logger: log}).Handler())
	mux.Handle("/", pm.handler(server.Handler()))

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Above the hub's longest config long-poll.
		WriteTimeout: hub.DefaultMaxWait + 10*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	pm.run(agentCtx)

	printDevSummary(out, devSummary{origin: origin, udpAddr: udp.LocalAddr().String(), turnAddr: dn.turnAddr,
		stateDir: f.stateDir, adminKey: adminKey, generatedKey: generatedKey}, apps)

	r := &devReloader{appsDir: f.apps, stateDir: f.stateDir, origin: origin,
		hub: dh, net: dn, turn: turnSrv, page: page, out: out, log: log, current: apps}
	tick := time.NewTicker(devReloadEvery)
	defer tick.Stop()
	for running := true; running; {
		select {
		case err := <-served:
			stopAgent()
			closeSFU()
			_ = pm.finish() // the hub is gone with the server: nothing to deliver to
			return fmt.Errorf("http server: %w", err)
		case <-tick.C:
			r.reload()
		case <-ctx.Done():
			running = false
		}
	}
	log.Info("shutting down")
	// Media first, then the last usage report to the dev hub (still
	// serving), then the HTTP server.
	stopAgent()
	closeSFU()
	if err := pm.finish(); err != nil {
		log.Warn("final usage report not delivered", "err", err)
	}
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
		apps = append(apps, devApp{name: name, creds: creds, config: render.App(obj, creds), billing: devBilling(obj)})
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
// file half written) keeps the running apps. The SFU gets the new apps
// through the dev hub, as a pod gets them from the manager's.
type devReloader struct {
	appsDir, stateDir string
	net               devNet
	origin            string
	hub               *devHub
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
	if err := r.hub.setApps(apps); err != nil {
		r.log.Warn("apps not reloaded; the running ones stay", "dir", r.appsDir, "err", err)
		return
	}
	pod := devPodConfig(apps, r.net)
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
		if a[i].name != b[i].name || !reflect.DeepEqual(a[i].config, b[i].config) || a[i].billing != b[i].billing {
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
		case !reflect.DeepEqual(prev.config, a.config) || prev.billing != a.billing:
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

// devSummary is what the start banner names besides the apps.
type devSummary struct {
	origin, udpAddr, turnAddr, stateDir string
	// adminKey is printed only when dev generated it (generatedKey): a key
	// given with --admin-key is the user's own.
	adminKey     string
	generatedKey bool
}

// printDevSummary tells the user everything needed to call the API, and
// ends with the ready line. A generated admin key appears in it once.
func printDevSummary(w io.Writer, sum devSummary, apps []devApp) {
	origin, turnAddr := sum.origin, sum.turnAddr
	fmt.Fprintf(w, "\nswitchboard dev: Calls API, SFU and demo page on %s (media UDP %s)\n", origin, sum.udpAddr)
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
	fmt.Fprintf(w, "  admin API  %s%s{appId}\n", origin, hub.AdminPathPrefix)
	if sum.generatedKey {
		fmt.Fprintf(w, "  admin key  %s\n", sum.adminKey)
	} else {
		fmt.Fprintf(w, "  admin key  the --admin-key value\n")
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
	fmt.Fprintf(w, "  curl -s -H 'X-Admin-API-Key: <admin key>' -d '{\"rate_limit\": 100}' %s%s%s\n", origin, hub.AdminPathPrefix, first.AppID)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "IDs and secrets are kept in %s (delete it for new ones).\n", filepath.Join(sum.stateDir, devStateFile))
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
