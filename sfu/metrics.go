package sfu

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-rtc/switchboard/sfu/forward"
)

// Metric names this file exports on every SFU's /metrics (docs/metrics.md).
const (
	// MetricForwardedPackets counts RTP packets written to subscribers by
	// this process. Divided into process_cpu_seconds_total it gives the
	// forwarding CPU per packet the Grafana dashboard shows.
	MetricForwardedPackets = "switchboard_forwarded_packets_total"
	// MetricDraining is the drain gauge (1 while the pod drains). The drain
	// code registers it; the name is here so the dashboard's "Pod drain
	// state" panel and the drain code agree on one spelling.
	MetricDraining = "switchboard_draining"
)

// registerForwardMetrics adds the forwarding counter, the process
// collector (process_cpu_seconds_total and friends) and the Go runtime
// collector (go_goroutines, go_memstats_*) to reg. The counter is
// read at scrape time from sfu/forward, which adds to it once per ingested
// packet; nothing is allocated or labelled per packet. reg is the server's
// own new registry, so a name clash is a programming error every test
// hits: it panics like the registry's other MustRegister calls.
func registerForwardMetrics(reg *prometheus.Registry) {
	forwarded := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: MetricForwardedPackets,
		Help: "RTP packets written to subscribers by this pod (first sends and retransmissions).",
	}, func() float64 { return float64(forward.ForwardedPackets()) })
	reg.MustRegister(forwarded, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
}
