package chart

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	release   = "sb"
	namespace = "switchboard-system"
)

// repoRoot is the module root, found from this file's location.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t *testing.T) string { return filepath.Join(repoRoot(t), "charts", "switchboard") }

// helm runs bin/helm with args and returns stdout; it fails the test with
// stderr when helm exits non-zero and wantErr is false.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not found: run make helm", bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot(t)
	// A private helm home so the user's repositories and plugins play no part.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String() + "\n" + stdout.String()))
	}
	return stdout.String(), nil
}

// ciValues is the path of a values file in charts/switchboard/ci.
func ciValues(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(chartDir(t), "ci", name)
}

// rendered is the output of one `helm template`.
type rendered struct {
	objs []*unstructured.Unstructured
}

// render runs `helm template` with a values file (empty for the defaults)
// and extra flags, and decodes every document.
func helmTemplate(t *testing.T, valuesFile string, extra ...string) rendered {
	t.Helper()
	args := []string{"template", release, chartDir(t), "--namespace", namespace, "--include-crds"}
	if valuesFile != "" {
		args = append(args, "-f", ciValues(t, valuesFile))
	}
	args = append(args, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(args, " "), err)
	}
	return rendered{objs: decodeAll(t, out)}
}

func decodeAll(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLReader(bufioReader(manifest))
	var objs []*unstructured.Unstructured
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split rendered YAML: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			t.Fatalf("rendered document without apiVersion/kind:\n%s", doc)
		}
		objs = append(objs, u)
	}
	return objs
}

// find returns the objects of a kind, in render order.
func (r rendered) find(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// get returns the object of a kind and name or fails.
func (r rendered) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	var have []string
	for _, o := range r.objs {
		have = append(have, o.GetKind()+"/"+o.GetName())
	}
	t.Fatalf("no %s %q rendered; have %v", kind, name, have)
	return nil
}

// into converts u into a typed object, failing on fields the type lacks.
func into(t *testing.T, u *unstructured.Unstructured, out any) {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s %s does not decode into %T: %v", u.GetKind(), u.GetName(), out, err)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// notesTemplate exposes the rendered NOTES.txt as a ConfigMap, because
// `helm template` does not print notes and `helm install --dry-run` needs a
// cluster.
const notesTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: rendered-notes
data:
  notes: {{ include "switchboard/templates/NOTES.txt" . | toJson }}
`

// renderNotes renders NOTES.txt with a values file and extra flags, from a
// copy of the chart with notesTemplate added.
func renderNotes(t *testing.T, valuesFile string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "switchboard")
	if err := os.CopyFS(dir, os.DirFS(chartDir(t))); err != nil {
		t.Fatalf("copy chart: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(notesTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", release, dir, "--namespace", namespace, "--show-only", "templates/zz-notes.yaml"}
	if valuesFile != "" {
		args = append(args, "-f", ciValues(t, valuesFile))
	}
	out, err := helm(t, append(args, extra...)...)
	if err != nil {
		t.Fatalf("render NOTES: %v", err)
	}
	objs := decodeAll(t, out)
	if len(objs) != 1 {
		t.Fatalf("rendered %d objects for the notes, want 1", len(objs))
	}
	notes, _, _ := unstructured.NestedString(objs[0].Object, "data", "notes")
	if notes == "" {
		t.Fatal("NOTES.txt rendered empty")
	}
	return notes
}
