package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
)

// callsAppDoc is one CallsApp document found in the --apps directory, not
// yet decoded into the API type.
type callsAppDoc struct {
	// Source is "file.yaml#N" (N counts documents from 1), for errors.
	Source string
	Data   []byte
}

// callsAppGroup is the API group of the CallsApp kind; documents of another
// group that happen to use the same kind name are ignored.
const callsAppGroup = "calls.switchboard.dev"

// findCallsApps reads every *.yaml and *.yml file of dir (not recursive),
// splits multi-document files and keeps the CallsApp documents, in file
// name order and then document order. Other kinds are ignored, so the
// directory can hold the SFUPool and CallsApp samples side by side.
func findCallsApps(dir string) ([]callsAppDoc, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read apps directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var docs []callsAppDoc
	for _, name := range names {
		found, err := callsAppsInFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		docs = append(docs, found...)
	}
	return docs, nil
}

func callsAppsInFile(path string) ([]callsAppDoc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs []callsAppDoc
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, n, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, n, err)
		}
		group, _, _ := strings.Cut(meta.APIVersion, "/")
		if meta.Kind != "CallsApp" || group != callsAppGroup {
			continue
		}
		docs = append(docs, callsAppDoc{Source: fmt.Sprintf("%s#%d", path, n), Data: doc})
	}
}

// decodeCallsApp decodes one CallsApp document strictly, so a misspelt
// field fails at start rather than being silently ignored.
func decodeCallsApp(d callsAppDoc) (*v1alpha1.CallsApp, error) {
	var app v1alpha1.CallsApp
	if err := yaml.UnmarshalStrict(d.Data, &app); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Source, err)
	}
	if app.Name == "" {
		return nil, fmt.Errorf("%s: CallsApp has no metadata.name", d.Source)
	}
	return &app, nil
}
