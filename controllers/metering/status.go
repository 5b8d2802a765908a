package metering

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/hub"
)

// checkpointOf converts the ledger state to its status form. The two types
// share their JSON shape.
func checkpointOf(st hub.AppState) (*v1alpha1.UsageCheckpoint, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode usage checkpoint: %w", err)
	}
	var cp v1alpha1.UsageCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("decode usage checkpoint: %w", err)
	}
	return &cp, nil
}

// stateOf converts a status checkpoint back into ledger state.
func stateOf(cp *v1alpha1.UsageCheckpoint) (hub.AppState, error) {
	if cp == nil {
		return hub.AppState{}, nil
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return hub.AppState{}, fmt.Errorf("encode usage checkpoint: %w", err)
	}
	var st hub.AppState
	if err := json.Unmarshal(b, &st); err != nil {
		return hub.AppState{}, fmt.Errorf("decode usage checkpoint: %w", err)
	}
	return st, nil
}

// billingOf reads an app's pricing from its spec.
func billingOf(app *v1alpha1.CallsApp) hub.Billing {
	b := hub.DefaultBilling
	if app.Spec.Billing.FreeGB != nil {
		b.FreeGB = *app.Spec.Billing.FreeGB
	}
	if p, err := app.Spec.Billing.PricePerGBMicroUSD(); err == nil {
		b.PricePerGBMicroUSD = p
	}
	if app.Spec.Billing.MonthlyEgressCapGB != nil {
		b.MonthlyCapGB = *app.Spec.Billing.MonthlyEgressCapGB
	}
	return b
}

// applyUsage writes u into the status fields this package owns (usage,
// live, rate counters, checkpoint). The rate limit in force is the CallsApp
// controller's.
func applyUsage(st *v1alpha1.CallsAppStatus, u hub.Usage, now metav1.Time) error {
	cp, err := checkpointOf(u.State)
	if err != nil {
		return err
	}
	st.Usage = &v1alpha1.UsageStatus{
		Month:                 u.Month,
		SFUEgressBytes:        u.Totals.EgressSFUBytes,
		TURNEgressBytes:       u.Totals.EgressTURNBytes,
		EgressBytes:           u.EgressBytes,
		IngressBytes:          u.Totals.IngressBytes,
		BillableGB:            hub.FormatGB(u.BillableBytes),
		EstimatedCostMicroUSD: u.CostMicroUSD,
		Egress:                hub.FormatBytes(u.EgressBytes),
		Cost:                  hub.FormatUSD(u.CostMicroUSD),
		UpdatedAt:             &now,
	}
	if st.Live == nil {
		st.Live = &v1alpha1.LiveStatus{}
	}
	st.Live.Sessions, st.Live.Tracks = u.Sessions, u.Tracks
	if st.Rate == nil {
		st.Rate = &v1alpha1.RateStatus{}
	}
	st.Rate.PeakPerSecond = u.PeakPerSecond
	st.Rate.Throttled = v1alpha1.ThrottledCounts{
		App: u.Totals.RateLimitedApp, Session: u.Totals.RateLimitedSession,
		Total: u.Totals.RateLimitedApp + u.Totals.RateLimitedSession,
	}
	st.Checkpoint = cp
	return nil
}

// fingerprint changes when the status to write changes, ignoring what
// moves without new usage (timestamps, report sequence numbers).
func fingerprint(u hub.Usage) string {
	st := u.State
	marks := make([]hub.Watermark, len(st.Watermarks))
	for i, w := range st.Watermarks {
		w.Seq, w.LastSeen = 0, 0
		marks[i] = w
	}
	st.Watermarks = marks
	b, _ := json.Marshal(struct {
		S                hub.AppState
		Sessions, Tracks int64
		Peak             int64
		Billable, Cost   int64
	}{st, u.Sessions, u.Tracks, u.PeakPerSecond, u.BillableBytes, u.CostMicroUSD})
	return string(b)
}
