package hub

import (
	"fmt"
	"time"
)

// AppState is what the operator persists per CallsApp (in status) so a
// restarted manager resumes counting exactly where the last persisted
// state left off. Totals and watermarks must be written and restored
// together, from one State call: a report that arrives after the restore
// adds exactly the bytes the restored watermark has not seen yet.
//
// Bounded: at most MaxWatermarks entries; watermarks of boots silent for
// WatermarkTTL (or FinalTTL after a final report) are dropped, and
// EvictedHorizon remembers the newest dropped one so a dropped boot that
// reports again is re-baselined instead of counted twice.
type AppState struct {
	// Month is the UTC calendar month the totals belong to, "2006-01".
	Month  string `json:"month"`
	Totals Totals `json:"totals"`
	// Previous holds the last month's totals after a rollover.
	Previous *MonthTotals `json:"previous,omitempty"`
	// Watermarks are the highest counters applied per (pod, boot).
	Watermarks []Watermark `json:"watermarks,omitempty"`
	// EvictedHorizon (Unix seconds): a boot with no watermark whose boot
	// time is at or before it may have been counted already.
	EvictedHorizon int64 `json:"evictedHorizon,omitempty"`
}

// Totals are one month's usage of an app. Bytes are int64 so they map onto
// CRD integer fields; 2^63 bytes is 9.2 EB.
type Totals struct {
	EgressSFUBytes     int64 `json:"egressSFUBytes"`
	EgressTURNBytes    int64 `json:"egressTURNBytes"`
	IngressBytes       int64 `json:"ingressBytes"`
	Requests           int64 `json:"requests"`
	RateLimitedApp     int64 `json:"rateLimitedApp"`
	RateLimitedSession int64 `json:"rateLimitedSession"`
}

// EgressBytes is SFU plus TURN egress.
func (t Totals) EgressBytes() int64 { return t.EgressSFUBytes + t.EgressTURNBytes }

// MonthTotals are a closed month.
type MonthTotals struct {
	Month  string `json:"month"`
	Totals Totals `json:"totals"`
}

// Watermark is the part of one pod boot's counters already counted.
type Watermark struct {
	Pod    string `json:"pod"`
	BootID string `json:"bootID"`
	// BootTime (estimated on the manager's clock from the pod's uptime)
	// and LastSeen are Unix seconds.
	BootTime int64 `json:"bootTime"`
	LastSeen int64 `json:"lastSeen"`
	Seq      int64 `json:"seq"`
	Final    bool  `json:"final,omitempty"`
	// Counted are the boot's cumulative counters as of Seq.
	Counted Totals `json:"counted"`
}

// Billing are an app's pricing settings.
type Billing struct {
	// FreeGB is the monthly free tier in GB (10^9 bytes), shared by SFU and
	// TURN.
	FreeGB int64
	// PricePerGBMicroUSD is the price of one billable GB in millionths of
	// a US dollar (50000 = $0.05).
	PricePerGBMicroUSD int64
	// MonthlyCapGB, when > 0, is the egress after which QuotaExceeded is
	// set.
	MonthlyCapGB int64
}

const bytesPerGB = 1_000_000_000

// BillableBytes is the egress above the free tier.
func (b Billing) BillableBytes(egress int64) int64 {
	free := b.FreeGB * bytesPerGB
	if egress <= free {
		return 0
	}
	return egress - free
}

// CostMicroUSD prices billable bytes, rounding down to a micro-dollar,
// without overflowing for any int64 byte count.
func (b Billing) CostMicroUSD(billable int64) int64 {
	whole := billable / bytesPerGB
	part := billable % bytesPerGB
	return whole*b.PricePerGBMicroUSD + part*b.PricePerGBMicroUSD/bytesPerGB
}

// MonthOf is the UTC calendar month of t, "2006-01".
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// FormatBytes renders a byte count in decimal units for printer columns:
// "0 B", "950 B", "1.5 kB", "12.3 GB", "1.02 TB".
func FormatBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n)
	i := -1
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, units[i])
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, units[i])
	default:
		return fmt.Sprintf("%.2f %s", v, units[i])
	}
}

// FormatUSD renders micro-dollars as "$12.35" (rounded to the cent).
func FormatUSD(micro int64) string {
	cents := (micro + 5000) / 10000
	return fmt.Sprintf("$%d.%02d", cents/100, cents%100)
}

// FormatGB renders bytes as decimal GB (10^9 bytes) with up to three
// decimals, truncated: 2_500_000_000 → "2.5", 12_345_678_901 → "12.345".
func FormatGB(n int64) string {
	if n < 0 {
		n = 0
	}
	whole := n / bytesPerGB
	milli := (n % bytesPerGB) / 1_000_000
	if milli == 0 {
		return fmt.Sprintf("%d", whole)
	}
	s := fmt.Sprintf("%d.%03d", whole, milli)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return s
}
