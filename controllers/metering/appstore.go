package metering

import (
	"context"
	"fmt"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// specStore is the admin API's AppStore: the CallsApp spec is the single
// source of truth, so a rate-limit change is a spec patch that the
// operator renders down to the pods.
type specStore struct{ c client.Client }

func (s *specStore) find(ctx context.Context, appID string) (*v1alpha1.CallsApp, error) {
	var apps v1alpha1.CallsAppList
	if err := s.c.List(ctx, &apps); err != nil {
		return nil, fmt.Errorf("list callsapps: %w", err)
	}
	for i := range apps.Items {
		if apps.Items[i].Status.AppID == appID && appID != "" {
			return &apps.Items[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s", hub.ErrAppNotFound, appID)
}

func adminView(a *v1alpha1.CallsApp) hub.AdminApp {
	return hub.AdminApp{
		AppID: a.Status.AppID, Name: a.Namespace + "/" + a.Name,
		RateLimit:                int(ptr.Deref(a.Spec.RateLimit.AuthenticatedPerSecond, config.DefaultAuthenticatedPerSecond)),
		UnauthenticatedRateLimit: int(ptr.Deref(a.Spec.RateLimit.UnauthenticatedPerSecond, config.DefaultUnauthenticatedPerSecond)),
		SessionCallsPerSecond:    int(ptr.Deref(a.Spec.Sessions.CallsPerSecond, config.DefaultSessionCallsPerSecond)),
	}
}

// GetApp implements hub.AppStore.
func (s *specStore) GetApp(ctx context.Context, appID string) (hub.AdminApp, error) {
	a, err := s.find(ctx, appID)
	if err != nil {
		return hub.AdminApp{}, err
	}
	return adminView(a), nil
}

// SetRateLimit implements hub.AppStore.
func (s *specStore) SetRateLimit(ctx context.Context, appID string, perSecond int) (hub.AdminApp, error) {
	a, err := s.find(ctx, appID)
	if err != nil {
		return hub.AdminApp{}, err
	}
	before := a.DeepCopy()
	a.Spec.RateLimit.AuthenticatedPerSecond = ptr.To(int32(perSecond))
	if err := s.c.Patch(ctx, a, client.MergeFrom(before)); err != nil {
		return hub.AdminApp{}, fmt.Errorf("patch callsapp %s/%s: %w", a.Namespace, a.Name, err)
	}
	return adminView(a), nil
}
