package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CallsAppSpec is the desired state of one Calls-compatible application.
type CallsAppSpec struct {
	// PoolRef names the SFUPool, in the same namespace, that serves the app.
	PoolRef PoolReference `json:"poolRef"`

	// RateLimit is the per-app request quota, counted per client IP in a
	// one-second window. Requests over it get HTTP 429.
	// +kubebuilder:default={}
	// +optional
	RateLimit RateLimitSpec `json:"rateLimit,omitempty"`

	// Sessions holds the Calls session limits.
	// +kubebuilder:default={}
	// +optional
	Sessions SessionLimitsSpec `json:"sessions,omitempty"`

	// Billing sets the free tier, the price used for the cost estimate and an
	// optional monthly egress cap.
	// +kubebuilder:default={}
	// +optional
	Billing BillingSpec `json:"billing,omitempty"`

	// TURN sets whether the app gets a TURN key to mint TURN credentials.
	// +kubebuilder:default={}
	// +optional
	TURN AppTURNSpec `json:"turn,omitempty"`
}

// PoolReference names an SFUPool in the CallsApp's namespace.
type PoolReference struct {
	// Name of the SFUPool.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// RateLimitSpec is the per-app quota per client IP and second.
type RateLimitSpec struct {
	// AuthenticatedPerSecond is the number of requests with a valid app
	// secret a client IP may make per second.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +kubebuilder:default=10000
	// +optional
	AuthenticatedPerSecond *int32 `json:"authenticatedPerSecond,omitempty"`

	// UnauthenticatedPerSecond is the number of requests with no or an
	// invalid secret a client IP may make per second.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +kubebuilder:default=10
	// +optional
	UnauthenticatedPerSecond *int32 `json:"unauthenticatedPerSecond,omitempty"`
}

// SessionLimitsSpec holds the Calls session limits.
type SessionLimitsSpec struct {
	// CallsPerSecond is the number of API calls one session may make per
	// second; cleanup calls (tracks/close, datachannels/close) are exempt.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:default=50
	// +optional
	CallsPerSecond *int32 `json:"callsPerSecond,omitempty"`

	// MaxTracksPerCall is the number of tracks one tracks/new call may add.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:default=64
	// +optional
	MaxTracksPerCall *int32 `json:"maxTracksPerCall,omitempty"`

	// TrackTimeout is how long a track may receive no packets before it is
	// garbage-collected.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="spec.sessions.trackTimeout must be between 1s and 1h"
	// +optional
	TrackTimeout *metav1.Duration `json:"trackTimeout,omitempty"`

	// ReconnectWindow is how long a session stays reusable after it loses
	// connectivity.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="spec.sessions.reconnectWindow must be between 1s and 1h"
	// +optional
	ReconnectWindow *metav1.Duration `json:"reconnectWindow,omitempty"`

	// ConnectWait is how long an operation that needs a connected
	// PeerConnection waits for it.
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1m')",message="spec.sessions.connectWait must be between 1s and 1m"
	// +optional
	ConnectWait *metav1.Duration `json:"connectWait,omitempty"`

	// MaxSessions caps the app's live sessions per SFU pod; 0 means no cap.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxSessions int32 `json:"maxSessions,omitempty"`
}

// BillingSpec sets how usage turns into an estimated cost.
type BillingSpec struct {
	// FreeGB is the egress, in GB (10^9 bytes) per calendar month (UTC), that
	// costs nothing.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1000
	// +optional
	FreeGB *int64 `json:"freeGB,omitempty"`

	// PricePerGB is the price in US dollars of one billable GB of egress, as
	// a decimal string with at most 6 decimals (for example "0.05").
	// +kubebuilder:validation:Pattern=`^[0-9]{1,6}(\.[0-9]{1,6})?$`
	// +kubebuilder:default="0.05"
	// +optional
	PricePerGB string `json:"pricePerGB,omitempty"`

	// MonthlyEgressCapGB stops the app from opening new sessions once its
	// egress this month reaches this many GB (condition QuotaExceeded).
	// Unset means no cap.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MonthlyEgressCapGB *int64 `json:"monthlyEgressCapGB,omitempty"`
}

// AppTURNSpec sets TURN for one app.
type AppTURNSpec struct {
	// Enabled gives the app a TURN key (ID, API token and HMAC secret in the
	// credentials Secret) so it can mint TURN credentials. It needs a pool
	// with TURN enabled to be useful.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// CallsAppStatus is the observed state of an app.
type CallsAppStatus struct {
	// ObservedGeneration is the spec generation the operator last acted on
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the pool serves the app; see the reason when not) and
	// QuotaExceeded (the monthly egress cap is reached).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// AppID is the Calls app ID (32 lowercase hex characters) used in API
	// paths: /v1/apps/<appID>/sessions/new.
	// +optional
	AppID string `json:"appID,omitempty"`

	// Endpoint is the app's API base URL: <pool endpoint>/v1/apps/<appID>.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// CredentialsSecretName names the Secret, in the app's namespace, holding
	// the app ID, the app secret (the Bearer token) and the TURN key. The
	// secret value never appears in status.
	// +optional
	CredentialsSecretName string `json:"credentialsSecretName,omitempty"`

	// SecretRotation is the last value of the
	// calls.switchboard.dev/rotate-secret annotation the operator acted on:
	// when the annotation holds another value, the operator generates a new
	// app secret (same app ID) and records the value here.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SecretRotation string `json:"secretRotation,omitempty"`

	// SecretRotatedAt is when the app secret was last rotated.
	// +optional
	SecretRotatedAt *metav1.Time `json:"secretRotatedAt,omitempty"`

	// TURNKeyID is the ID of the app's TURN key, used in
	// /v1/turn/keys/<id>/credentials/generate-ice-servers.
	// +optional
	TURNKeyID string `json:"turnKeyID,omitempty"`

	// Live is the app's current load across the pool.
	// +optional
	Live *LiveStatus `json:"live,omitempty"`

	// Usage is the app's metered traffic for the current calendar month (UTC).
	// +optional
	Usage *UsageStatus `json:"usage,omitempty"`

	// Rate is the state of the app's rate limits.
	// +optional
	Rate *RateStatus `json:"rate,omitempty"`

	// Checkpoint is the usage ledger state that lets a restarted operator
	// resume counting without loss or double counting.
	// +optional
	Checkpoint *UsageCheckpoint `json:"checkpoint,omitempty"`
}

// LiveStatus is an app's current load.
type LiveStatus struct {
	// Sessions is the number of live sessions of the app across the pool.
	// +optional
	Sessions int64 `json:"sessions"`

	// Tracks is the number of live tracks (published and pulled) of the app.
	// +optional
	Tracks int64 `json:"tracks"`
}

// UsageStatus is one calendar month of an app's metered traffic.
type UsageStatus struct {
	// Month is the calendar month (UTC) counted, as YYYY-MM.
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}$`
	Month string `json:"month"`

	// SFUEgressBytes is media, RTCP and DataChannel bytes sent by SFU pods
	// to clients this month.
	// +optional
	SFUEgressBytes int64 `json:"sfuEgressBytes,omitempty"`

	// TURNEgressBytes is bytes sent by TURN pods to clients this month,
	// TURN overhead included; traffic between the pool's TURN and SFU pods
	// is counted once.
	// +optional
	TURNEgressBytes int64 `json:"turnEgressBytes,omitempty"`

	// EgressBytes is SFUEgressBytes plus TURNEgressBytes.
	// +optional
	EgressBytes int64 `json:"egressBytes,omitempty"`

	// IngressBytes is bytes received from clients this month (free).
	// +optional
	IngressBytes int64 `json:"ingressBytes,omitempty"`

	// BillableGB is the egress above the free tier, in GB (10^9 bytes), as a
	// decimal string (for example "12.345").
	// +optional
	BillableGB string `json:"billableGB,omitempty"`

	// EstimatedCostMicroUSD is BillableGB times the price, in millionths of
	// a US dollar.
	// +optional
	EstimatedCostMicroUSD int64 `json:"estimatedCostMicroUSD,omitempty"`

	// Egress is EgressBytes for people, for example "1.2 TB" (EGRESS column).
	// +optional
	Egress string `json:"egress,omitempty"`

	// Cost is the estimated cost for people, for example "$12.34" (COST column).
	// +optional
	Cost string `json:"cost,omitempty"`

	// UpdatedAt is when the operator last folded pod reports into this month.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// RateStatus is the state of an app's rate limits.
type RateStatus struct {
	// LimitPerSecond is the authenticated requests per second and client IP
	// in force.
	// +optional
	LimitPerSecond int32 `json:"limitPerSecond"`

	// PeakPerSecond is the highest number of requests the app received in
	// one second over the last minute, all client IPs and pods together.
	// +optional
	PeakPerSecond int64 `json:"peakPerSecond"`

	// Throttled counts requests refused with HTTP 429 this month.
	// +optional
	Throttled ThrottledCounts `json:"throttled,omitempty"`
}

// ThrottledCounts counts refused requests by the limit that refused them.
type ThrottledCounts struct {
	// App is requests refused by the per-app quota (per client IP).
	// +optional
	App int64 `json:"app"`

	// Session is requests refused by the per-session call limit.
	// +optional
	Session int64 `json:"session"`

	// Total is App plus Session (THROTTLED column).
	// +optional
	Total int64 `json:"total"`
}

// CallsApp is one Cloudflare-Calls-compatible application served by an
// SFUPool. The operator generates its app ID and secret into the Secret
// named in status.credentialsSecretName.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name of a CallsApp must be at most 63 characters: it is a label value on its credentials Secret"
// +kubebuilder:resource:shortName=capp;callsapp,categories=switchboard
// +kubebuilder:selectablefield:JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="POOL",type=string,JSONPath=`.spec.poolRef.name`,description="SFUPool serving the app"
// +kubebuilder:printcolumn:name="READY",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,description="Whether the pool serves the app"
// +kubebuilder:printcolumn:name="SESSIONS",type=integer,JSONPath=`.status.live.sessions`,description="Live sessions"
// +kubebuilder:printcolumn:name="EGRESS",type=string,JSONPath=`.status.usage.egress`,description="Egress this month"
// +kubebuilder:printcolumn:name="COST",type=string,JSONPath=`.status.usage.cost`,description="Estimated cost this month"
// +kubebuilder:printcolumn:name="THROTTLED",type=integer,JSONPath=`.status.rate.throttled.total`,description="Requests refused by rate limits this month"
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type CallsApp struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the app.
	// +required
	Spec CallsAppSpec `json:"spec"`

	// status is the observed state of the app, written by the operator.
	// +optional
	Status CallsAppStatus `json:"status,omitempty"`
}

// CallsAppList is a list of CallsApps.
//
// +kubebuilder:object:root=true
type CallsAppList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the apps.
	Items []CallsApp `json:"items"`
}
