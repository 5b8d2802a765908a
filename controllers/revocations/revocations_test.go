package revocations_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
	"github.com/switchboard-rtc/switchboard/controllers/revocations"
	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, "revocations", &env) }

func persisted(t *testing.T, ns string) (*corev1.Secret, hub.RevocationList) {
	t.Helper()
	var s corev1.Secret
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "demo-config"}, &s); err != nil {
		t.Fatal(err)
	}
	var l hub.RevocationList
	if b := s.Data[hub.RevocationsFileName]; len(b) > 0 {
		var err error
		if l, err = hub.ParseRevocationList(b); err != nil {
			t.Fatal(err)
		}
	}
	return &s, l
}

// The hub's revocations of a pool land in its config Secret, stay there
// when the operator re-renders the configuration, come back into a new
// hub after a manager restart, and leave the Secret once they expire.
func TestRevocationsSurviveAManagerRestartInTheConfigSecret(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	env.StartManager(t, ns) // the operator renders and re-applies the config Secret
	pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: v1alpha1.SFUPoolSpec{Replicas: ptr.To(int32(1))}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	key := ns + "/demo"
	testenv.Eventually(t, "config secret", func() error {
		return env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "demo-config"}, &corev1.Secret{})
	})

	now := time.Now()
	long := hub.Revocation{Username: fmt.Sprintf("%d:k1:long", now.Add(time.Hour).Unix()), Expiry: now.Add(time.Hour).Unix()}
	short := hub.Revocation{Username: fmt.Sprintf("%d:k1:short", now.Add(90*time.Second).Unix()), Expiry: now.Add(90 * time.Second).Unix()}
	store1 := hub.NewRevocationStore(nil)
	p1 := revocations.New(env.Client, env.Client, store1, logr.Discard())
	if err := p1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, l := persisted(t, ns); len(l.Revocations) != 0 {
		t.Fatalf("persisted %+v before any revocation", l)
	}
	for _, r := range []hub.Revocation{long, short} {
		if _, err := store1.Add(key, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, l := persisted(t, ns)
	if len(l.Revocations) != 2 {
		t.Fatalf("persisted %+v, want both revocations", l)
	}
	if _, err := config.Parse(s.Data[config.FileName]); err != nil {
		t.Fatalf("the rendered configuration was damaged: %v", err)
	}
	oldConfig := string(s.Data[config.FileName])

	// The operator re-renders (a realm change): its apply keeps our key.
	env.Update(t, pool, func() { pool.Spec.TURN.Realm = "elsewhere" })
	testenv.Eventually(t, "re-rendered config", func() error {
		if s, _ := persisted(t, ns); string(s.Data[config.FileName]) == oldConfig {
			return errors.New("config not re-rendered yet")
		}
		return nil
	})
	if _, l := persisted(t, ns); len(l.Revocations) != 2 {
		t.Fatalf("after the operator re-applied the Secret: %+v", l)
	}

	// A restarted manager starts with an empty store and restores it.
	store2 := hub.NewRevocationStore(nil)
	if err := revocations.New(env.Client, env.Client, store2, logr.Discard()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := store2.List(key); len(got) != 2 || got[0] != short || got[1] != long { // by username
		t.Fatalf("restored %+v, want %+v and %+v", got, long, short)
	}

	// Two minutes later (another restart) the short one has expired: it
	// is not restored, and the Secret is rewritten without it.
	later := func() time.Time { return now.Add(2 * time.Minute) }
	store3 := hub.NewRevocationStore(later)
	if err := revocations.New(env.Client, env.Client, store3, logr.Discard()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := store3.List(key); len(got) != 1 || got[0] != long {
		t.Fatalf("restored %+v after the expiry, want only %+v", got, long)
	}
	if _, l := persisted(t, ns); len(l.Revocations) != 1 || l.Revocations[0] != long {
		t.Fatalf("persisted %+v after the expiry, want only %+v", l, long)
	}
}
