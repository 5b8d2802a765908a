package usage

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names (DESIGN 1.3). Every series is labelled by app ID only, never
// by session, so cardinality is bounded by the apps a pod serves plus the
// UnknownApp bucket.
const (
	MetricEgressBytes  = "switchboard_egress_bytes_total"
	MetricIngressBytes = "switchboard_ingress_bytes_total"
	MetricAPIRequests  = "switchboard_api_requests_total"
	MetricRateLimited  = "switchboard_rate_limited_total"
	MetricSessions     = "switchboard_sessions"
	MetricTracks       = "switchboard_tracks"
)

var (
	descEgress = prometheus.NewDesc(MetricEgressBytes,
		"Bytes sent to clients, by app and source (sfu: media, RTCP, DataChannels; turn: TURN server-to-client bytes).",
		[]string{"app", "source"}, nil)
	descIngress = prometheus.NewDesc(MetricIngressBytes,
		"Bytes received from clients, by app.", []string{"app"}, nil)
	descRequests = prometheus.NewDesc(MetricAPIRequests,
		"Session API requests by app and HTTP status code.", []string{"app", "code"}, nil)
	descLimited = prometheus.NewDesc(MetricRateLimited,
		"Requests refused with 429, by app and limit scope (app or session).", []string{"app", "scope"}, nil)
	descSessions = prometheus.NewDesc(MetricSessions, "Live sessions, by app.", []string{"app"}, nil)
	descTracks   = prometheus.NewDesc(MetricTracks, "Live tracks, by app.", []string{"app"}, nil)
)

// Collector exports a Meter's counters. It reads the atomics at scrape
// time, so counting costs nothing extra on the hot path.
type Collector struct {
	m           *Meter
	trafficOnly bool
}

// Collector returns the Prometheus collector of all of m's metrics;
// register it once.
func (m *Meter) Collector() *Collector { return &Collector{m: m} }

// TrafficCollector exports only the byte counters (egress and ingress),
// for a process whose API layer already exports the request, rate-limit
// and live gauges under the same names.
func (m *Meter) TrafficCollector() *Collector { return &Collector{m: m, trafficOnly: true} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEgress
	ch <- descIngress
	if c.trafficOnly {
		return
	}
	for _, d := range []*prometheus.Desc{descRequests, descLimited, descSessions, descTracks} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	live := c.m.liveNow()
	for _, a := range c.m.Apps() {
		ch <- prometheus.MustNewConstMetric(descEgress, prometheus.CounterValue, float64(a.egressSFU.Load()), a.id, string(SourceSFU))
		ch <- prometheus.MustNewConstMetric(descEgress, prometheus.CounterValue, float64(a.egressTURN.Load()), a.id, string(SourceTURN))
		ch <- prometheus.MustNewConstMetric(descIngress, prometheus.CounterValue, float64(a.ingress.Load()), a.id)
		if c.trafficOnly {
			continue
		}
		for i := range a.requests {
			if v := a.requests[i].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(v), a.id, codeLabels[i])
			}
		}
		ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(a.limitedApp.Load()), a.id, "app")
		ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(a.limitedSession.Load()), a.id, "session")
		sessions, tracks := max(a.sessions.Load(), 0), max(a.tracks.Load(), 0)
		if live != nil {
			sessions, tracks = live[a.id].Sessions, live[a.id].Tracks
		}
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(sessions), a.id)
		ch <- prometheus.MustNewConstMetric(descTracks, prometheus.GaugeValue, float64(tracks), a.id)
	}
}
