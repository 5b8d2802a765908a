package callsapp_test

import (
	"context"
	"fmt"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
)

// recordedEvents returns the Events about the object name in ns with the
// given reason, and how many times they were recorded in all (a repeated
// Event is one object whose series counts the repeats).
func recordedEvents(ctx context.Context, ns, name, reason string) ([]eventsv1.Event, int32, error) {
	var list eventsv1.EventList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, 0, err
	}
	var out []eventsv1.Event
	var n int32
	for _, e := range list.Items {
		if e.Regarding.Name != name || e.Reason != reason {
			continue
		}
		out = append(out, e)
		n++
		if e.Series != nil {
			n += e.Series.Count - 1
		}
	}
	return out, n, nil
}

// waitEvent fails unless an Event with reason and type about name shows
// up; it returns the first one.
func waitEvent(t *testing.T, ns, name, eventType, reason string) eventsv1.Event {
	t.Helper()
	var got eventsv1.Event
	testenv.Eventually(t, fmt.Sprintf("%s Event %s on %s", eventType, reason, name), func() error {
		evs, _, err := recordedEvents(context.Background(), ns, name, reason)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == eventType {
				got = e
				return nil
			}
		}
		return fmt.Errorf("events %+v", evs)
	})
	return got
}
