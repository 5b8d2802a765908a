package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

func init() {
	register("sfu", "run one SFU pod (Calls session API and media forwarding)", runSFU)
}

func runSFU(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sfu", flag.ContinueOnError)
	cfgPath := fs.String("config", "/etc/switchboard/"+config.FileName, "pod configuration file (reloaded when it changes)")
	listen := fs.String("listen", ":8080", "HTTP address of the session API, /health, /ready and /metrics")
	udpPort := fs.Int("udp-port", 0, "ICE UDP port; overrides media.udpPort of the config")
	advertise := fs.String("advertise", "", "comma-separated IPs put in ICE candidates (default: $POD_IP or $NODE_IP per exposure)")
	poll := fs.Duration("config-poll", 2*time.Second, "how often the config file is checked for changes")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight HTTP requests may take at shutdown")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	raw, err := os.ReadFile(*cfgPath)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	if *udpPort != 0 {
		cfg.Media.UDPPort = *udpPort
	}
	srv, err := sfu.New(sfu.Options{
		Config: cfg, UDPAddr: fmt.Sprintf(":%d", cfg.Media.UDPPort),
		AdvertiseIPs: advertiseIPs(*advertise, cfg.Media.Exposure), Logger: log,
	})
	if err != nil {
		return err
	}
	defer func() { _ = srv.Close() }()

	hs := &http.Server{
		Addr: *listen, Handler: srv.Handler(),
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
	go watchConfig(ctx, log, *cfgPath, raw, *poll, *udpPort, srv)

	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down")
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	return srv.Close()
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

// watchConfig polls the file and applies a changed, valid configuration.
// A broken file is logged and the last good configuration stays.
func watchConfig(ctx context.Context, log *slog.Logger, path string, last []byte, every time.Duration, udpPort int, srv *sfu.Server) {
	t := time.NewTicker(every)
	defer t.Stop()
	var bad []byte // last rejected content, to warn once per change
	unreadable := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			if !unreadable {
				log.Warn("config unreadable; keeping the last one", "err", err)
			}
			unreadable = true
			continue
		}
		unreadable = false
		if bytes.Equal(raw, last) || bytes.Equal(raw, bad) {
			continue
		}
		cfg, err := config.Parse(raw)
		if err != nil {
			log.Warn("config invalid; keeping the last one", "err", err)
			bad = raw
			continue
		}
		if udpPort != 0 {
			cfg.Media.UDPPort = udpPort
		}
		if err := srv.SetConfig(cfg); err != nil {
			log.Warn("config rejected", "err", err)
			continue
		}
		last = raw
	}
}
