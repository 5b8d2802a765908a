package api

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// metrics are labelled by app ID only, never by session (bounded
// cardinality).
type metrics struct {
	onRequest   func(app string, status int)
	onLimited   func(app, scope string)
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
}

type liveCollector struct {
	apps     *Apps
	sessions *session.Manager
	sessD    *prometheus.Desc
	tracksD  *prometheus.Desc
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessD
	ch <- c.tracksD
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.sessions.Stats()
	for _, id := range c.apps.IDs() {
		st := stats[id]
		ch <- prometheus.MustNewConstMetric(c.sessD, prometheus.GaugeValue, float64(st.Sessions), string(id))
		ch <- prometheus.MustNewConstMetric(c.tracksD, prometheus.GaugeValue, float64(st.Publications), string(id), "local")
		ch <- prometheus.MustNewConstMetric(c.tracksD, prometheus.GaugeValue, float64(st.Subscriptions), string(id), "remote")
	}
}

func newMetrics(apps *Apps, sessions *session.Manager) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_api_requests_total", Help: "Calls API requests by app and HTTP status.",
		}, []string{"app", "code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_rate_limited_total", Help: "Requests refused by a rate limit.",
		}, []string{"app", "scope"}),
	}
	m.reg.MustRegister(m.requests, m.rateLimited, &liveCollector{
		apps: apps, sessions: sessions,
		sessD:   prometheus.NewDesc("switchboard_sessions", "Live sessions on this pod.", []string{"app"}, nil),
		tracksD: prometheus.NewDesc("switchboard_tracks", "Live tracks on this pod (local = published, remote = pulled).", []string{"app", "location"}, nil),
	})
	return m
}

func (m *metrics) request(app string, code int) {
	m.requests.WithLabelValues(app, strconv.Itoa(code)).Inc()
	if m.onRequest != nil {
		m.onRequest(app, code)
	}
}

func (m *metrics) limited(app, scope string) {
	m.rateLimited.WithLabelValues(app, scope).Inc()
	if m.onLimited != nil {
		m.onLimited(app, scope)
	}
}

// Registry exposes the registry so other packages (usage, relay) can add
// their collectors to the same /metrics.
func (h *Handler) Registry() *prometheus.Registry { return h.metrics.reg }
