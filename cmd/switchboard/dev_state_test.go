package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-rtc/switchboard/controllers/render"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestDevCredentialsSurviveARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := openDevState(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.creds("default/demo")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.creds("team/other")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []render.AppCredentials{first, other} {
		if !hex32.MatchString(c.AppID) || len(c.AppSecret) != 64 || !c.HasTURNKey() {
			t.Fatalf("generated credentials incomplete: app ID %q, secret length %d, TURN key %v", c.AppID, len(c.AppSecret), c.HasTURNKey())
		}
	}
	if first.AppID == other.AppID || first.AppSecret == other.AppSecret {
		t.Fatal("two apps got the same ID or secret")
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, devStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600: it holds secrets", info.Mode().Perm())
	}

	again, err := openDevState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.creds("default/demo"); err != nil || got != first {
		t.Errorf("after restart: %v, credentials changed: %v", err, got != first)
	}
	if again.changed {
		t.Error("reading known apps marked the state changed")
	}
}

func TestDevStateRepairsADamagedEntryButKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	s, _ := openDevState(dir)
	c, _ := s.creds("default/demo")
	s.Apps["default/demo"]["appSecret"] = "short"
	repaired, err := s.creds("default/demo")
	if err != nil {
		t.Fatal(err)
	}
	if repaired.AppID != c.AppID || repaired.AppSecret == c.AppSecret || len(repaired.AppSecret) != 64 {
		t.Errorf("repair: app ID kept %v, new 64-hex secret %v", repaired.AppID == c.AppID, len(repaired.AppSecret) == 64 && repaired.AppSecret != c.AppSecret)
	}
}

func TestDamagedDevStateNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, devStateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openDevState(dir)
	if err == nil || !strings.Contains(err.Error(), devStateFile) {
		t.Fatalf("open damaged state: %v, want an error naming %s", err, devStateFile)
	}
}

func TestFindCallsAppsKeepsOnlyCallsAppDocuments(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", `apiVersion: calls.switchboard.dev/v1alpha1
kind: SFUPool
metadata: {name: pool}
---
apiVersion: calls.switchboard.dev/v1alpha1
kind: CallsApp
metadata: {name: second}
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
`)
	write("a.yml", `apiVersion: calls.switchboard.dev/v1alpha1
kind: CallsApp
metadata: {name: first, namespace: team}
`)
	write("c.yaml", `apiVersion: other.example/v1
kind: CallsApp
metadata: {name: foreign}
`)
	write("notes.txt", "kind: CallsApp\n")

	docs, err := findCallsApps(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, filepath.Base(d.Source))
	}
	want := []string{"a.yml#1", "b.yaml#2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("found %v, want %v", got, want)
	}
	if !strings.Contains(string(docs[1].Data), "name: second") {
		t.Errorf("second document body = %q", docs[1].Data)
	}
}

func TestFindCallsAppsReportsAMissingDirectory(t *testing.T) {
	if _, err := findCallsApps(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("want an error for a missing apps directory")
	}
}
