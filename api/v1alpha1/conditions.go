package v1alpha1

// Condition types.
const (
	// ReadyCondition: on an SFUPool, enough SFU pods are ready to serve; on a
	// CallsApp, the pool serves the app.
	ReadyCondition = "Ready"
	// ProgressingCondition (SFUPool): a rollout or a scale is under way.
	ProgressingCondition = "Progressing"
	// DegradedCondition (SFUPool): the operator cannot reach the desired state.
	DegradedCondition = "Degraded"
	// QuotaExceededCondition (CallsApp): the monthly egress cap is reached and
	// the app takes no new sessions.
	QuotaExceededCondition = "QuotaExceeded"
)

// Condition reasons. Every condition carries one.
const (
	// ReasonReconciling: the operator has seen the object but not acted yet.
	ReasonReconciling = "Reconciling"

	// ReasonPodsReady (Ready=True, SFUPool): every desired SFU pod is ready.
	ReasonPodsReady = "PodsReady"
	// ReasonPodsNotReady (Ready=False, SFUPool): fewer SFU pods are ready than desired.
	ReasonPodsNotReady = "PodsNotReady"
	// ReasonScaledToZero (Ready=False, SFUPool): the pool has no SFU pods by request.
	ReasonScaledToZero = "ScaledToZero"
	// ReasonRollingOut (Progressing=True, SFUPool): pods are being replaced or added.
	ReasonRollingOut = "RollingOut"
	// ReasonRolledOut (Progressing=False, SFUPool): every pod runs the current template.
	ReasonRolledOut = "RolledOut"
	// ReasonApplyFailed (Degraded=True, SFUPool): a child object could not be written.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonTLSSecretNotFound (Degraded=True, SFUPool): spec.turn.tlsSecretRef names no Secret.
	ReasonTLSSecretNotFound = "TLSSecretNotFound"
	// ReasonAsExpected (Degraded=False, QuotaExceeded=False): nothing is wrong.
	ReasonAsExpected = "AsExpected"

	// ReasonServing (Ready=True, CallsApp): the pool's rendered configuration
	// holds the app and the pool has ready SFU pods.
	ReasonServing = "Serving"
	// ReasonPoolNotFound (Ready=False, CallsApp): spec.poolRef names no SFUPool.
	ReasonPoolNotFound = "PoolNotFound"
	// ReasonPoolNotReady (Ready=False, CallsApp): the pool has no ready SFU pod.
	ReasonPoolNotReady = "PoolNotReady"
	// ReasonConfigPending (Ready=False, CallsApp): the pool has not rendered the app yet.
	ReasonConfigPending = "ConfigPending"
	// ReasonCredentialsFailed (Ready=False, CallsApp): the credentials Secret
	// could not be read or written.
	ReasonCredentialsFailed = "CredentialsFailed"
	// ReasonEgressCapReached (QuotaExceeded=True, CallsApp): this month's
	// egress reached spec.billing.monthlyEgressCapGB.
	ReasonEgressCapReached = "EgressCapReached"
)

// Labels the operator puts on every child object.
const (
	// LabelName is app.kubernetes.io/name: always "switchboard".
	LabelName = "app.kubernetes.io/name"
	// LabelInstance is app.kubernetes.io/instance: the SFUPool name.
	LabelInstance = "app.kubernetes.io/instance"
	// LabelComponent is app.kubernetes.io/component: "sfu" or "turn".
	LabelComponent = "app.kubernetes.io/component"
	// LabelManagedBy is app.kubernetes.io/managed-by: "switchboard-operator".
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelPool is calls.switchboard.dev/pool: the SFUPool name.
	LabelPool = "calls.switchboard.dev/pool"
	// LabelApp is calls.switchboard.dev/app on a credentials Secret: the CallsApp name.
	LabelApp = "calls.switchboard.dev/app"

	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "switchboard-operator"
)

// Annotations.
const (
	// AnnotationRestartHash on a pod template is the hash of the settings a
	// pod reads only at start; a change rolls the pods.
	AnnotationRestartHash = "calls.switchboard.dev/restart-hash"
	// AnnotationConfigVersion on the <pool>-config Secret is the rendered
	// configuration's version.
	AnnotationConfigVersion = "calls.switchboard.dev/config-version"
	// AnnotationRotateSecret on a CallsApp asks for a new app secret: set it
	// to any value not used before (a date, a counter). The operator
	// rotates once per value and records it in status.secretRotation.
	AnnotationRotateSecret = "calls.switchboard.dev/rotate-secret"
	// AnnotationRotatedFor on a credentials Secret is the rotate-secret
	// value its current app secret was generated for, so a rotation whose
	// status write failed is not repeated.
	AnnotationRotatedFor = "calls.switchboard.dev/rotated-for"
)

// Keys of the credentials Secret <app>-credentials.
const (
	// SecretKeyAppID is the Calls app ID (32 lowercase hex).
	SecretKeyAppID = "appId"
	// SecretKeyAppSecret is the app secret, the API Bearer token (64 hex, 32 random bytes).
	SecretKeyAppSecret = "appSecret"
	// SecretKeyTURNKeyID is the TURN key ID (32 lowercase hex).
	SecretKeyTURNKeyID = "turnKeyId"
	// SecretKeyTURNKeyToken is the TURN key API token, the Bearer token of the
	// TURN credentials API (64 hex).
	SecretKeyTURNKeyToken = "turnKeyToken"
	// SecretKeyTURNKeySecret is the HMAC secret TURN pods verify ephemeral
	// credentials with (64 hex).
	SecretKeyTURNKeySecret = "turnKeySecret"
)
