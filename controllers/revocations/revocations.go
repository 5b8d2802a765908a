package revocations

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
	"github.com/switchboard-rtc/switchboard/hub"
)

// FieldManager owns the revocations key of config Secrets.
const FieldManager = "switchboard-turn-revocations"

// +kubebuilder:rbac:groups=calls.switchboard.dev,resources=sfupools,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;patch

// Persister keeps the hub's revocation store and the pools' config
// Secrets in step.
type Persister struct {
	c     client.Client // lists pools, patches Secrets
	r     client.Reader // reads Secrets (uncached)
	store *hub.RevocationStore
	log   logr.Logger
	tick  time.Duration

	restored map[string]bool   // pool → its persisted list is merged into the store
	written  map[string][]byte // pool → the list last read or written
}

// New returns a persister for store; c lists SFUPools (a cached client is
// fine), r reads their config Secrets (the API reader: the manager's
// Secret cache may not hold them).
func New(c client.Client, r client.Reader, store *hub.RevocationStore, log logr.Logger) *Persister {
	return &Persister{c: c, r: r, store: store, log: log, tick: time.Second,
		restored: map[string]bool{}, written: map[string][]byte{}}
}

// Setup adds a persister of store to mgr.
func Setup(mgr ctrl.Manager, store *hub.RevocationStore) error {
	p := New(mgr.GetClient(), mgr.GetAPIReader(), store, mgr.GetLogger().WithName("turn-revocations"))
	if err := mgr.Add(p); err != nil {
		return fmt.Errorf("add turn revocations runnable: %w", err)
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader's hub takes revocations.
func (p *Persister) NeedLeaderElection() bool { return true }

// Start syncs at once, then on every change of the store and every second
// (restores of pools that appear later, expiries) until ctx ends, and once
// more on the way out.
func (p *Persister) Start(ctx context.Context) error {
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for {
		if err := p.Sync(ctx); err != nil && ctx.Err() == nil {
			p.log.Error(err, "sync turn revocations")
		}
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.Sync(sctx); err != nil {
				p.log.Error(err, "final sync of turn revocations")
			}
			return nil
		case <-t.C:
		case <-p.store.Changed():
		}
	}
}

// Sync restores the lists of pools not restored yet, prunes expired
// entries and writes every restored pool whose list changed.
func (p *Persister) Sync(ctx context.Context) error {
	var pools v1alpha1.SFUPoolList
	if err := p.c.List(ctx, &pools); err != nil {
		return fmt.Errorf("list sfupools: %w", err)
	}
	var errs []error
	live := map[string]bool{}
	for i := range pools.Items {
		pool := &pools.Items[i]
		if !pool.DeletionTimestamp.IsZero() {
			continue
		}
		key := pool.Namespace + "/" + pool.Name
		live[key] = true
		if !p.restored[key] {
			if err := p.restore(ctx, pool, key); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for key := range p.restored {
		if !live[key] {
			delete(p.restored, key)
			delete(p.written, key)
			p.store.Remove(key)
		}
	}
	p.store.Prune()
	for i := range pools.Items {
		pool := &pools.Items[i]
		key := pool.Namespace + "/" + pool.Name
		if !p.restored[key] {
			continue // never overwrite a list not read yet
		}
		snap := p.store.Snapshot(key)
		if sameList(snap, p.written[key]) {
			continue
		}
		if err := p.write(ctx, pool, snap); err != nil {
			errs = append(errs, err)
			continue
		}
		p.written[key] = snap
	}
	return errors.Join(errs...)
}

// restore merges the pool's persisted list into the store. A Secret not
// created yet holds nothing: the pool counts as restored.
func (p *Persister) restore(ctx context.Context, pool *v1alpha1.SFUPool, key string) error {
	var s corev1.Secret
	err := p.r.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: render.ConfigSecretName(pool)}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return nil // retried next time: the Secret is written before pods start
	case err != nil:
		return fmt.Errorf("read config secret of %s: %w", key, err)
	}
	data := s.Data[hub.RevocationsFileName]
	if len(data) > 0 {
		l, err := hub.ParseRevocationList(data)
		if err != nil {
			// A broken key must not block revocations for ever: it is
			// overwritten by the next change.
			p.log.Error(err, "persisted turn revocations unreadable; starting empty", "sfupool", key)
		} else {
			p.store.Merge(key, l.Revocations)
			p.log.Info("turn revocations restored", "sfupool", key, "entries", len(l.Revocations))
		}
	}
	p.restored[key] = true
	p.written[key] = data
	return nil
}

func (p *Persister) write(ctx context.Context, pool *v1alpha1.SFUPool, list []byte) error {
	patch, err := json.Marshal(map[string]any{"data": map[string][]byte{hub.RevocationsFileName: list}})
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: pool.Namespace, Name: render.ConfigSecretName(pool)}}
	if err := p.c.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("write turn revocations of %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	p.log.V(1).Info("turn revocations persisted", "sfupool", pool.Namespace+"/"+pool.Name, "bytes", len(list))
	return nil
}

// sameList compares two encoded lists; an empty list equals no key.
func sameList(a, b []byte) bool {
	return bytes.Equal(normal(a), normal(b))
}

var emptyList = []byte(`{"revocations":[]}`)

func normal(b []byte) []byte {
	if len(b) == 0 {
		return emptyList
	}
	return b
}
