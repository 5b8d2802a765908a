package sfupool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
)

func newApp(ns, name, pool string) *v1alpha1.CallsApp {
	return &v1alpha1.CallsApp{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.CallsAppSpec{PoolRef: v1alpha1.PoolReference{Name: pool}},
	}
}

func TestInvalidSpecsAreRejectedWithTheFieldNamed(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	pools := []struct {
		field  string
		mutate func(*v1alpha1.SFUPool)
	}{
		{"spec.replicas and spec.autoscaling", func(p *v1alpha1.SFUPool) {
			p.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 1, MaxReplicas: 3}
		}},
		{"spec.autoscaling.minReplicas", func(p *v1alpha1.SFUPool) {
			p.Spec.Replicas = nil
			p.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 5, MaxReplicas: 3}
		}},
		{"spec.autoscaling.mode Load needs", func(p *v1alpha1.SFUPool) {
			p.Spec.Replicas = nil
			p.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Mode: v1alpha1.AutoscalingLoad, MinReplicas: 1, MaxReplicas: 3}
		}},
		{"spec.autoscaling.targetSessionsPerPod, targetEgressBytesPerSecondPerPod and scaleDownStabilization apply only to mode Load", func(p *v1alpha1.SFUPool) {
			p.Spec.Replicas = nil
			p.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 1, MaxReplicas: 3, TargetSessionsPerPod: ptr.To(int64(100))}
		}},
		{"spec.autoscaling.mode", func(p *v1alpha1.SFUPool) {
			p.Spec.Replicas = nil
			p.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Mode: "Memory", MinReplicas: 1, MaxReplicas: 3}
		}},
		{"spec.media.exposure", func(p *v1alpha1.SFUPool) { p.Spec.Media.Exposure = "Tunnel" }},
		{"spec.media.udpPort", func(p *v1alpha1.SFUPool) { p.Spec.Media.UDPPort = 80 }},
		{"spec.turn.tlsSecretRef", func(p *v1alpha1.SFUPool) {
			p.Spec.TURN.Listeners = []v1alpha1.TURNListener{{Name: "tls", Protocol: v1alpha1.TURNProtocolTLS, Port: 5349}}
		}},
		{"spec.turn.listeners", func(p *v1alpha1.SFUPool) {
			p.Spec.TURN.Listeners = []v1alpha1.TURNListener{
				{Name: "a", Protocol: v1alpha1.TURNProtocolUDP, Port: 3478},
				{Name: "b", Protocol: v1alpha1.TURNProtocolUDP, Port: 3479},
			}
		}},
		{"spec.turn.enabled", func(p *v1alpha1.SFUPool) {
			p.Spec.Media.Exposure = v1alpha1.ExposureTURNIngress
			p.Spec.TURN.Enabled = ptr.To(false)
		}},
		{"spec.trustedProxies", func(p *v1alpha1.SFUPool) { p.Spec.TrustedProxies = []string{"10.0.0.1/33"} }},
		{"spec.drainTimeout", func(p *v1alpha1.SFUPool) { p.Spec.DrainTimeout = &metav1.Duration{Duration: 48 * 3600e9} }},
		{"spec.api.url", func(p *v1alpha1.SFUPool) { p.Spec.API.URL = "ftp://rtc.example.com" }},
		{"spec.turn.allowedPeerCIDRs", func(p *v1alpha1.SFUPool) { p.Spec.TURN.AllowedPeerCIDRs = []string{"everything"} }},
		{"metadata.name", func(p *v1alpha1.SFUPool) { p.Name = strings.Repeat("p", 41) }},
	}
	for i, tc := range pools {
		t.Run("SFUPool "+tc.field, func(t *testing.T) {
			p := newPool(ns)
			p.Name = fmt.Sprintf("bad-%d", i)
			tc.mutate(p)
			assertRejected(t, env.Client.Create(ctx, p), tc.field)
		})
	}
	apps := []struct {
		field  string
		mutate func(*v1alpha1.CallsApp)
	}{
		{"spec.poolRef.name", func(a *v1alpha1.CallsApp) { a.Spec.PoolRef.Name = "" }},
		{"spec.rateLimit.authenticatedPerSecond", func(a *v1alpha1.CallsApp) { a.Spec.RateLimit.AuthenticatedPerSecond = ptr.To(int32(0)) }},
		{"spec.billing.pricePerGB", func(a *v1alpha1.CallsApp) { a.Spec.Billing.PricePerGB = "five cents" }},
		{"spec.sessions.trackTimeout", func(a *v1alpha1.CallsApp) { a.Spec.Sessions.TrackTimeout = &metav1.Duration{} }},
		{"spec.billing.monthlyEgressCapGB", func(a *v1alpha1.CallsApp) { a.Spec.Billing.MonthlyEgressCapGB = ptr.To(int64(0)) }},
		{"metadata.name", func(a *v1alpha1.CallsApp) { a.Name = strings.Repeat("a", 64) }},
	}
	for i, tc := range apps {
		t.Run("CallsApp "+tc.field, func(t *testing.T) {
			a := newApp(ns, fmt.Sprintf("bad-%d", i), "demo")
			tc.mutate(a)
			assertRejected(t, env.Client.Create(ctx, a), tc.field)
		})
	}
}

func assertRejected(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a rejection naming %s", field)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error %v is not a validation error", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("error does not name %s: %v", field, err)
	}
}

// TestSchemaDefaultsMatchTheGoDefaults creates the minimal samples through
// the API server and compares the defaulted specs with what Default()
// gives the same manifests read from files, as dev mode does.
func TestSchemaDefaultsMatchTheGoDefaults(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string, into client.Object) {
		b, err := os.ReadFile(root + "/config/samples/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Fatal(err)
		}
		into.SetNamespace(ns)
	}
	var pool v1alpha1.SFUPool
	read("calls_v1alpha1_sfupool.yaml", &pool)
	var app v1alpha1.CallsApp
	read("calls_v1alpha1_callsapp.yaml", &app)

	fromFilePool, fromFileApp := pool.DeepCopy(), app.DeepCopy()
	fromFilePool.Default()
	fromFileApp.Default()
	if err := env.Client.Create(ctx, &pool); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &app); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(pool.Spec, fromFilePool.Spec) {
		t.Errorf("pool defaults differ:\nAPI server: %s\nDefault():  %s", asJSON(pool.Spec), asJSON(fromFilePool.Spec))
	}
	if !equality.Semantic.DeepEqual(app.Spec, fromFileApp.Spec) {
		t.Errorf("app defaults differ:\nAPI server: %s\nDefault():  %s", asJSON(app.Spec), asJSON(fromFileApp.Spec))
	}
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestKubectlGetShowsThePrinterColumns lists both kinds as a server-side
// Table, which is what kubectl get prints, and checks the columns and that
// they show the status fields.
func TestKubectlGetShowsThePrinterColumns(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	env.StartManager(t, ns)
	pool := newPool(ns)
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	app := newApp(ns, "demo-app", "demo")
	if err := env.Client.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "app has its ID", func() error {
		if err := get(ctx, ns, "demo-app", app); err != nil {
			return err
		}
		if app.Status.AppID == "" {
			return fmt.Errorf("no app ID yet")
		}
		return nil
	})
	// What the metering side will write (a later issue): usage, live load
	// and rate counters.
	patch := client.MergeFrom(app.DeepCopy())
	app.Status.Live = &v1alpha1.LiveStatus{Sessions: 4, Tracks: 9}
	app.Status.Usage = &v1alpha1.UsageStatus{Month: "2026-11", EgressBytes: 1_234_000_000, Egress: "1.23 GB", Cost: "$0.00"}
	app.Status.Rate = &v1alpha1.RateStatus{LimitPerSecond: 10000, Throttled: v1alpha1.ThrottledCounts{App: 5, Session: 2, Total: 7}}
	if err := env.Client.Status().Patch(ctx, app, patch); err != nil {
		t.Fatal(err)
	}

	table := func(resource string) *metav1.Table {
		t.Helper()
		rc, err := rest.HTTPClientFor(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		req, err := newTableRequest(ctx, strings.TrimSuffix(env.Config.Host, "/")+"/apis/calls.switchboard.dev/v1alpha1/namespaces/"+ns+"/"+resource)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var tbl metav1.Table
		if err := json.Unmarshal(body, &tbl); err != nil {
			t.Fatalf("%s %s: %v: %.300s", env.Config.Host, resource, err, body)
		}
		if tbl.Kind != "Table" {
			t.Fatalf("%s: got kind %q, not a Table", resource, tbl.Kind)
		}
		return &tbl
	}
	columns := func(tbl *metav1.Table) []string {
		var c []string
		for _, d := range tbl.ColumnDefinitions {
			c = append(c, strings.ToUpper(d.Name))
		}
		return c
	}

	// kubectl get callsapps --field-selector spec.poolRef.name=demo
	var byPool v1alpha1.CallsAppList
	if err := env.Client.List(ctx, &byPool, client.InNamespace(ns), client.MatchingFields{"spec.poolRef.name": "demo"}); err != nil || len(byPool.Items) != 1 {
		t.Fatalf("field selector on spec.poolRef.name: %d items, %v", len(byPool.Items), err)
	}
	if err := env.Client.List(ctx, &byPool, client.InNamespace(ns), client.MatchingFields{"spec.poolRef.name": "other"}); err != nil || len(byPool.Items) != 0 {
		t.Fatalf("field selector on another pool: %d items, %v", len(byPool.Items), err)
	}

	var apps *metav1.Table
	testenv.Eventually(t, "callsapp row", func() error {
		apps = table("callsapps")
		if len(apps.Rows) != 1 {
			return fmt.Errorf("%d rows", len(apps.Rows))
		}
		if apps.Rows[0].Cells[2] == nil || apps.Rows[0].Cells[2] == "" {
			return fmt.Errorf("READY empty: %v", apps.Rows[0].Cells)
		}
		return nil
	})
	if want := []string{"NAME", "POOL", "READY", "SESSIONS", "EGRESS", "COST", "THROTTLED", "AGE"}; !slices.Equal(columns(apps), want) {
		t.Errorf("callsapps columns %v, want %v", columns(apps), want)
	}
	cells := fmt.Sprint(apps.Rows[0].Cells[:7])
	if want := "[demo-app demo False 4 1.23 GB $0.00 7]"; cells != want {
		t.Errorf("callsapps row %s, want %s", cells, want)
	}

	var pools *metav1.Table
	testenv.Eventually(t, "sfupool row", func() error {
		pools = table("sfupools")
		if len(pools.Rows) != 1 || pools.Rows[0].Cells[4] == "" || pools.Rows[0].Cells[4] == nil {
			return fmt.Errorf("rows %v", pools.Rows)
		}
		return nil
	})
	if want := []string{"NAME", "READY", "DESIRED", "SESSIONS", "ENDPOINT", "AGE"}; !slices.Equal(columns(pools), want) {
		t.Errorf("sfupools columns %v, want %v", columns(pools), want)
	}
	cells = fmt.Sprint(pools.Rows[0].Cells[:5])
	if want := fmt.Sprintf("[demo 0 2 0 http://demo-api.%s.svc]", ns); cells != want {
		t.Errorf("sfupools row %s, want %s", cells, want)
	}
}

// newTableRequest asks for a list as a server-side Table, as kubectl get does.
func newTableRequest(ctx context.Context, url string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	return req, nil
}
