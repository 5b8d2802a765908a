package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
)

func init() {
	register("sfu", "run one SFU pod (Calls session API and media forwarding)", runSFU)
}

// sfuFlags are the flags of `switchboard sfu`; the operator renders them
// into SFU pod templates (controllers/render), and a test parses that
// rendering with parseSFUFlags so the two cannot drift apart.
type sfuFlags struct {
	cfgPath, listen, udpIP, advertise, logLevel, podName string
	udpPort, ordinal                                     int
	poll, shutdown                                       time.Duration
}

func parseSFUFlags(args []string) (*sfuFlags, error) {
	f := &sfuFlags{}
	fs := flag.NewFlagSet("sfu", flag.ContinueOnError)
	fs.StringVar(&f.cfgPath, "config", "/etc/switchboard/"+config.FileName, "pod configuration file (reloaded when it changes)")
	fs.StringVar(&f.listen, "listen", ":8080", "HTTP address of the session API, /health, /ready and /metrics")
	fs.IntVar(&f.udpPort, "udp-port", 0, "ICE UDP port; overrides media.udpPort of the config")
	fs.StringVar(&f.udpIP, "udp-ip", "", "IP the ICE UDP port binds to (default: every address); set it when several pods share a host")
	fs.StringVar(&f.advertise, "advertise", "", "comma-separated IPs put in ICE candidates (default: $POD_IP or $NODE_IP per exposure)")
	fs.DurationVar(&f.poll, "config-poll", 2*time.Second, "how often the config file is checked for changes")
	fs.DurationVar(&f.shutdown, "shutdown-timeout", 10*time.Second, "how long in-flight HTTP requests may take at shutdown")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&f.ordinal, "pod-ordinal", -1, "this pod's number in its fleet (config fleet); default: the -<n> suffix of $POD_NAME")
	fs.StringVar(&f.podName, "pod-name", "", "this pod's name in usage reports (default $POD_NAME, else the host name)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

func runSFU(ctx context.Context, args []string) error {
	f, err := parseSFUFlags(args)
	if err != nil {
		return err
	}
	cfgPath, listen, udpPort, udpIP, advertise := &f.cfgPath, &f.listen, &f.udpPort, &f.udpIP, &f.advertise
	poll, shutdown, logLevel, ordinal, podName := &f.poll, &f.shutdown, &f.logLevel, &f.ordinal, &f.podName
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Config (file + hub), rate limits and usage: cmd/switchboard/sfu_metering.go.
	var srv *sfu.Server
	pm, err := startPodMetering(log, *cfgPath, *podName, *poll, func(c *config.Pod) {
		c2 := *c
		if *udpPort != 0 {
			c2.Media.UDPPort = *udpPort
		}
		if err := srv.SetConfig(&c2); err != nil {
			log.Warn("config rejected", "err", err)
		}
	})
	if err != nil {
		return err
	}
	cfg := *pm.config()
	if *udpPort != 0 {
		cfg.Media.UDPPort = *udpPort
	}
	if *ordinal < 0 {
		*ordinal = 0
		if cfg.Fleet != nil {
			if *ordinal, err = fleet.OrdinalFromPodName(os.Getenv("POD_NAME")); err != nil {
				return fmt.Errorf("fleet config needs --pod-ordinal or $POD_NAME: %w", err)
			}
		}
	}
	udp, err := net.ListenPacket("udp", net.JoinHostPort(*udpIP, strconv.Itoa(cfg.Media.UDPPort)))
	if err != nil {
		return fmt.Errorf("listen media port: %w", err)
	}
	srv, err = sfu.New(sfu.Options{
		Config: &cfg, UDPConn: pm.conn(udp), Hooks: pm.hooks(),
		AdvertiseIPs: advertiseIPs(*advertise, cfg.Media.Exposure), Logger: log, PodOrdinal: *ordinal,
		TURNRevocations: newFleetRevocations(ctx, log, pm.config), // to the hub: docs/turn.md
	})
	if err != nil {
		_ = udp.Close()
		return err
	}
	defer func() { _ = srv.Close() }()
	pm.observe(srv)
	pm.forwardedBy(srv.FleetForwarded)
	if err := pm.register(srv.Registry()); err != nil {
		return fmt.Errorf("register usage metrics: %w", err)
	}

	hs := &http.Server{
		Addr: *listen, Handler: pm.handler(srv.Handler()),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	log.Info("sfu api listening", "addr", ln.Addr().String(), "config", *cfgPath, "version", cfg.Version)
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	pm.run(ctx)

	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	// Drain (docs/fleet.md "Drain"): unready at once, new sessions go to
	// peers, existing sessions and relays to other pods continue until
	// they end or the pool's drain timeout; the hub hears of it at once.
	timeout := time.Duration(srv.Config().Media.DrainTimeoutSeconds) * time.Second
	deadline := time.Now().Add(timeout)
	srv.Drain()
	pm.drain(deadline)
	res := srv.DrainUntil(context.Background(), deadline)
	log.Info("shutting down", "sessionsLeft", res.Sessions, "timedOut", res.TimedOut)
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	err = srv.Close()
	if ferr := pm.finish(); ferr != nil {
		log.Warn("final usage report not delivered", "err", ferr)
	}
	return err
}

// advertiseIPs picks the candidate addresses: the flag, else the node IP
// for HostNetwork, else the pod IP.
func advertiseIPs(flagValue string, exposure config.Exposure) []string {
	v := flagValue
	if v == "" {
		if exposure == config.ExposureHostNetwork {
			v = os.Getenv("NODE_IP")
		}
		if v == "" {
			v = os.Getenv("POD_IP")
		}
		if v == "" {
			v = os.Getenv("NODE_IP")
		}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
