package render

import (
	"bytes"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

var testCreds = AppCredentials{
	AppID:         "0123456789abcdef0123456789abcdef",
	AppSecret:     strings.Repeat("ab", 32),
	TURNKeyID:     "fedcba9876543210fedcba9876543210",
	TURNKeyToken:  strings.Repeat("cd", 32),
	TURNKeySecret: strings.Repeat("ef", 32),
}

func readSampleApp(t *testing.T) *v1alpha1.CallsApp {
	t.Helper()
	b, err := os.ReadFile("../../config/samples/calls_v1alpha1_callsapp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var app v1alpha1.CallsApp
	if err := yaml.UnmarshalStrict(b, &app); err != nil {
		t.Fatal(err)
	}
	return &app
}

func TestAppFromSampleFileGetsTheDocumentedDefaults(t *testing.T) {
	app := readSampleApp(t)
	got := App(app, testCreds)
	want := config.App{
		ID:           testCreds.AppID,
		Name:         "default/demo-app",
		SecretSHA256: SHA256Hex(testCreds.AppSecret),
		RateLimit:    config.RateLimit{AuthenticatedPerSecond: 10000, UnauthenticatedPerSecond: 10},
		Sessions: config.SessionLimit{
			CallsPerSecond: 50, MaxTracksPerCall: 64,
			TrackTimeoutSeconds: 30, ReconnectWindowSeconds: 30, ConnectWaitSeconds: 5,
		},
		TURNKey: &config.TURNKey{
			ID:          testCreds.TURNKeyID,
			TokenSHA256: SHA256Hex(testCreds.TURNKeyToken),
			HMACSecret:  testCreds.TURNKeySecret,
		},
	}
	assertJSONEqual(t, got, want)
	// The rendered app passes the pods' own validation.
	pod := config.Pod{Apps: []config.App{got}}
	pod.Default()
	if err := pod.Validate(); err != nil {
		t.Fatalf("rendered app fails pod validation: %v", err)
	}
	// The sample object itself is untouched.
	if app.Spec.RateLimit.AuthenticatedPerSecond != nil {
		t.Fatal("App defaulted its argument in place")
	}
}

func TestAppNeverCarriesTheAppSecretOrTURNToken(t *testing.T) {
	b := mustJSON(t, App(readSampleApp(t), testCreds))
	for _, secret := range []string{testCreds.AppSecret, testCreds.TURNKeyToken} {
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("rendered app contains a secret in clear: %s", b)
		}
	}
}

func TestAppHonoursSpecLimitsAndTURNSwitch(t *testing.T) {
	app := readSampleApp(t)
	app.Namespace = "team"
	off := false
	auth, unauth, calls := int32(200), int32(0), int32(5)
	app.Spec.RateLimit.AuthenticatedPerSecond = &auth
	app.Spec.RateLimit.UnauthenticatedPerSecond = &unauth
	app.Spec.Sessions.CallsPerSecond = &calls
	app.Spec.Sessions.TrackTimeout = &metav1.Duration{Duration: 1500_000_000} // 1.5s rounds up to 2
	app.Spec.Sessions.MaxSessions = 7
	app.Spec.TURN.Enabled = &off
	app.Status.Conditions = []metav1.Condition{{Type: v1alpha1.QuotaExceededCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEgressCapReached}}

	got := App(app, testCreds)
	if got.Name != "team/demo-app" {
		t.Errorf("name %q", got.Name)
	}
	if got.RateLimit != (config.RateLimit{AuthenticatedPerSecond: 200, UnauthenticatedPerSecond: 0}) {
		t.Errorf("rate limit %+v", got.RateLimit)
	}
	if got.Sessions.CallsPerSecond != 5 || got.Sessions.TrackTimeoutSeconds != 2 || got.Sessions.MaxSessions != 7 {
		t.Errorf("sessions %+v", got.Sessions)
	}
	if got.TURNKey != nil {
		t.Errorf("TURN key rendered for an app with TURN off: %+v", got.TURNKey)
	}
	if !got.QuotaExceeded {
		t.Error("QuotaExceeded condition not carried into the pod config")
	}
}

func TestAppWithoutATURNKeyYetRendersNoKey(t *testing.T) {
	creds := testCreds
	creds.TURNKeySecret = ""
	if got := App(readSampleApp(t), creds); got.TURNKey != nil {
		t.Fatalf("incomplete TURN key rendered: %+v", got.TURNKey)
	}
}
