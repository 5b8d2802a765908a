package metering_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/metering"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/usage"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, "metering", &env) }

const (
	hubToken = "hub-token-for-tests"
	adminKey = "admin-key-for-tests"
)

// startManager runs the controllers and the hub for namespace ns until
// the returned stop is called (a manager restart is stop, then another
// startManager).
func startManager(t *testing.T, ns, addr string) (*metering.Metering, func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Cache: controllers.CacheOptions(ns),
		Metrics: metricsserver.Options{BindAddress: "0"}, Logger: log.Log.WithName(t.Name()),
		// Two managers in one process (a restart): skip the controller
		// name uniqueness check.
		Controller: crconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupWith(ctx, mgr, controllers.Options{HubURL: "http://hub.example", HubToken: hubToken}); err != nil {
		t.Fatal(err)
	}
	m, err := metering.Setup(mgr, metering.Options{Addr: addr, HubToken: hubToken, AdminKey: adminKey,
		Tick: 100 * time.Millisecond, StatusInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	t.Cleanup(stop)
	return m, stop
}

func hubURL(t *testing.T, m *metering.Metering) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr, err := m.Addr(ctx)
	if err != nil {
		t.Fatalf("hub did not start: %v", err)
	}
	return "http://" + addr.String()
}

func getApp(t *testing.T, ns string) *v1alpha1.CallsApp {
	t.Helper()
	var app v1alpha1.CallsApp
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "app"}, &app); err != nil {
		t.Fatal(err)
	}
	return &app
}

func waitEgress(t *testing.T, ns string, want int64) *v1alpha1.CallsApp {
	t.Helper()
	var app *v1alpha1.CallsApp
	testenv.Eventually(t, fmt.Sprintf("status.usage.egressBytes = %d", want), func() error {
		app = getApp(t, ns)
		if u := app.Status.Usage; u == nil || u.EgressBytes != want {
			return fmt.Errorf("usage %+v", u)
		}
		return nil
	})
	return app
}

// A pod's usage reaches CallsApp status (what `kubectl get callsapps`
// shows); a manager restart in the middle loses and doubles nothing,
// because the ledger resumes from the checkpoint persisted in status; and
// with nothing new nobody writes.
func TestUsageReachesStatusAndSurvivesAManagerRestart(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: v1alpha1.SFUPoolSpec{Replicas: ptr.To(int32(1))}}
	app := &v1alpha1.CallsApp{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: v1alpha1.CallsAppSpec{PoolRef: v1alpha1.PoolReference{Name: "demo"},
			Billing: v1alpha1.BillingSpec{FreeGB: ptr.To(int64(0))}}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t) // the hub Service's address, the same across restarts
	m1, stop1 := startManager(t, ns, addr)
	var appID string
	testenv.Eventually(t, "app ID in status", func() error {
		if appID = getApp(t, ns).Status.AppID; appID == "" {
			return fmt.Errorf("no app ID yet")
		}
		return nil
	})

	// One SFU pod, as `switchboard sfu` runs it: it reports every 200 ms.
	meter := usage.NewMeter(nil)
	meter.SetApps([]string{appID})
	a := meter.App(appID)
	rep := usage.NewReporter(usage.ReporterOptions{Meter: meter, HubURL: hubURL(t, m1), Token: hubToken,
		Pod: "demo-sfu-0", Pool: ns + "/demo", Interval: 200 * time.Millisecond})
	podCtx, stopPod := context.WithCancel(ctx)
	podDone := make(chan error, 1)
	go func() { podDone <- rep.Run(podCtx) }()
	a.AddEgressSFU(1_500_000_000)
	a.AddEgressTURN(500_000_000)
	a.AddSessions(3)
	got := waitEgress(t, ns, 2_000_000_000)
	if u := got.Status.Usage; u.SFUEgressBytes != 1_500_000_000 || u.TURNEgressBytes != 500_000_000 ||
		u.Egress != "2.00 GB" || u.Cost != "$0.10" || u.BillableGB != "2" {
		t.Fatalf("status usage %+v", u)
	}
	testenv.Eventually(t, "live sessions in status", func() error {
		if l := getApp(t, ns).Status.Live; l == nil || l.Sessions != 3 {
			return fmt.Errorf("live %+v", l)
		}
		return nil
	})
	if cp := getApp(t, ns).Status.Checkpoint; cp == nil || len(cp.Watermarks) != 1 || cp.Watermarks[0].Counted.EgressSFUBytes != 1_500_000_000 {
		t.Fatalf("checkpoint %+v", cp)
	}

	// The pod keeps counting while the manager restarts.
	a.AddEgressSFU(1000)
	time.Sleep(300 * time.Millisecond)
	stop1()
	a.AddEgressSFU(234) // counted while no manager runs
	time.Sleep(500 * time.Millisecond)
	m2, _ := startManager(t, ns, addr)
	hubURL(t, m2)
	a.AddEgressSFU(66)
	stopPod() // graceful pod stop: the final report carries the rest
	if err := <-podDone; err != nil {
		t.Fatal(err)
	}
	waitEgress(t, ns, 2_000_000_000+1000+234+66)
	testenv.Eventually(t, "no live sessions after the pod stopped", func() error {
		if l := getApp(t, ns).Status.Live; l == nil || l.Sessions != 0 {
			return fmt.Errorf("live %+v", l)
		}
		return nil
	})

	// Nothing new: no status writes for several status intervals.
	rv := getApp(t, ns).ResourceVersion
	for range 10 {
		time.Sleep(300 * time.Millisecond)
	}
	if after := getApp(t, ns).ResourceVersion; after != rv {
		t.Fatalf("callsapp written with nothing new (resourceVersion %s → %s)", rv, after)
	}
}

// The admin API changes the CallsApp spec, and the re-rendered pool config
// is served from the hub within 5 s.
func TestAdminAPIChangesTheSpecAndTheHubServesTheNewLimit(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	if err := env.Client.Create(ctx, &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: v1alpha1.SFUPoolSpec{Replicas: ptr.To(int32(1))}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &v1alpha1.CallsApp{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: v1alpha1.CallsAppSpec{PoolRef: v1alpha1.PoolReference{Name: "demo"}}}); err != nil {
		t.Fatal(err)
	}
	m, _ := startManager(t, ns, "127.0.0.1:0")
	url := hubURL(t, m)
	var appID string
	testenv.Eventually(t, "app ID in status", func() error {
		if appID = getApp(t, ns).Status.AppID; appID == "" {
			return fmt.Errorf("no app ID yet")
		}
		return nil
	})
	do := func(method, path, key, body string) (int, string) {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("X-Admin-API-Key", key)
		req.Header.Set("Authorization", "Bearer "+hubToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("POST", hub.AdminPathPrefix+appID, "wrong", `{"rate_limit":200}`); code != 401 {
		t.Fatalf("bad key: %d", code)
	}
	if code, _ := do("POST", hub.AdminPathPrefix+"ffffffffffffffffffffffffffffffff", adminKey, `{"rate_limit":200}`); code != 404 {
		t.Fatalf("unknown app: %d", code)
	}
	start := time.Now()
	if code, body := do("POST", hub.AdminPathPrefix+appID, adminKey, `{"rate_limit": 200}`); code != 200 || !strings.Contains(body, `"rate_limit":200`) {
		t.Fatalf("POST: %d %s", code, body)
	}
	if got := getApp(t, ns).Spec.RateLimit.AuthenticatedPerSecond; got == nil || *got != 200 {
		t.Fatalf("spec.rateLimit.authenticatedPerSecond = %v, want 200", got)
	}
	testenv.Eventually(t, "hub serves the new limit", func() error {
		code, body := do("GET", hub.ConfigPath+"?pool="+ns+"/demo", "", "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		if !strings.Contains(body, `"authenticatedPerSecond":200`) || !strings.Contains(body, `"hubToken":"`+hubToken+`"`) {
			return fmt.Errorf("config %s", body)
		}
		return nil
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("hub served the new limit %v after the POST, want within 5 s", took)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestHubKeysAreCreatedOnceAndKeptAcrossRestarts(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	tok1, key1, err := metering.LoadOrCreateKeys(ctx, env.Client, env.Client, ns, "switchboard-hub")
	if err != nil || len(tok1) != 64 || len(key1) != 64 || tok1 == key1 {
		t.Fatalf("first start: %q %q %v", tok1, key1, err)
	}
	tok2, key2, err := metering.LoadOrCreateKeys(ctx, env.Client, env.Client, ns, "switchboard-hub")
	if err != nil || tok2 != tok1 || key2 != key1 {
		t.Fatalf("restart: keys changed (%v)", err)
	}
}
