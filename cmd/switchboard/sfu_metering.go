package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	sfuusage "github.com/switchboard-rtc/switchboard/sfu/usage"
)

// podMetering is the pod side of issue 4 for `switchboard sfu`: config
// from the mounted file and the hub, the per-app rate limit in front of
// the API, egress and ingress counted on the media socket per app, and
// usage reports to the hub (the last one after the pod has stopped).
type podMetering struct {
	agent *hub.Agent
	attr  *sfuusage.Attribution
	// forwarded, when set, tells fleet-forwarded calls (forwardedBy).
	forwarded atomic.Pointer[func(*http.Request) bool]

	stopReports context.CancelFunc
	reportsDone chan error
}

// startPodMetering loads the configuration file; onConfig is called with
// every later configuration (from the file or the hub).
func startPodMetering(log *slog.Logger, cfgPath, podName string, poll time.Duration, onConfig func(*config.Pod)) (*podMetering, error) {
	return startPodMeteringKind(log, sfuusage.KindSFU, cfgPath, podName, poll, onConfig)
}

// forwardedBy makes the agent's middleware pass calls forwarded by
// another fleet pod through uncounted (the entry pod limited and counted
// them). It is wired once the server exists.
func (pm *podMetering) forwardedBy(isFwd func(*http.Request) bool) {
	pm.forwarded.Store(&isFwd)
}

// startPodMeteringKind is startPodMetering for a pod of the given kind
// (sfuusage.KindSFU or sfuusage.KindTURN): the reports carry it as source.
func startPodMeteringKind(log *slog.Logger, kind, cfgPath, podName string, poll time.Duration, onConfig func(*config.Pod)) (*podMetering, error) {
	if podName == "" {
		podName = os.Getenv("POD_NAME")
	}
	if podName == "" {
		podName, _ = os.Hostname()
	}
	pm := &podMetering{attr: sfuusage.NewAttribution()}
	var started bool
	agent, err := hub.NewAgent(hub.AgentOptions{
		ConfigFile: cfgPath, Pod: podName, Kind: kind, Logger: log,
		// sfu/api enforces the per-session limit and the monthly egress
		// cap itself; the agent counts its 429s as session throttles.
		OnConfig: func(u hub.Update) {
			if started {
				onConfig(u.Config)
			}
		},
		SourceOptions: hub.SourceOptions{FileInterval: poll},
		Forwarded: func(r *http.Request) bool {
			f := pm.forwarded.Load()
			return f != nil && (*f)(r)
		},
	})
	if err != nil {
		return nil, err
	}
	started = true
	pm.agent = agent
	return pm, nil
}

// turnMeter is the TURN server's meter: its bytes count as source turn.
func (pm *podMetering) turnMeter() sfuusage.TURNMeter { return sfuusage.TURNMeter{M: pm.agent.Meter} }

// config is the configuration the pod starts with.
func (pm *podMetering) config() *config.Pod { return pm.agent.Config().Config }

// conn wraps the media socket so its bytes are counted per app.
func (pm *podMetering) conn(c net.PacketConn) net.PacketConn {
	return sfuusage.NewPacketConn(c, pm.attr)
}

// hooks connect the media core to the meter: a session's selected client
// address is attributed to its app while it is active.
func (pm *podMetering) hooks() sfu.Hooks {
	return sfu.Hooks{RemoteAddr: func(appID string, addr netip.AddrPort, active bool) {
		app := pm.agent.Meter.App(appID)
		if active {
			pm.attr.Set(addr, app)
			return
		}
		pm.attr.Delete(addr, app)
	}}
}

// observe takes live sessions and tracks per app from the server.
func (pm *podMetering) observe(srv *sfu.Server) {
	pm.agent.Meter.SetLiveSource(func() map[string]sfuusage.Live {
		out := map[string]sfuusage.Live{}
		for app, st := range srv.Stats() {
			out[app] = sfuusage.Live{Sessions: int64(st.Sessions), Tracks: int64(st.Publications + st.Subscriptions)}
		}
		return out
	})
}

// handler puts the per-app limit and the request counters in front of h.
func (pm *podMetering) handler(h http.Handler) http.Handler { return pm.agent.Middleware(h) }

// register adds the byte counters to the pod's /metrics.
func (pm *podMetering) register(reg *prometheus.Registry) error {
	return reg.Register(pm.agent.Meter.TrafficCollector())
}

// run follows the configuration and reports usage until ctx ends; reports
// continue until finish.
func (pm *podMetering) run(ctx context.Context) {
	go func() { _ = pm.agent.Run(ctx) }()
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pm.stopReports = cancel
	pm.reportsDone = make(chan error, 1)
	go func() { pm.reportsDone <- pm.agent.Report(rctx) }()
}

// drain marks the usage reports as draining until deadline and sends one
// at once.
func (pm *podMetering) drain(deadline time.Time) { pm.agent.Drain(deadline) }

// finish sends the final usage report; call it after the media has
// stopped so the report carries every counted byte.
func (pm *podMetering) finish() error {
	if pm.stopReports == nil {
		return nil
	}
	pm.stopReports()
	return <-pm.reportsDone
}
