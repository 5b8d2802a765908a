package v1alpha1

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestEveryFieldIsExplained walks the generated CRDs and fails for any
// property without a description, which `kubectl explain` would show empty.
func TestEveryFieldIsExplained(t *testing.T) {
	files, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(files) != 2 {
		t.Fatalf("CRDs %v: %v (run make manifests)", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd map[string]any
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatal(err)
		}
		versions := crd["spec"].(map[string]any)["versions"].([]any)
		schema := versions[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
		var missing []string
		walk(schema, "", &missing)
		sort.Strings(missing)
		for _, m := range missing {
			t.Errorf("%s: %s has no description", filepath.Base(f), m)
		}
	}
}

func walk(node map[string]any, path string, missing *[]string) {
	if path != "" && path != ".metadata" {
		if d, _ := node["description"].(string); d == "" {
			*missing = append(*missing, path)
		}
	}
	if props, ok := node["properties"].(map[string]any); ok {
		for name, p := range props {
			walk(p.(map[string]any), path+"."+name, missing)
		}
	}
	if items, ok := node["items"].(map[string]any); ok {
		if _, ok := items["properties"]; ok {
			walk2(items, path+"[]", missing)
		}
	}
}

// walk2 visits a list item's properties without requiring a description on
// the item itself (the list field carries it).
func walk2(node map[string]any, path string, missing *[]string) {
	for name, p := range node["properties"].(map[string]any) {
		walk(p.(map[string]any), path+"."+name, missing)
	}
}
