package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MediaExposure is how WebRTC clients reach the media (UDP) port of an SFU pod.
// +kubebuilder:validation:Enum=HostNetwork;TURNIngress;Direct
type MediaExposure string

const (
	// ExposureHostNetwork runs SFU pods in the node's network namespace; each pod
	// advertises its node's address on one UDP port. At most one SFU pod of the
	// pool runs per node. This is the documented exception to Pod Security
	// "restricted".
	ExposureHostNetwork MediaExposure = "HostNetwork"
	// ExposureTURNIngress keeps SFU pods on the pod network; clients reach them
	// only through the pool's TURN service, whose relay may reach SFU media
	// ports and nothing else.
	ExposureTURNIngress MediaExposure = "TURNIngress"
	// ExposureDirect advertises the pod IP as is: for development, tests and
	// flat networks where clients can route to pod IPs.
	ExposureDirect MediaExposure = "Direct"
)

// TURNProtocol is the transport of one TURN listener.
// +kubebuilder:validation:Enum=UDP;TCP;TLS
type TURNProtocol string

const (
	// TURNProtocolUDP is TURN over UDP.
	TURNProtocolUDP TURNProtocol = "UDP"
	// TURNProtocolTCP is TURN over TCP.
	TURNProtocolTCP TURNProtocol = "TCP"
	// TURNProtocolTLS is TURN over TLS on TCP (turns:); it needs spec.turn.tlsSecretRef.
	TURNProtocolTLS TURNProtocol = "TLS"
)

// SFUPoolSpec is the desired state of a pool of SFU pods and its TURN servers.
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="spec.replicas and spec.autoscaling are mutually exclusive: set one"
// +kubebuilder:validation:XValidation:rule="!has(self.media) || !has(self.media.exposure) || self.media.exposure != 'TURNIngress' || !has(self.turn) || !has(self.turn.enabled) || self.turn.enabled",message="spec.turn.enabled must be true when spec.media.exposure is TURNIngress"
type SFUPoolSpec struct {
	// Replicas is the fixed number of SFU pods. Leave it unset and set
	// autoscaling instead to let a HorizontalPodAutoscaler choose. When
	// neither is set the pool runs 2 pods.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling scales the SFU pods between minReplicas and maxReplicas, on
	// CPU use (mode CPU) or on the load the pods report (mode Load).
	// Mutually exclusive with replicas.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// Image is the Switchboard container image run by SFU and TURN pods. The
	// default is the image `make image` builds; set your registry's image.
	// +kubebuilder:default="switchboard:dev"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of SFU and TURN containers.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Resources of each SFU container. When empty the operator requests
	// 500m CPU and 256Mi memory and limits memory to 1Gi.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Media sets how clients reach SFU pods (exposure) and on which UDP port.
	// +kubebuilder:default={}
	// +optional
	Media MediaSpec `json:"media,omitempty"`

	// API sets how the session API is published.
	// +kubebuilder:default={}
	// +optional
	API APISpec `json:"api,omitempty"`

	// TURN configures the pool's TURN servers.
	// +kubebuilder:default={}
	// +optional
	TURN TURNSpec `json:"turn,omitempty"`

	// Scheduling constrains where SFU and TURN pods run.
	// +optional
	Scheduling SchedulingSpec `json:"scheduling,omitempty"`

	// DrainTimeout is how long a stopping SFU pod keeps serving its existing
	// sessions (taking no new ones) before it exits. Pods get this plus a
	// 15s margin as terminationGracePeriodSeconds.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="spec.drainTimeout must be between 0s and 24h"
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`

	// TrustedProxies are CIDRs of load balancers or proxies whose
	// X-Forwarded-For header is believed when finding a client's IP for rate
	// limiting. Requests from anyone else are keyed by their TCP peer.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="spec.trustedProxies must hold CIDRs such as 10.0.0.0/8"
	// +listType=set
	// +optional
	TrustedProxies []string `json:"trustedProxies,omitempty"`
}

// AutoscalingMode chooses what drives the number of SFU pods.
// +kubebuilder:validation:Enum=CPU;Load
type AutoscalingMode string

const (
	// AutoscalingCPU hands the SFU StatefulSet to a HorizontalPodAutoscaler
	// that follows CPU use (the metrics server must run in the cluster).
	AutoscalingCPU AutoscalingMode = "CPU"
	// AutoscalingLoad lets the operator scale on the load the pods report
	// (sessions, egress), removing the emptier end of the ordinal range on
	// scale-down. See docs/proposals/2026-11-24-autoscaling-on-load.md.
	AutoscalingLoad AutoscalingMode = "Load"
)

// AutoscalingSpec scales the SFU pods between minReplicas and maxReplicas,
// either through a CPU-based HorizontalPodAutoscaler (mode CPU) or by the
// operator on the pods' reported load (mode Load).
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'Load' || has(self.targetSessionsPerPod) || has(self.targetEgressBytesPerSecondPerPod)",message="spec.autoscaling.mode Load needs targetSessionsPerPod or targetEgressBytesPerSecondPerPod"
// +kubebuilder:validation:XValidation:rule="(has(self.mode) && self.mode == 'Load') || (!has(self.targetSessionsPerPod) && !has(self.targetEgressBytesPerSecondPerPod) && !has(self.scaleDownStabilization))",message="spec.autoscaling.targetSessionsPerPod, targetEgressBytesPerSecondPerPod and scaleDownStabilization apply only to mode Load"
type AutoscalingSpec struct {
	// Mode is CPU (a HorizontalPodAutoscaler on CPU use, the default) or
	// Load (the operator scales on the sessions and egress the pods report).
	// +kubebuilder:default=CPU
	// +optional
	Mode AutoscalingMode `json:"mode,omitempty"`

	// MinReplicas is the lowest number of SFU pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=2
	MinReplicas int32 `json:"minReplicas"`

	// MaxReplicas is the highest number of SFU pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetCPUUtilizationPercentage is the average CPU use, in percent of the
	// request, the autoscaler aims for (mode CPU).
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=70
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`

	// TargetSessionsPerPod is the average number of live sessions per SFU
	// pod the operator aims for (mode Load). With targetEgressBytesPerSecondPerPod
	// also set, the pool gets the larger of the two pod counts.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	TargetSessionsPerPod *int64 `json:"targetSessionsPerPod,omitempty"`

	// TargetEgressBytesPerSecondPerPod is the average egress rate per SFU pod,
	// in bytes per second, the operator aims for (mode Load); for example
	// 125000000 for 1 Gbit/s.
	// +kubebuilder:validation:Minimum=1000
	// +optional
	TargetEgressBytesPerSecondPerPod *int64 `json:"targetEgressBytesPerSecondPerPod,omitempty"`

	// ScaleDownStabilization is how long the load must have asked for fewer
	// pods, without a break, before the operator removes one (mode Load).
	// Scale-up happens as soon as the load averaged over 30 s is over the
	// target. Default 5m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="spec.autoscaling.scaleDownStabilization must be between 0s and 24h"
	// +optional
	ScaleDownStabilization *metav1.Duration `json:"scaleDownStabilization,omitempty"`
}

// LoadDriven reports whether the operator scales the pool on reported load.
func (a *AutoscalingSpec) LoadDriven() bool { return a != nil && a.Mode == AutoscalingLoad }

// MediaSpec is the SFU media plane: exposure and UDP port.
type MediaSpec struct {
	// Exposure is how clients reach SFU media: HostNetwork (node address, one
	// pod per node), TURNIngress (only through the pool's TURN service) or
	// Direct (pod IP; development and flat networks).
	// +kubebuilder:default=Direct
	// +optional
	Exposure MediaExposure `json:"exposure,omitempty"`

	// UDPPort is the single ICE UDP port every SFU pod multiplexes all its
	// sessions on. In HostNetwork mode it is opened on the node.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=3478
	// +optional
	UDPPort int32 `json:"udpPort,omitempty"`
}

// APISpec is how the session API (HTTP) is published.
type APISpec struct {
	// ServiceType of the session API Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// URL is the public base URL clients use (for example
	// https://rtc.example.com), shown in status and in each CallsApp's
	// endpoint. When empty the in-cluster Service URL is shown.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="spec.api.url must be an absolute http(s) URL"
	// +optional
	URL string `json:"url,omitempty"`
}

// TURNSpec configures the TURN servers of a pool.
// +kubebuilder:validation:XValidation:rule="!has(self.listeners) || !self.listeners.exists(l, l.protocol == 'TLS') || has(self.tlsSecretRef)",message="spec.turn.tlsSecretRef is required when spec.turn.listeners has a TLS listener"
type TURNSpec struct {
	// Enabled runs TURN pods for the pool and hands their URLs to clients.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Replicas is the number of TURN pods.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Listeners are the protocols and ports the TURN service accepts clients
	// on. Names and ports must be unique.
	// +kubebuilder:default={{name: "udp", protocol: "UDP", port: 3478},{name: "tcp", protocol: "TCP", port: 3478}}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, b.protocol == a.protocol))",message="spec.turn.listeners must have at most one listener per protocol"
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, b.port == a.port && (b.protocol == 'UDP') == (a.protocol == 'UDP')))",message="spec.turn.listeners must not put two TCP-based listeners (TCP, TLS) on one port"
	// +listType=map
	// +listMapKey=name
	// +optional
	Listeners []TURNListener `json:"listeners,omitempty"`

	// Realm is the TURN realm used in long-term credentials.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default="switchboard"
	// +optional
	Realm string `json:"realm,omitempty"`

	// ExternalHost is the host name or address clients use in turn: URLs.
	// When empty the in-cluster name of the TURN Service is used.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ExternalHost string `json:"externalHost,omitempty"`

	// ServiceType of the TURN Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// TLSSecretRef names a kubernetes.io/tls Secret in the pool's namespace
	// holding the certificate of TLS listeners.
	// +optional
	TLSSecretRef *corev1.LocalObjectReference `json:"tlsSecretRef,omitempty"`

	// AllowedPeerCIDRs widen the relay deny-list: by default TURN refuses to
	// relay to loopback, link-local, private, CGNAT, metadata and multicast
	// addresses. In TURNIngress mode the SFU pods are always allowed.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="spec.turn.allowedPeerCIDRs must hold CIDRs such as 10.0.0.0/8"
	// +listType=set
	// +optional
	AllowedPeerCIDRs []string `json:"allowedPeerCIDRs,omitempty"`

	// Resources of each TURN container. When empty the operator requests
	// 250m CPU and 128Mi memory and limits memory to 512Mi.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// TURNListener is one protocol and port the TURN service listens on.
type TURNListener struct {
	// Name identifies the listener and names its Service port (the container
	// port is "turn-<name>", hence at most 10 characters).
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]{0,8}[a-z0-9])?$`
	Name string `json:"name"`

	// Protocol is UDP, TCP or TLS.
	Protocol TURNProtocol `json:"protocol"`

	// Port is the port the TURN container listens on. Non-root pods cannot
	// bind ports below 1024; set servicePort to publish a low port.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// ServicePort is the port the TURN Service publishes for this listener
	// (for example 443 for TLS). Defaults to port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	ServicePort int32 `json:"servicePort,omitempty"`
}

// SchedulingSpec constrains where SFU and TURN pods run.
type SchedulingSpec struct {
	// NodeSelector must match a node's labels for a pod to run there.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let pods run on tainted nodes.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity adds node and pod affinity rules. In HostNetwork mode the
	// operator adds a pod anti-affinity that keeps one SFU pod per node.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PriorityClassName of SFU and TURN pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
}

// SFUPoolStatus is the observed state of a pool.
type SFUPoolStatus struct {
	// ObservedGeneration is the spec generation the operator last acted on
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (enough SFU pods ready to serve), Progressing (a
	// rollout or scale is under way), Degraded (the operator cannot reach the
	// desired state; see the reason).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// DesiredReplicas is the number of SFU pods the pool aims for. The
	// counters of this status are pointers so that a zero is written (and
	// shown by kubectl get) rather than left out.
	// +optional
	DesiredReplicas *int32 `json:"desiredReplicas,omitempty"`

	// ReadyReplicas is the number of SFU pods ready to take sessions.
	// +optional
	ReadyReplicas *int32 `json:"readyReplicas,omitempty"`

	// DrainingReplicas is the number of SFU pods stopping: they keep their
	// sessions up to the drain timeout and take no new ones.
	// +optional
	DrainingReplicas int32 `json:"drainingReplicas,omitempty"`

	// Sessions is the number of live sessions across the pool's pods.
	// +optional
	Sessions *int64 `json:"sessions,omitempty"`

	// Endpoint is the base URL of the session API (spec.api.url, or the
	// in-cluster Service URL).
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// TURNURLs are the turn: and turns: URLs handed to clients.
	// +listType=atomic
	// +optional
	TURNURLs []string `json:"turnURLs,omitempty"`

	// Apps is the number of CallsApps in the pool's rendered configuration.
	// +optional
	Apps int32 `json:"apps,omitempty"`

	// ConfigVersion is the version (content hash) of the configuration the
	// operator rendered last into the <pool>-config Secret.
	// +optional
	ConfigVersion string `json:"configVersion,omitempty"`

	// OrdinalStart is the ordinal of the SFU StatefulSet's first pod
	// (spec.ordinals.start): load-driven scale-down may remove the lowest
	// ordinal instead of the highest, so the range does not always start
	// at 0.
	// +optional
	OrdinalStart int32 `json:"ordinalStart,omitempty"`

	// LastScaleTime is when the operator last changed the number of SFU
	// pods (mode Load).
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`

	// Pods lists the SFU pods with their addresses and state.
	// +listType=map
	// +listMapKey=name
	// +optional
	Pods []PoolPod `json:"pods,omitempty"`
}

// PoolPod is one SFU pod as the pool sees it.
type PoolPod struct {
	// Name of the pod.
	Name string `json:"name"`

	// PodIP is the pod's address on the pod network.
	// +optional
	PodIP string `json:"podIP,omitempty"`

	// MediaAddress is the address the pod advertises in ICE candidates
	// (node address in HostNetwork mode, pod IP otherwise).
	// +optional
	MediaAddress string `json:"mediaAddress,omitempty"`

	// Ready tells whether the pod takes new sessions.
	// +optional
	Ready bool `json:"ready,omitempty"`

	// Draining tells whether the pod is stopping.
	// +optional
	Draining bool `json:"draining,omitempty"`

	// DrainDeadline is when a draining pod stops even if sessions remain
	// (the pool's drain timeout after the pod got SIGTERM).
	// +optional
	DrainDeadline *metav1.Time `json:"drainDeadline,omitempty"`

	// Sessions is the number of live sessions on the pod.
	// +optional
	Sessions int64 `json:"sessions,omitempty"`

	// Tracks is the number of live tracks (published and pulled) on the pod.
	// +optional
	Tracks int64 `json:"tracks,omitempty"`

	// EgressBytesPerSecond is the pod's egress rate over its last two usage
	// reports.
	// +optional
	EgressBytesPerSecond int64 `json:"egressBytesPerSecond,omitempty"`

	// ConfigVersion is the configuration version the pod reports it runs.
	// +optional
	ConfigVersion string `json:"configVersion,omitempty"`
}

// SFUPool is a fleet of SFU pods (and their TURN servers) that acts as one
// Calls-compatible SFU. CallsApps name the pool that serves them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 40",message="metadata.name of an SFUPool must be at most 40 characters: it prefixes its Services and pods"
// +kubebuilder:resource:shortName=sfp;sfupool,categories=switchboard
// +kubebuilder:printcolumn:name="READY",type=integer,JSONPath=`.status.readyReplicas`,description="SFU pods ready to take sessions"
// +kubebuilder:printcolumn:name="DESIRED",type=integer,JSONPath=`.status.desiredReplicas`,description="SFU pods the pool aims for"
// +kubebuilder:printcolumn:name="SESSIONS",type=integer,JSONPath=`.status.sessions`,description="Live sessions across the pool"
// +kubebuilder:printcolumn:name="ENDPOINT",type=string,JSONPath=`.status.endpoint`,description="Session API base URL"
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type SFUPool struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the pool.
	// +kubebuilder:default={}
	// +optional
	Spec SFUPoolSpec `json:"spec,omitempty"`

	// status is the observed state of the pool, written by the operator.
	// +optional
	Status SFUPoolStatus `json:"status,omitempty"`
}

// SFUPoolList is a list of SFUPools.
//
// +kubebuilder:object:root=true
type SFUPoolList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the pools.
	Items []SFUPool `json:"items"`
}
