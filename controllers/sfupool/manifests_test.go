package sfupool_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
)

// TestShippedManifestsInstallOnTheAPIServer builds config/default and
// config/samples with kustomize, as `make deploy` does, and sends every
// object to the API server as a server-side dry-run apply: a schema error,
// a wrong reference or an invalid sample fails here rather than in a
// user's cluster.
func TestShippedManifestsInstallOnTheAPIServer(t *testing.T) {
	ctx := context.Background()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	var kinds []string
	for _, dir := range []string{"config/default", "config/samples"} {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
		if err != nil {
			t.Fatalf("kustomize %s: %v", dir, err)
		}
		var objs []*unstructured.Unstructured
		for _, r := range res.Resources() {
			m, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: m}
			if dir == "config/samples" {
				u.SetNamespace(ns)
			}
			objs = append(objs, u)
		}
		// Namespaces and CRDs first and for real (envtest installed the
		// CRDs already), so the dry-run of the rest sees them.
		first := func(u *unstructured.Unstructured) bool {
			return u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition"
		}
		slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
			switch {
			case first(a) && !first(b):
				return -1
			case first(b) && !first(a):
				return 1
			}
			return 0
		})
		for _, u := range objs {
			kinds = append(kinds, u.GetKind())
			opts := []client.ApplyOption{client.FieldOwner("manifest-test"), client.ForceOwnership}
			if !first(u) {
				opts = append(opts, client.DryRunAll)
			}
			if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), opts...); err != nil {
				t.Errorf("%s: %s %s: %v", dir, u.GetKind(), u.GetName(), err)
			}
		}
	}
	for _, want := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "Deployment", "Namespace", "SFUPool", "CallsApp"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no %s in the shipped manifests (have %v)", want, kinds)
		}
	}
}
