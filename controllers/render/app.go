package render

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// App renders one CallsApp as the pods see it. The app secret and TURN key
// token appear only as SHA-256; the TURN HMAC secret appears as is (TURN pods
// need it to verify credentials). Spec defaults apply even when app did not
// come through the API server. The TURN key is rendered when the app has
// TURN enabled and creds hold a complete key.
func App(app *v1alpha1.CallsApp, creds AppCredentials) config.App {
	a := app.DeepCopy()
	a.Default()
	s := a.Spec
	out := config.App{
		ID:           creds.AppID,
		Name:         namespacedName(&a.ObjectMeta),
		SecretSHA256: SHA256Hex(creds.AppSecret),
		RateLimit: config.RateLimit{
			AuthenticatedPerSecond:   int(ptr.Deref(s.RateLimit.AuthenticatedPerSecond, config.DefaultAuthenticatedPerSecond)),
			UnauthenticatedPerSecond: int(ptr.Deref(s.RateLimit.UnauthenticatedPerSecond, config.DefaultUnauthenticatedPerSecond)),
		},
		Sessions: config.SessionLimit{
			CallsPerSecond:         int(ptr.Deref(s.Sessions.CallsPerSecond, config.DefaultSessionCallsPerSecond)),
			MaxTracksPerCall:       int(ptr.Deref(s.Sessions.MaxTracksPerCall, config.DefaultMaxTracksPerCall)),
			TrackTimeoutSeconds:    seconds(s.Sessions.TrackTimeout, config.DefaultTrackTimeout),
			ReconnectWindowSeconds: seconds(s.Sessions.ReconnectWindow, config.DefaultReconnectWindow),
			ConnectWaitSeconds:     seconds(s.Sessions.ConnectWait, config.DefaultConnectWait),
			MaxSessions:            int(s.Sessions.MaxSessions),
		},
		QuotaExceeded: meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.QuotaExceededCondition),
	}
	if s.TURNEnabled() && creds.HasTURNKey() {
		out.TURNKey = &config.TURNKey{
			ID:          creds.TURNKeyID,
			TokenSHA256: SHA256Hex(creds.TURNKeyToken),
			HMACSecret:  creds.TURNKeySecret,
		}
	}
	return out
}

// SHA256Hex is the lowercase hex SHA-256 of s, the form in which secrets
// appear in the pod configuration.
func SHA256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// seconds rounds a duration up to whole seconds, at least 1.
func seconds(d *metav1.Duration, def time.Duration) int {
	v := def
	if d != nil {
		v = d.Duration
	}
	s := int((v + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// namespacedName is "namespace/name"; an object with no namespace (read from
// a file) is in "default", as kubectl would put it.
func namespacedName(m *metav1.ObjectMeta) string {
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + m.Name
}
