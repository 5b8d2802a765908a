package sfu_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

var forwardedLine = regexp.MustCompile(`(?m)^switchboard_forwarded_packets_total (\S+)$`)

// /metrics counts the packets the SFU forwarded (at least what the
// subscriber received) and exports the process CPU time the dashboard
// divides by it.
func TestMetricsCountForwardedPacketsAndProcessCPU(t *testing.T) {
	e := newEnv(t, envOpt{})
	_, pubSID := publish(t, e, appA, secretA, "fw")
	sub, _ := pull(t, e, appA, secretA, pubSID, "fw")
	sub.waitMedia("0", "fw-audio", 30)
	sub.waitMedia("1", "fw-video", 30)
	received := sub.count("0", "fw-audio") + sub.count("1", "fw-video")

	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := forwardedLine.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no switchboard_forwarded_packets_total in /metrics:\n%s", raw)
	}
	forwarded, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	if forwarded < float64(received) {
		t.Errorf("switchboard_forwarded_packets_total = %v, but the subscriber alone received %d packets", forwarded, received)
	}
	if !regexp.MustCompile(`(?m)^process_cpu_seconds_total [0-9.e+-]+$`).Match(raw) {
		t.Errorf("no process_cpu_seconds_total in /metrics:\n%s", raw)
	}
}
