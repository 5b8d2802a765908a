package v1alpha1

// UsageCheckpoint is the operator's usage ledger state for one app: the
// month's totals together with, per pod process (pod, boot ID), the
// cumulative counters already counted. A restarted operator resumes from
// it, so reports that arrive afterwards add exactly the bytes not yet
// counted: nothing is lost or counted twice (docs/metering.md). Written
// together with status.usage; not meant to be edited.
type UsageCheckpoint struct {
	// Month is the UTC month of Totals, YYYY-MM.
	Month string `json:"month"`
	// Totals are the month's counts.
	Totals UsageTotals `json:"totals"`
	// Previous is the last closed month.
	// +optional
	Previous *UsageMonthTotals `json:"previous,omitempty"`
	// Watermarks are the counters counted so far per pod process.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Watermarks []UsageWatermark `json:"watermarks,omitempty"`
	// EvictedHorizon (Unix seconds): a pod process with no watermark that
	// started at or before it may have been counted already, so it is
	// counted only from its next report on.
	// +optional
	EvictedHorizon int64 `json:"evictedHorizon,omitempty"`
}

// UsageTotals are byte and request counts.
type UsageTotals struct {
	// EgressSFUBytes is bytes SFU pods sent to clients.
	EgressSFUBytes int64 `json:"egressSFUBytes"`
	// EgressTURNBytes is bytes TURN pods sent to clients.
	EgressTURNBytes int64 `json:"egressTURNBytes"`
	// IngressBytes is bytes received from clients.
	IngressBytes int64 `json:"ingressBytes"`
	// Requests is Calls API requests answered.
	Requests int64 `json:"requests"`
	// RateLimitedApp is requests refused by the per-app limit.
	RateLimitedApp int64 `json:"rateLimitedApp"`
	// RateLimitedSession is requests refused by the per-session limit.
	RateLimitedSession int64 `json:"rateLimitedSession"`
}

// UsageMonthTotals are a closed month's totals.
type UsageMonthTotals struct {
	// Month is the UTC month, YYYY-MM.
	Month string `json:"month"`
	// Totals are that month's counts.
	Totals UsageTotals `json:"totals"`
}

// UsageWatermark is what one pod process's counters have contributed.
type UsageWatermark struct {
	// Pod is the reporting pod's name.
	Pod string `json:"pod"`
	// BootID identifies one run of the pod's process; counters restart at
	// zero with a new one.
	BootID string `json:"bootID"`
	// BootTime is when the process started (Unix seconds, operator clock).
	BootTime int64 `json:"bootTime"`
	// LastSeen is when its last report was applied (Unix seconds).
	LastSeen int64 `json:"lastSeen"`
	// Seq is the sequence number of that report.
	Seq int64 `json:"seq"`
	// Final is set once the process sent its last report (graceful stop).
	// +optional
	Final bool `json:"final,omitempty"`
	// Counted are the process's cumulative counters already counted.
	Counted UsageTotals `json:"counted"`
}
