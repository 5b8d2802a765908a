package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	sfuusage "github.com/switchboard-rtc/switchboard/sfu/usage"
	"github.com/switchboard-rtc/switchboard/turn"
)

func init() {
	register("turn", "run one TURN pod (UDP/TCP/TLS listeners, relay policy, REST credentials)", runTURN)
}

type turnFlags struct {
	configPath   string
	listenIP     string
	udpPort      int
	tcpPort      int
	tlsPort      int
	tlsCert      string
	tlsKey       string
	publicIP     string
	relayIP      string
	realm        string
	healthListen string
	quota        int
	permCap      int
	unauth       int
	sfuPeers     string
	sfuService   string
	reload       time.Duration
	drain        time.Duration
}

func parseTURNFlags(args []string) (*turnFlags, error) {
	f := &turnFlags{}
	fs := flag.NewFlagSet("turn", flag.ContinueOnError)
	fs.StringVar(&f.configPath, "config", "/etc/switchboard/"+config.FileName, "pod configuration file (sfu/config JSON); re-read when it changes")
	fs.StringVar(&f.listenIP, "listen-ip", "0.0.0.0", "address the UDP, TCP and TLS listeners bind to")
	fs.IntVar(&f.udpPort, "udp", config.DefaultTURNPort, "UDP listen port (0 disables)")
	fs.IntVar(&f.tcpPort, "tcp", config.DefaultTURNPort, "TCP listen port (0 disables)")
	fs.IntVar(&f.tlsPort, "tls", config.DefaultTURNTLSPort, "TLS listen port; needs --tls-cert and --tls-key (0 disables)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM), e.g. from a mounted Secret")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&f.publicIP, "public-ip", os.Getenv("POD_IP"), "relay address advertised to clients (default $POD_IP)")
	fs.StringVar(&f.relayIP, "relay-ip", "", "local IPv4 address relay sockets bind to (default --public-ip when it is local, else 0.0.0.0)")
	fs.StringVar(&f.realm, "realm", "", "STUN realm (default: the config's turn.realm, else \""+turn.DefaultRealm+"\")")
	fs.StringVar(&f.healthListen, "health-listen", ":8081", "address of the /health and /ready endpoints (empty disables)")
	fs.IntVar(&f.quota, "allocation-quota", turn.DefaultAllocationQuota, "live allocations per credential")
	fs.IntVar(&f.permCap, "permission-cap", turn.DefaultPermissionCap, "distinct peer IPs per allocation")
	fs.IntVar(&f.unauth, "unauth-per-second", turn.DefaultUnauthPerSecond, "STUN messages answered per second per source IP without an allocation (reflection guard)")
	fs.StringVar(&f.sfuPeers, "sfu-peers", "", "TURNIngress mode: comma-separated SFU media endpoints ip:port the relay may reach")
	fs.StringVar(&f.sfuService, "sfu-service", "", "TURNIngress mode: DNS name (headless Service) whose addresses are the SFU pods; the port is the config's media.udpPort")
	fs.DurationVar(&f.drain, "drain-timeout", -1, "on SIGTERM, how long to keep existing allocations while refusing new ones (default: the config's media.drainTimeoutSeconds)")
	fs.DurationVar(&f.reload, "reload-interval", time.Second, "how often the config file and --sfu-service are re-checked")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return f, nil
}

func runTURN(ctx context.Context, args []string) error {
	f, err := parseTURNFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("cmd", "turn")
	// Config (file plus hub), the usage meter and the reports to the hub
	// are the SFU pod's pieces; TURN bytes are reported as source turn.
	var live atomic.Pointer[turn.Server]
	pm, err := startPodMeteringKind(log, sfuusage.KindTURN, f.configPath, "", f.reload, func(p *config.Pod) {
		srv := live.Load()
		if srv == nil {
			return
		}
		if err := srv.Update(p); err != nil {
			log.Warn("pod config change refused, keeping the last good one", "err", err)
			return
		}
		log.Info("pod config applied", "config_version", p.Version, "turn_keys", srv.Keyring().Len())
	})
	if err != nil {
		return fmt.Errorf("%s: %w", f.configPath, err)
	}
	pod := pm.config()
	publicIP, relayIP, err := turnAddresses(f.publicIP, f.relayIP)
	if err != nil {
		return err
	}
	realm := f.realm
	if realm == "" {
		realm = pod.TURN.Realm
	}

	cfg := turn.Config{
		RelayIP: relayIP, PublicIP: publicIP, Realm: realm, Pod: pod,
		AllocationQuota: f.quota, PermissionCap: f.permCap, UnauthenticatedPerSecond: f.unauth, Logger: log,
		Meter: pm.turnMeter(),
	}
	closeAll := func() {
		for _, c := range cfg.PacketConns {
			_ = c.Close()
		}
		for _, l := range cfg.Listeners {
			_ = l.Close()
		}
	}
	if f.udpPort > 0 {
		c, err := turn.ListenUDP(net.JoinHostPort(f.listenIP, strconv.Itoa(f.udpPort)), 0)
		if err != nil {
			return err
		}
		rcv, snd := turn.SocketBuffers(c)
		log.Info("udp listener", "addr", c.LocalAddr().String(), "rcvbuf", rcv, "sndbuf", snd)
		cfg.PacketConns = append(cfg.PacketConns, c)
	}
	if f.tcpPort > 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(f.listenIP, strconv.Itoa(f.tcpPort)))
		if err != nil {
			closeAll()
			return fmt.Errorf("turn tcp listener: %w", err)
		}
		log.Info("tcp listener", "addr", l.Addr().String())
		cfg.Listeners = append(cfg.Listeners, l)
	}
	if f.tlsPort > 0 && f.tlsCert != "" && f.tlsKey != "" {
		l, err := turn.ListenTLS(net.JoinHostPort(f.listenIP, strconv.Itoa(f.tlsPort)), f.tlsCert, f.tlsKey)
		if err != nil {
			closeAll()
			return err
		}
		log.Info("tls listener", "addr", l.Addr().String())
		cfg.Listeners = append(cfg.Listeners, l)
	}
	static, err := parseEndpoints(f.sfuPeers)
	if err != nil {
		closeAll()
		return err
	}
	cfg.SFUEndpoints = static
	// Revocations taken by any pod's credentials API reach this one
	// through the hub (and the persisted list in the config mount).
	rev := turn.NewMemoryRevocations(nil)
	revFollower := followRevocations(log, f.configPath, pod, rev)
	cfg.Revocations = rev
	srv, err := turn.New(cfg)
	if err != nil {
		closeAll()
		return err
	}
	defer srv.Close()
	live.Store(srv)
	reg := prometheus.NewRegistry()
	if err := pm.register(reg); err != nil {
		return fmt.Errorf("register usage metrics: %w", err)
	}
	pm.run(ctx)
	go revFollower.Run(ctx)
	log.Info("turn server started", "public_ip", publicIP.String(), "relay_ip", relayIP.String(), "config_version", pod.Version, "exposure", string(pod.Media.Exposure))

	var ready atomic.Bool
	ready.Store(true)
	if f.healthListen != "" {
		hs := healthServer(f.healthListen, &ready)
		mux := hs.Handler.(*http.ServeMux)
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("health server", "err", err)
			}
		}()
		defer hs.Close()
	}

	// Watch the SFU service; the agent applies config changes live.
	t := time.NewTicker(f.reload)
	defer t.Stop()
	lastEPs := fmt.Sprint(static)
	for {
		select {
		case <-ctx.Done():
			ready.Store(false)
			pod = pm.config()
			drain := f.drain
			if drain < 0 {
				drain = time.Duration(pod.Media.DrainTimeoutSeconds) * time.Second
			}
			srv.Drain()
			log.Info("turn server draining", "allocations", srv.Stats().Allocations, "timeout", drain.String())
			deadline := time.Now().Add(drain)
			for srv.Stats().Allocations > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Second)
			}
			log.Info("turn server stopping", "allocations", srv.Stats().Allocations)
			// Close flushes every allocation's bytes to the meter; the
			// final report then carries them.
			_ = srv.Close()
			if err := pm.finish(); err != nil {
				log.Warn("final usage report", "err", err)
			}
			return nil
		case <-t.C:
		}
		pod = pm.config()
		if f.sfuService != "" {
			eps := append([]netip.AddrPort(nil), static...)
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", f.sfuService)
			if err != nil {
				log.Debug("sfu service lookup", "err", err)
				continue // keep the last known set
			}
			for _, ip := range ips {
				eps = append(eps, netip.AddrPortFrom(ip.Unmap(), uint16(pod.Media.UDPPort)))
			}
			if s := fmt.Sprint(eps); s != lastEPs {
				if err := srv.SetSFUEndpoints(eps); err == nil {
					lastEPs = s
					log.Info("sfu endpoints updated", "count", len(eps))
				}
			}
		}
	}
}

// turnAddresses resolves the advertised and bound relay addresses.
func turnAddresses(public, relay string) (netip.Addr, netip.Addr, error) {
	if public == "" {
		return netip.Addr{}, netip.Addr{}, errors.New("--public-ip (or $POD_IP) is required: it is the relay address clients are told")
	}
	pub, err := netip.ParseAddr(public)
	if err != nil || !pub.Unmap().Is4() {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("--public-ip %q: need an IPv4 address", public)
	}
	pub = pub.Unmap()
	if relay == "" {
		if isLocal(pub) {
			return pub, pub, nil
		}
		return pub, netip.IPv4Unspecified(), nil
	}
	rel, err := netip.ParseAddr(relay)
	if err != nil || !rel.Unmap().Is4() {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("--relay-ip %q: need an IPv4 address", relay)
	}
	return pub, rel.Unmap(), nil
}

func isLocal(ip netip.Addr) bool {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func parseEndpoints(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(part)
		if err != nil {
			return nil, fmt.Errorf("--sfu-peers %q: %w", part, err)
		}
		out = append(out, ap)
	}
	return out, nil
}

func healthServer(addr string, ready *atomic.Bool) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}
