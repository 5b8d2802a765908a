package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Defaults that the schema markers also carry. Default() below applies them
// to objects that did not pass through the API server (dev mode reads
// manifests from files); a test checks both agree.
const (
	DefaultImage           = "switchboard:dev"
	DefaultSFUReplicas     = int32(2)
	DefaultTURNReplicas    = int32(1)
	DefaultDrainTimeout    = 5 * time.Minute
	DefaultRealm           = "switchboard"
	DefaultPricePerGB      = "0.05"
	DefaultAutoscaleMin    = int32(2)
	DefaultAutoscaleTarget = int32(70)
	// DefaultScaleDownStabilization is how long load must ask for fewer pods
	// before a load-driven pool removes one.
	DefaultScaleDownStabilization = 5 * time.Minute
)

// DefaultTURNListeners are the TURN listeners of a pool that names none.
func DefaultTURNListeners() []TURNListener {
	return []TURNListener{
		{Name: "udp", Protocol: TURNProtocolUDP, Port: config.DefaultTURNPort},
		{Name: "tcp", Protocol: TURNProtocolTCP, Port: config.DefaultTURNPort},
	}
}

// Default fills every unset field of the pool's spec with the value the
// schema default would give it. Replicas stays unset when autoscaling is set.
func (p *SFUPool) Default() {
	s := &p.Spec
	if s.Replicas == nil && s.Autoscaling == nil {
		s.Replicas = ptr.To(DefaultSFUReplicas)
	}
	if a := s.Autoscaling; a != nil {
		if a.MinReplicas == 0 {
			a.MinReplicas = DefaultAutoscaleMin
		}
		if a.Mode == "" {
			a.Mode = AutoscalingCPU
		}
		if a.TargetCPUUtilizationPercentage == 0 {
			a.TargetCPUUtilizationPercentage = DefaultAutoscaleTarget
		}
	}
	if s.Image == "" {
		s.Image = DefaultImage
	}
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if s.Media.Exposure == "" {
		s.Media.Exposure = ExposureDirect
	}
	if s.Media.UDPPort == 0 {
		s.Media.UDPPort = config.DefaultUDPPort
	}
	if s.API.ServiceType == "" {
		s.API.ServiceType = corev1.ServiceTypeClusterIP
	}
	t := &s.TURN
	if t.Enabled == nil {
		t.Enabled = ptr.To(true)
	}
	if t.Replicas == nil {
		t.Replicas = ptr.To(DefaultTURNReplicas)
	}
	if len(t.Listeners) == 0 {
		t.Listeners = DefaultTURNListeners()
	}
	if t.Realm == "" {
		t.Realm = DefaultRealm
	}
	if t.ServiceType == "" {
		t.ServiceType = corev1.ServiceTypeClusterIP
	}
	if s.DrainTimeout == nil {
		s.DrainTimeout = &metav1.Duration{Duration: DefaultDrainTimeout}
	}
}

// TURNEnabled reports whether the pool runs TURN pods (default true).
func (s *SFUPoolSpec) TURNEnabled() bool { return ptr.Deref(s.TURN.Enabled, true) }

// Default fills every unset field of the app's spec with the value the
// schema default would give it.
func (a *CallsApp) Default() {
	s := &a.Spec
	setInt32(&s.RateLimit.AuthenticatedPerSecond, config.DefaultAuthenticatedPerSecond)
	setInt32(&s.RateLimit.UnauthenticatedPerSecond, config.DefaultUnauthenticatedPerSecond)
	setInt32(&s.Sessions.CallsPerSecond, config.DefaultSessionCallsPerSecond)
	setInt32(&s.Sessions.MaxTracksPerCall, config.DefaultMaxTracksPerCall)
	setDuration(&s.Sessions.TrackTimeout, config.DefaultTrackTimeout)
	setDuration(&s.Sessions.ReconnectWindow, config.DefaultReconnectWindow)
	setDuration(&s.Sessions.ConnectWait, config.DefaultConnectWait)
	if s.Billing.FreeGB == nil {
		s.Billing.FreeGB = ptr.To(int64(config.DefaultFreeGB))
	}
	if s.Billing.PricePerGB == "" {
		s.Billing.PricePerGB = DefaultPricePerGB
	}
	if s.TURN.Enabled == nil {
		s.TURN.Enabled = ptr.To(true)
	}
}

// TURNEnabled reports whether the app gets a TURN key (default true).
func (s *CallsAppSpec) TURNEnabled() bool { return ptr.Deref(s.TURN.Enabled, true) }

func setInt32(p **int32, v int32) {
	if *p == nil {
		*p = ptr.To(v)
	}
}

func setDuration(p **metav1.Duration, d time.Duration) {
	if *p == nil {
		*p = &metav1.Duration{Duration: d}
	}
}
