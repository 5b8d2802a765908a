package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// revHub is a hub serving pools default/a and default/b with revocations
// on clock.
func revHub(t *testing.T, clock Clock) (*ConfigStore, string) {
	t.Helper()
	cs := NewConfigStoreWith(NewRevocationStore(clock))
	for _, p := range []string{"default/a", "default/b"} {
		if err := cs.Set(p, &config.Pod{Version: "v1", Pool: p}, 1); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer((&Server{Configs: cs, Token: token}).Handler())
	t.Cleanup(srv.Close)
	return cs, srv.URL
}

func postRevocation(t *testing.T, base, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+RevocationsPath, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

func getRevocations(t *testing.T, base, pool, etag string, wait int) (int, string, RevocationList) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?pool=%s&wait=%d", base, RevocationsPath, pool, wait), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var l RevocationList
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode, res.Header.Get("ETag"), l
}

func revBody(pool, user string, exp time.Time) string {
	return fmt.Sprintf(`{"pool":%q,"username":%q,"expiry":%d}`, pool, user, exp.Unix())
}

// A revocation posted for pool a is served to pool a's pods at once (a
// waiting long-poll returns it) and never to pool b's.
func TestRevocationIsServedToItsPoolsPods(t *testing.T) {
	_, base := revHub(t, nil)
	code, etag, l := getRevocations(t, base, "default/a", "", 0)
	if code != 200 || len(l.Revocations) != 0 || etag == "" {
		t.Fatalf("empty pool: %d %q %+v", code, etag, l)
	}
	_, etagB, _ := getRevocations(t, base, "default/b", "", 0)

	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	user := fmt.Sprintf("%d:k1:0123456789abcdef0123456789abcdef", exp.Unix())
	type result struct {
		code int
		l    RevocationList
		took time.Duration
	}
	waiting := make(chan result, 1)
	go func() {
		start := time.Now()
		code, _, l := getRevocations(t, base, "default/a", etag, 20)
		waiting <- result{code, l, time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond) // the long-poll is parked
	posted := time.Now()
	if code, body := postRevocation(t, base, token, revBody("default/a", user, exp)); code != http.StatusNoContent {
		t.Fatalf("POST answered %d %s", code, body)
	}
	r := <-waiting
	if r.code != 200 || len(r.l.Revocations) != 1 || r.l.Revocations[0] != (Revocation{user, exp.Unix()}) {
		t.Fatalf("long-poll got %d %+v", r.code, r.l)
	}
	if d := time.Since(posted); d > 2*time.Second {
		t.Fatalf("long-poll returned %s after the POST", d)
	}
	t.Logf("long-poll woke %s after the POST", time.Since(posted))

	// Pool b sees nothing new.
	if code, _, _ := getRevocations(t, base, "default/b", etagB, 0); code != http.StatusNotModified {
		t.Fatalf("pool b: %d, want 304", code)
	}
	// Posting the same revocation again is accepted and changes nothing.
	_, etag2, _ := getRevocations(t, base, "default/a", "", 0)
	if code, _ := postRevocation(t, base, token, revBody("default/a", user, exp)); code != http.StatusNoContent {
		t.Fatalf("repeat POST: %d", code)
	}
	if code, _, _ := getRevocations(t, base, "default/a", etag2, 0); code != http.StatusNotModified {
		t.Fatalf("repeat changed the list: %d", code)
	}
}

// The hub refuses revocations it must not keep: wrong token, unknown pool,
// an expiry beyond 48 h, a malformed username; an expired one is a no-op.
func TestRevocationsTheHubRefuses(t *testing.T) {
	cs, base := revHub(t, nil)
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name, tok, body string
		want            int
	}{
		{"wrong token", "nope", revBody("default/a", "u1", exp), http.StatusUnauthorized},
		{"unknown pool", token, revBody("default/zz", "u1", exp), http.StatusNotFound},
		{"expiry beyond 48 h", token, revBody("default/a", "u1", time.Now().Add(49*time.Hour)), http.StatusBadRequest},
		{"username with a space", token, revBody("default/a", "u 1", exp), http.StatusBadRequest},
		{"username too long", token, revBody("default/a", strings.Repeat("x", MaxUsernameBytes+1), exp), http.StatusBadRequest},
		{"not JSON", token, "{", http.StatusBadRequest},
		{"already expired", token, revBody("default/a", "u1", time.Now().Add(-time.Second)), http.StatusNoContent},
	} {
		if code, body := postRevocation(t, base, tc.tok, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if pools := cs.Revocations().Pools(); len(pools) != 0 {
		if l := cs.Revocations().List("default/a"); len(l) != 0 {
			t.Fatalf("refused revocations were kept: %+v", l)
		}
	}
	if code, _, _ := getRevocations(t, base, "default/zz", "", 0); code != http.StatusNotFound {
		t.Fatalf("unknown pool GET: %d", code)
	}
}

// An entry lives until the credential's expiry: then it leaves the served
// list (the ETag changes, a waiting pod is woken) and the persister is
// told.
func TestRevocationsArePrunedAtExpiry(t *testing.T) {
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	cs, base := revHub(t, clock.Now)
	store := cs.Revocations()
	short := Revocation{"1800000060:k1:aa", 1_800_000_060}
	long := Revocation{"1800003600:k1:bb", 1_800_003_600}
	for _, r := range []Revocation{short, long} {
		if changed, err := store.Add("default/a", r); err != nil || !changed {
			t.Fatalf("add %v: %v %v", r, changed, err)
		}
	}
	<-store.Changed()
	_, etag, l := getRevocations(t, base, "default/a", "", 0)
	if len(l.Revocations) != 2 {
		t.Fatalf("served %+v", l)
	}
	clock.Advance(61 * time.Second)
	if !store.Prune() {
		t.Fatal("Prune dropped nothing after the first expiry")
	}
	select {
	case <-store.Changed():
	default:
		t.Fatal("the persister was not told about the pruned entry")
	}
	code, etag2, l := getRevocations(t, base, "default/a", etag, 0)
	if code != 200 || len(l.Revocations) != 1 || l.Revocations[0] != long || etag2 == etag {
		t.Fatalf("after expiry: %d %q %+v", code, etag2, l)
	}
	// The last one expires without a Prune call: serving prunes too.
	clock.Advance(time.Hour)
	if code, _, l := getRevocations(t, base, "default/a", etag2, 0); code != 200 || len(l.Revocations) != 0 {
		t.Fatalf("after the last expiry: %d %+v", code, l)
	}
	if got := store.List("default/a"); len(got) != 0 {
		t.Fatalf("store still lists %+v", got)
	}
}

// A restarted manager restores each pool's list from the persisted
// snapshot: the same entries are served, with the same ETag (pods do not
// even see a change), and entries that expired meanwhile are dropped.
func TestRevocationsAreRestoredAfterRestart(t *testing.T) {
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	before := NewRevocationStore(clock.Now)
	for i, exp := range []int64{1_800_000_030, 1_800_007_200, 1_800_086_400} {
		if _, err := before.Add("default/a", Revocation{fmt.Sprintf("%d:k%d:r", exp, i), exp}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := before.Add("default/b", Revocation{"1800007200:kb:r", 1_800_007_200}); err != nil {
		t.Fatal(err)
	}
	persisted := map[string][]byte{}
	for _, p := range before.Pools() {
		persisted[p] = before.Snapshot(p)
	}
	_, etagBefore, _ := before.get("default/a")

	clock.Advance(time.Minute) // the restart takes a minute; the first entry expires
	after := NewRevocationStore(clock.Now)
	for p, b := range persisted {
		l, err := ParseRevocationList(b)
		if err != nil {
			t.Fatal(err)
		}
		after.Merge(p, l.Revocations)
	}
	got := after.List("default/a")
	want := []Revocation{{"1800007200:k1:r", 1_800_007_200}, {"1800086400:k2:r", 1_800_086_400}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	if got := after.List("default/b"); len(got) != 1 {
		t.Fatalf("pool b restored %+v", got)
	}
	// Same content as before minus the expired entry: the ETag is that
	// of the content, so a pod that already had it sees no change.
	before.Prune()
	_, e1, _ := before.get("default/a")
	_, e2, _ := after.get("default/a")
	if e1 != e2 || e1 == etagBefore {
		t.Fatalf("ETags: before restart %q (pruned %q), after %q", etagBefore, e1, e2)
	}
}

// A pool's list is bounded; when full, the TURN key holding the most
// entries loses its soonest-expiring one, so one app revoking in bulk does
// not push out another app's revocation.
func TestRevocationsAreBoundedPerPool(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewRevocationStore(func() time.Time { return now })
	other := Revocation{"1800000100:other:x", 1_800_000_100}
	if _, err := s.Add("p/a", other); err != nil {
		t.Fatal(err)
	}
	for i := range MaxRevocationsPerPool + 10 {
		exp := int64(1_800_000_200 + i)
		if _, err := s.Add("p/a", Revocation{fmt.Sprintf("%d:bulk:%d", exp, i), exp}); err != nil {
			t.Fatal(err)
		}
	}
	l := s.List("p/a")
	if len(l) != MaxRevocationsPerPool {
		t.Fatalf("list has %d entries, want %d", len(l), MaxRevocationsPerPool)
	}
	has := map[string]bool{}
	for _, r := range l {
		has[r.Username] = true
	}
	if !has[other.Username] {
		t.Fatal("the other key's revocation was evicted")
	}
	if has["1800000200:bulk:0"] || !has[fmt.Sprintf("%d:bulk:%d", 1_800_000_200+MaxRevocationsPerPool+9, MaxRevocationsPerPool+9)] {
		t.Fatal("eviction did not drop the bulk key's soonest-expiring entries")
	}
}

// The pod side end to end: a forwarder whose hub is down returns within
// its wait and keeps the revocation; once the hub is up it delivers it,
// a follower on another pod applies it exactly once, keeps it while the
// hub is down again, and a follower that starts with the hub down finds it
// in the mounted file.
func TestRevocationForwardedWhenTheHubReturnsAndFollowedAcrossOutages(t *testing.T) {
	cs := NewConfigStore()
	if err := cs.Set("default/a", &config.Pod{Version: "v1", Pool: "default/a"}, 1); err != nil {
		t.Fatal(err)
	}
	sw := &switchable{}
	srv := httptest.NewServer(sw)
	defer srv.Close()
	target := func() (string, string, string) { return srv.URL, token, "default/a" }

	fwd := NewRevocationForwarder(ForwarderOptions{Target: target, Wait: 300 * time.Millisecond, Retry: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fwd.Run(ctx)
	exp := time.Now().Add(time.Hour)
	user := fmt.Sprintf("%d:k1:feed", exp.Unix())
	start := time.Now()
	if err := fwd.Forward(user, exp); err == nil {
		t.Fatal("Forward succeeded with the hub down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Forward blocked %s with the hub down", d)
	}
	if fwd.Pending() != 1 {
		t.Fatalf("pending %d, want 1", fwd.Pending())
	}

	var applied atomic.Int32
	fol := NewRevocationFollower(FollowerOptions{HubURL: srv.URL, Token: token, Pool: "default/a", Wait: 2 * time.Second,
		Retry: 100 * time.Millisecond, OnRevocation: func(r Revocation) {
			if r.Username == user {
				applied.Add(1)
			}
		}})
	go fol.Run(ctx)

	sw.set((&Server{Configs: cs, Token: token}).Handler()) // the hub comes up
	waitFor(t, 10*time.Second, func() bool { return fwd.Pending() == 0 && applied.Load() == 1 }, "forwarded and applied")
	sw.set(nil) // down again
	time.Sleep(500 * time.Millisecond)
	if applied.Load() != 1 || fol.Seen() != 1 {
		t.Fatalf("after the hub went away: applied %d times, seen %d", applied.Load(), fol.Seen())
	}

	// A pod starting now, hub down, reads the persisted list from its mount.
	file := filepath.Join(t.TempDir(), RevocationsFileName)
	if err := os.WriteFile(file, cs.Revocations().Snapshot("default/a"), 0o600); err != nil {
		t.Fatal(err)
	}
	var fromFile atomic.Int32
	fol2 := NewRevocationFollower(FollowerOptions{HubURL: srv.URL, Token: token, Pool: "default/a", File: file,
		Retry: 100 * time.Millisecond, OnRevocation: func(r Revocation) {
			if r.Username == user {
				fromFile.Add(1)
			}
		}})
	go fol2.Run(ctx)
	waitFor(t, 5*time.Second, func() bool { return fromFile.Load() == 1 }, "revocation read from the file")
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
